#!/usr/bin/env python3
"""The simulated 8-512-rank weak-scaling study (issue 12): builds bench/scaling_sim/scaling_sim.cpp
with SimGrid's smpicxx and runs it under smpirun on the 512-host fat tree of
bench/scaling_sim/fat_tree_512.xml (100 Gb/s links, 1 us latency, full bisection) for ResNet-50
(batch 32 per rank) and the DeepGalaxy FCAE (batch 4 per rank, the paper's), from the per-layer
profiles measured on this machine (bench/scaling_sim/*_b*.csv). Prints one JSON line per run (with
the wall time the simulation took) and markdown tables at the end.

    bench/run_scaling_study.py [--ranks 8,16,...] [--speedups 1,10,50] [--jsonl FILE] [--quick]
                               [--hybrid-headers DIR]

Scenarios:
  sync       synchronous data parallelism, every node as measured (speedup 1) and F times faster
             (--speedups: GPU-class nodes on the same network, where the network matters);
  straggler  the same with one rank's compute 1.5x slower (--straggler-ranks, speedups 1 and the
             largest), to show what one slow worker costs synchronous training;
  what-if    --progress-slices-runs ranks:speedup: the same as sync with 8 progress() calls per
             layer's backward instead of one (as a progress hook inside long kernels would give),
             to show how much of the loss is progress granularity;
  hybrid     groups of 32 synchronous workers and 4 parameter servers (Kurth et al.), without and
             with one group 1.5x slower (--hybrid: workers:speedup pairs). Needs the hybrid scheme's
             headers (lamina/communicators/parameter_{client,server,shards}.hpp): in include/, or
             from --hybrid-headers DIR (a lamina include directory, e.g. the hybrid branch's before
             the merge), overlaid on a copy of include/ in the build directory.
Efficiency = T(1 rank, compute only) / T(N ranks): weak scaling, the batch per rank fixed.
Simulated time does not depend on the load of the machine running the simulation; wall times do.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM = os.path.join(ROOT, "bench", "scaling_sim")
MODELS = [("resnet50", "resnet50_b32.csv"), ("deepgalaxy_fcae", "deepgalaxy_fcae_b4.csv")]
PLATFORM = os.path.join(SIM, "fat_tree_512.xml")
# Why each option (bench/scaling_sim/scaling_sim.cpp explains the model):
SMPI_CFG = [
    "--cfg=smpi/host-speed:1Gf",            # = the platform's host speed: smpi_execute(s) takes s seconds
    "--cfg=smpi/simulate-computation:no",   # injected compute only; the program's own CPU time is noise here
    "--cfg=smpi/cpu-threshold:0",           # inject even sub-microsecond layer times
    "--cfg=smpi/test:1e-6",                 # an MPI_Test costs 1 us (a real one costs 0.1-1 us)
    "--cfg=smpi/grow-injected-times:no",    # ... every time (SMPI would grow it for repeated failing tests)
    "--cfg=smpi/coll-selector:ompi",        # Open MPI's choice of algorithm for the blocking collectives
    "--cfg=smpi/shared-malloc-blocksize:67108864",  # few, large maps of SMPI_SHARED_MALLOC (vm.max_map_count)
    "--log=root.thres:warning",
]
# Published anchors (../shared/design/DISTRIBUTED.md)
ANCHORS = {
    "resnet50": "Codreanu et al.: > 0.90 (x86 CPUs); Horovod: 0.90 at 512 GPUs (Inception V3, ResNet-101, 25 Gb/s RoCE)",
    "deepgalaxy_fcae": "DeepGalaxy paper: > 0.93 at 128 workers, 0.73 at 512 (Endeavour)",
}


HYBRID_HEADERS = ["parameter_client.hpp", "parameter_server.hpp", "parameter_shards.hpp"]


def build(build_dir, hybrid_headers):
    """Compiles the simulator; returns its path and whether it has the hybrid scheme."""
    smpicxx = shutil.which("smpicxx")
    if not smpicxx or not shutil.which("smpirun"):
        sys.exit("run_scaling_study: SimGrid SMPI (smpicxx, smpirun) not found: install libsimgrid-dev (scripts/setup.sh)")
    os.makedirs(build_dir, exist_ok=True)
    include = os.path.join(ROOT, "include")
    comm_dir = os.path.join("lamina", "communicators")
    if hybrid_headers:  # a copy of include/ with the hybrid scheme's headers added
        merged = os.path.join(build_dir, "include")
        shutil.rmtree(merged, ignore_errors=True)
        shutil.copytree(include, merged)
        for h in HYBRID_HEADERS:
            if not os.path.exists(os.path.join(merged, comm_dir, h)):
                shutil.copy(os.path.join(hybrid_headers, comm_dir, h), os.path.join(merged, comm_dir, h))
        include = merged
    hybrid = all(os.path.exists(os.path.join(include, comm_dir, h)) for h in HYBRID_HEADERS)
    exe = os.path.join(build_dir, "scaling_sim")
    subprocess.run([smpicxx, "-std=c++17", "-O2", "-DSMPI_NO_OVERRIDE_MALLOC", "-Wall", "-Wextra", "-Wpedantic",
                    "-I", include, os.path.join(SIM, "scaling_sim.cpp"), "-o", exe], check=True)
    with open(os.path.join(build_dir, "hosts_512.txt"), "w") as f:
        f.write("".join(f"node-{i}\n" for i in range(512)))
    return exe, hybrid


def run(exe, build_dir, ranks, profile, extra, steps, warmup):
    cmd = ["smpirun", "-np", str(ranks), "-platform", PLATFORM, "-hostfile", os.path.join(build_dir, "hosts_512.txt"),
           *SMPI_CFG, f"--cfg=smpi/tmpdir:{build_dir}", exe, "--profile", os.path.join(SIM, profile),
           "--platform", "fat_tree_512_100Gbps_1us", "--buffers", "shared", "--warmup", str(warmup),
           "--steps", str(steps), *extra]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        sys.stderr.write(p.stdout[-2000:] + p.stderr[-4000:])
        sys.exit(f"run_scaling_study: failed ({p.returncode}): {' '.join(cmd)}")
    rec = json.loads(lines[-1])
    rec["wall_s"] = round(wall, 1)
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", default="8,16,32,64,128,256,512")
    ap.add_argument("--speedups", default="1,10,50")
    ap.add_argument("--straggler-ranks", default="64,512", help="rank counts of the straggler scenario ('' for none)")
    ap.add_argument("--straggler-factor", type=float, default=1.5)
    ap.add_argument("--hybrid", default="480:1,128:1,128:50",
                    help="hybrid runs as workers:speedup (groups of 32 + 4 servers; '' for none)")
    ap.add_argument("--progress-slices-runs", default="512:50", help="what-if runs as ranks:speedup ('' for none)")
    ap.add_argument("--hybrid-headers", help="a lamina include directory with the hybrid scheme's headers")
    ap.add_argument("--models", default=",".join(m for m, _ in MODELS))
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "scaling_sim"))
    ap.add_argument("--jsonl", help="also append the JSON lines to this file")
    ap.add_argument("--quick", action="store_true", help="8-64 ranks only (a minute)")
    ap.add_argument("--report", metavar="JSONL", help="run nothing: print the tables of these JSON lines")
    a = ap.parse_args()
    ranks = [int(r) for r in a.ranks.split(",") if r]
    if a.quick:
        ranks = [r for r in ranks if r <= 64]
    speedups = [float(s) for s in a.speedups.split(",")]
    straggler_ranks = [int(r) for r in a.straggler_ranks.split(",") if r and (not a.quick or int(r) <= 64)]
    models = [(m, f) for m, f in MODELS if m in a.models.split(",")]

    if a.report:
        results = [json.loads(l) for l in open(a.report) if l.startswith("{")]
        sizes = sorted({r["ranks"] for r in results if r["scenario"] == "sync"})
        report(results, [m for m, _ in models], sorted({r["speedup"] for r in results if r["scenario"] == "sync"}),
               sizes, a.straggler_factor)
        return
    exe, has_hybrid = build(a.build_dir, a.hybrid_headers)
    hybrid_runs = [tuple(float(x) for x in h.split(":")) for h in a.hybrid.split(",") if h]
    if a.quick:
        hybrid_runs = [h for h in hybrid_runs if h[0] <= 64]
    if hybrid_runs and not has_hybrid:
        print("run_scaling_study: no hybrid runs: the parameter server headers are not in include/ "
              "(give --hybrid-headers DIR)", file=sys.stderr)
        hybrid_runs = []
    out = open(a.jsonl, "a") if a.jsonl else None
    results = []
    started = time.time()

    def record(rec, scenario):
        rec["scenario"] = scenario
        results.append(rec)
        line = json.dumps(rec)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    for model, profile in models:
        for s in speedups:
            for n in ranks:
                # Steps are identical once the pipeline is full (checked: 1 warm-up + 1 or + 2
                # measured give the same step time); the largest runs take one measured step.
                steps = 2 if n < 256 else 1
                record(run(exe, a.build_dir, n, profile, ["--speedup", f"{s:g}"], steps, 1), "sync")
        for n in straggler_ranks:
            for s in sorted({speedups[0], speedups[-1]}):
                extra = ["--speedup", f"{s:g}", "--straggler-rank", str(n - 1), "--straggler-factor",
                         f"{a.straggler_factor:g}"]
                record(run(exe, a.build_dir, n, profile, extra, 2 if n < 256 else 1, 1), "straggler")
        for n, s in [tuple(float(x) for x in w.split(":")) for w in a.progress_slices_runs.split(",") if w]:
            if a.quick and n > 64:
                continue
            record(run(exe, a.build_dir, int(n), profile, ["--speedup", f"{s:g}", "--progress-slices", "8"],
                       2 if n < 256 else 1, 1), "progress_what_if")
        for workers, s in hybrid_runs:
            workers = int(workers)
            for slow in (-1, 0):  # group 0 slowed
                extra = ["--speedup", f"{s:g}", "--groups", str(workers // 32), "--servers", "4", "--slow-group",
                         str(slow), "--straggler-factor", f"{a.straggler_factor:g}"]
                record(run(exe, a.build_dir, workers + 4, profile, extra, 2 if workers < 256 else 1, 1), "hybrid")

    report(results, [m for m, _ in models], speedups, ranks, a.straggler_factor)
    print(f"\nwhole study: {time.time() - started:.0f} s wall (this machine: 2 cores, shared)")


def report(results, models, speedups, ranks, straggler_factor):
    """Markdown tables of the study's JSON lines."""
    print(f"\n## Simulated weak scaling on the fat tree (512 hosts, 100 Gb/s links, 1 us latency, full bisection)\n")
    print("lamina's fusion plan (first bucket 1 MiB, then 25 MiB) and halving_doubling allreduce, overlapped with "
          "backward and progressed between layers; per-layer compute measured on this machine (AMD EPYC Zen 4, 2 "
          "threads), divided by the speedup for faster nodes; reductions modelled at 10 GB/s (divided likewise).\n")
    for model in models:
        rows = [r for r in results if r["model"] == model and r["scenario"] == "sync"]
        if not rows:
            continue
        print(f"### {model} (batch {rows[0]['batch_per_rank']} per rank, {rows[0]['parameters']} parameters, "
              f"{rows[0]['buckets']} buckets)\n")
        head = "| ranks |" + "".join(f" eff. x{s:g} | step x{s:g} (ms) | wait x{s:g} (ms) |" for s in speedups) + " wall (s) |"
        print(head)
        print("|" + "---|" * (2 + 3 * len(speedups)))
        for n in ranks:
            cells = []
            wall = 0.0
            for s in speedups:
                r = next((x for x in rows if x["ranks"] == n and x["speedup"] == s), None)
                if r is None:
                    cells += ["", "", ""]
                    continue
                cells += [f"{r['efficiency']:.3f}", f"{r['step_s'] * 1e3:.1f}", f"{r['wait_after_backward_s'] * 1e3:.2f}"]
                wall += r["wall_s"]
            print(f"| {n} | " + " | ".join(cells) + f" | {wall:.0f} |")
        c = {s: next((x["compute_s"] for x in rows if x["speedup"] == s), None) for s in speedups}
        print("\ncompute per step (1 rank, no communication): " +
              ", ".join(f"x{s:g}: {v * 1e3:.1f} ms" for s, v in c.items() if v) + f". Published: {ANCHORS[model]}.\n")
    def sync_run_like(r):  # the synchronous run of the same model, ranks and speedup (or None)
        return next((x for x in results if x["scenario"] == "sync" and x["model"] == r["model"] and
                     x["ranks"] == r["ranks"] and x["speedup"] == r["speedup"]), None)

    strag = [r for r in results if r["scenario"] == "straggler"]
    if strag:
        print(f"### One straggler (rank N-1 computes {straggler_factor:g}x slower), synchronous\n")
        print("| model | ranks | speedup | step (ms) | efficiency | efficiency without straggler | wall (s) |")
        print("|---|---|---|---|---|---|---|")
        for r in strag:
            base = sync_run_like(r)
            print(f"| {r['model']} | {r['ranks']} | x{r['speedup']:g} | {r['step_s'] * 1e3:.1f} | {r['efficiency']:.3f} | "
                  f"{base['efficiency']:.3f} | {r['wall_s']:.0f} |" if base else "")
    what_if = [r for r in results if r["scenario"] == "progress_what_if"]
    if what_if:
        print("\n### What if progress() ran 8 times per layer's backward (mpi_session: once per gradient report)\n")
        print("| model | ranks | speedup | efficiency, 8 per layer | efficiency, once per report | wait after backward (ms) | wall (s) |")
        print("|---|---|---|---|---|---|---|")
        for r in what_if:
            base = sync_run_like(r)
            print(f"| {r['model']} | {r['ranks']} | x{r['speedup']:g} | {r['efficiency']:.3f} | "
                  f"{base['efficiency'] if base else float('nan'):.3f} | {r['wait_after_backward_s'] * 1e3:.2f} | {r['wall_s']:.0f} |")
    hyb = [r for r in results if r["scenario"] == "hybrid"]
    if hyb:
        print(f"\n### Hybrid: groups of 32 + 4 parameter servers (group 0 {straggler_factor:g}x slower or not)\n")
        print("| model | workers | groups | speedup | slowed group | samples/s | efficiency | fastest group step (ms) | "
              "slowest group step (ms) | sync efficiency, same slowdown | wall (s) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in hyb:
            slowed = r["straggler"] is not None
            ref = [x for x in results if x["model"] == r["model"] and x["speedup"] == r["speedup"] and
                   x["scenario"] == ("straggler" if slowed else "sync")]
            ref = min(ref, key=lambda x: abs(x["ranks"] - r["workers"])) if ref else None
            sync = f"{ref['efficiency']:.3f} ({ref['ranks']} ranks)" if ref else ""
            print(f"| {r['model']} | {r['workers']} | {r['groups']} | x{r['speedup']:g} | {'group 0' if slowed else 'none'} | "
                  f"{r['samples_per_s']:.0f} | {r['efficiency']:.3f} | {r['fastest_group_step_s'] * 1e3:.1f} | "
                  f"{r['step_s'] * 1e3:.1f} | {sync} | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
