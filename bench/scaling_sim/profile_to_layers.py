#!/usr/bin/env python3
"""Per-layer table for the simulated scaling study, from bench_models' profiler trace.

    profile_to_layers.py TRACE_train.json PARAMS.csv OUT.csv --command "..." --cpu "..."

TRACE_train.json: the chrome trace `bench_models --phase train --profile PREFIX` writes (three
profiled training steps; one "X" event per leaf node and pass, named "<leaf> <node>", category
forward or backward). It has no parameter counts, so PARAMS.csv gives them: the output of
`layer_parameters <model>` (build/dev/bench/layer_parameters, bench/scaling_sim/layer_parameters.cpp).

OUT.csv: one row per leaf node in the model's (forward) order:
    layer,name,forward_s,backward_s,parameters
with the mean seconds per call over the profiled steps, preceded by '#' lines that record the
command and CPU that measured the trace and two step costs outside the leaves, read from the
gaps of the trace: loss_s (last forward -> first backward: the loss and its gradient) and
optimizer_s (last backward -> next step's first forward: the optimizer update and the trainer's
bookkeeping). The simulator (scaling_sim.cpp) reads all of it.
"""
import argparse
import csv
import json
import statistics
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("params")
    ap.add_argument("out")
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--command", required=True, help="the bench_models command that wrote the trace")
    ap.add_argument("--cpu", required=True, help="the CPU and threads it ran on")
    a = ap.parse_args()

    events = json.load(open(a.trace))["traceEvents"]
    events = [e for e in events if e.get("ph") == "X"]
    events.sort(key=lambda e: e["ts"])
    with open(a.params) as f:
        rows = list(csv.DictReader(f))
    names = {int(r["layer"]): r["name"] for r in rows}
    params = {int(r["layer"]): int(r["parameters"]) for r in rows}

    fwd, bwd = {}, {}
    for e in events:
        leaf_text, _, name = e["name"].partition(" ")
        leaf = int(leaf_text)
        if leaf not in names:
            sys.exit(f"profile_to_layers: trace leaf {leaf} ({name}) is not in {a.params}")
        if name != names[leaf]:
            sys.exit(f"profile_to_layers: trace leaf {leaf} is '{name}', {a.params} says '{names[leaf]}' "
                     "(trace and parameter table of different models?)")
        if e["args"].get("batch") != a.batch:
            sys.exit(f"profile_to_layers: trace event batch {e['args'].get('batch')} != --batch {a.batch}")
        (bwd if e["cat"] == "backward" else fwd).setdefault(leaf, []).append(e["dur"] * 1e-6)

    # steps: each starts at a forward event of the first profiled leaf
    first_leaf = min(fwd)
    starts = [e["ts"] for e in events if e["cat"] != "backward" and int(e["name"].split()[0]) == first_leaf]
    loss_gaps, optimizer_gaps, orders = [], [], []
    for i, s in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else float("inf")
        step = [e for e in events if s <= e["ts"] < end]
        f = [e for e in step if e["cat"] != "backward"]
        b = [e for e in step if e["cat"] == "backward"]
        loss_gaps.append((b[0]["ts"] - (f[-1]["ts"] + f[-1]["dur"])) * 1e-6)
        if i + 1 < len(starts):
            optimizer_gaps.append((starts[i + 1] - (b[-1]["ts"] + b[-1]["dur"])) * 1e-6)
        orders.append([int(e["name"].split()[0]) for e in b])
    # The simulator walks backward in reverse layer order; say so if the trace ran otherwise.
    reverse = sorted(bwd, reverse=True)
    out_of_order = sum(1 for o in orders if o != reverse)
    if out_of_order:
        print(f"profile_to_layers: note: {out_of_order} of {len(orders)} steps ran backward in another order than "
              "reverse layer order", file=sys.stderr)

    with open(a.out, "w", newline="") as f:
        f.write(f"# model={a.model}\n# batch={a.batch}\n# command={a.command}\n# cpu={a.cpu}\n")
        f.write(f"# source={a.trace.split('/')[-1]} ({len(starts)} profiled steps; mean seconds per call)\n")
        f.write(f"# loss_s={statistics.median(loss_gaps):.6g}\n")
        f.write(f"# optimizer_s={statistics.median(optimizer_gaps) if optimizer_gaps else 0:.6g}\n")
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["layer", "name", "forward_s", "backward_s", "parameters"])
        for leaf in sorted(names):
            fs = statistics.mean(fwd[leaf]) if leaf in fwd else 0.0
            bs = statistics.mean(bwd[leaf]) if leaf in bwd else 0.0
            w.writerow([leaf, names[leaf], f"{fs:.6g}", f"{bs:.6g}", params[leaf]])
    tf = sum(statistics.mean(v) for v in fwd.values())
    tb = sum(statistics.mean(v) for v in bwd.values())
    print(f"{a.out}: {len(names)} layers, {sum(params.values())} parameters, forward {tf:.3f} s, backward {tb:.3f} s, "
          f"loss {statistics.median(loss_gaps) * 1e3:.1f} ms, optimizer {statistics.median(optimizer_gaps) * 1e3 if optimizer_gaps else 0:.1f} ms")


if __name__ == "__main__":
    main()
