#!/usr/bin/env python3
"""lamina's benchmark runner (issue 3): the one command that measures lamina against libtorch,
OpenBLAS and oneDNN and says which targets are met.

    python3 bench/run_bench.py --build-dir build/bench [--threads 2] [--rounds 5]
                               [--only models|batch1|threading|kokkos|gemm|conv|tta]
                               [--models mlp,lenet5,resnet20,resnet50|science|all] [--markdown FILE]
                               [--json raw.jsonl]

Models: lamina (bench_models) and libtorch (bench_torch_models) run interleaved, A B A B ...,
`--rounds` times per model, phase and thread count, each run a fresh process (so each row's
peak RSS is its own). `--models` picks the models (default the first four: mlp, lenet5 and
ResNet-20 at batch 32, ResNet-50 v1.5 at batch 8; `science` names issue 11's rows: fcae (the
1x128x128 conv autoencoder, MSE, batch 16), deepgalaxy_fcae (the DeepGalaxy FCAE at 256x256,
MAE, batch 4), hep_cnn (224x224, batch 8) and mcnn (256x320, batch 4), target 1.2x libtorch at
training and inference; `all` names all eight; names and keywords can be mixed, e.g.
mlp,science). deepgalaxy_fcae's steps take seconds: its runs use 1 warm-up step and at least 3
timed ones (the other models 3 and 5). libtorch runs at
its best: OpenMP OpenBLAS (LD_LIBRARY_PATH) with OPENBLAS_CORETYPE named from the CPU's flags
(OpenBLAS 0.3.21 falls back to SSE3 kernels on CPU models it does not know), glibc malloc
tunables that keep its buffers mapped, OMP_NUM_THREADS = threads. The figure per implementation is the median over rounds of
each run's median images/s.

Batch 1 (--only batch1, also part of a full run): the embedding case, a simulation calling its
surrogate once per cell: mlp and lenet5 inference at batch 1 on 1 and 2 threads
(--batch1-threads), interleaved like the models; the figure is the median latency in
microseconds; target: lamina at least 1.5x faster than libtorch.

Time to accuracy (--only tta, or --tta in a full run; needs the MNIST t10k files, --mnist-dir):
time_to_accuracy and time_to_accuracy_torch train the ResNet-20 MNIST recipe to 99% held-out
accuracy (each run many minutes: one round by default, --tta-rounds; round k uses seed k), stopping at the first
epoch that reaches it; contaminated runs are flagged, not retried.

Threading cost (--only threading, also part of a full run when bench_models_serial is built):
bench_models --threads 1 against bench_models_serial (lamina built with LAMINA_NO_THREADS),
interleaved; target: the 1-thread run within 3% of the build without threads.

Kokkos (--kokkos-build-dir DIR, repeatable: a build with LAMINA_WITH_KOKKOS=ON, e.g. the
build/ci-kokkos-openmp and build/ci-kokkos-serial folders of scripts/test_kokkos.sh): the same
models on the Kokkos backend (bench_models_kokkos, default execution space) interleaved with the
host backend (bench_models), as the ratio of step times; target for OpenMP: within 1.5x.

FMA peak (bench_peak, when built and GEMM or conv runs): the peak at lamina's compiled vector
width on 1 and max(--threads) threads, printed in the header with the vector extensions the CPU
reports (lamina's width is fixed when compiling; oneDNN and OpenBLAS choose theirs at run time).

GEMM (bench_gemm, lamina vs OpenBLAS, at 1 and 2 threads plus --threads) and convolution
(bench_conv, lamina vs oneDNN's best of NCHW and blocked layouts) run when built.

Contamination: while each run executes, the script reads /proc/stat and the child's own CPU
time (wait4 rusage). CPU time used by other processes during the run, averaged over its wall
time, above --busy-threshold cores (default 0.10) marks the run contaminated; it is retried up
to --max-retries times and the least contaminated attempt is kept (and flagged if still over).

Exit status: 0 when everything ran (also when targets are missed); 1 on errors (a program
missing or failing); 2 on bad arguments. Python 3 standard library only.
"""

import argparse
import datetime
import functools
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

LIBTORCH_ENV = {
    "LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu/openblas-openmp",
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296",
}
THREADING_TARGET = 1.03  # 1-thread step time / LAMINA_NO_THREADS step time
KOKKOS_TARGET = 1.5  # Kokkos OpenMP step time / host backend step time
MODEL_TARGETS = {("lenet5", "train"): 1.5, ("lenet5", "infer"): 1.5, ("mlp", "train"): 1.2, ("mlp", "infer"): 1.0}
DEFAULT_MODELS = ("mlp", "lenet5", "resnet20", "resnet50")  # bench_models' --model names
SCIENCE_MODELS = ("fcae", "deepgalaxy_fcae", "hep_cnn", "mcnn")  # issue 11's rows
MODELS = DEFAULT_MODELS + SCIENCE_MODELS
MODEL_TARGETS.update({(m, ph): 1.2 for m in SCIENCE_MODELS for ph in ("train", "infer")})
# Per-model protocol: seconds-long steps need fewer untimed and timed repetitions.
MODEL_PROTOCOL = {"deepgalaxy_fcae": ["--warmup", "1", "--min-reps", "3"]}
BATCH1_MODELS = ("mlp", "lenet5")
BATCH1_TARGET = 1.5  # libtorch latency / lamina latency at batch 1
GEMM_TARGET = 0.85  # lamina / OpenBLAS
CONV_TARGET = 0.80  # lamina / oneDNN best (max of nchw and blocked)
CONV_PHASES = ("fwd", "bwd_data", "bwd_weights")
HZ = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def busy_jiffies():
    """Non-idle jiffies of all CPUs together (user+nice+system+irq+softirq+steal)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    v = [int(x) for x in fields[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq + steal


def run_measured(cmd, env):
    """Runs cmd; returns (json records, wall s, child cpu s, other processes' cpu in cores)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        b0 = busy_jiffies()
        self0 = os.times()
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        except OSError as e:
            raise BenchError(f"cannot run {cmd[0]}: {e}")
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        b1 = busy_jiffies()
        self1 = os.times()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise BenchError(f"{shlex.join(cmd)} exited with {proc.returncode}:\n{stderr.strip()}")
    child_cpu = ru.ru_utime + ru.ru_stime
    own_cpu = (self1.user - self0.user) + (self1.system - self0.system)
    others = max(0.0, (b1 - b0) / HZ - child_cpu - own_cpu)
    records = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise BenchError(f"{shlex.join(cmd)} printed a line that is not JSON: {line!r}")
    return records, wall, child_cpu, others / wall if wall > 0 else 0.0


class Runner:
    def __init__(self, opts):
        self.opts = opts
        self.raw = []  # every kept record, annotated
        self.contaminated = 0
        self.retried = 0
        self.runs = 0
        self.max_others = 0.0

    def run(self, cmd, env, label, retries=None):
        """Runs with contamination checks and bounded retries; returns (records, others_cores, flagged)."""
        best = None
        retries = self.opts.max_retries if retries is None else retries
        for attempt in range(retries + 1):
            records, wall, cpu, others = run_measured(cmd, env)
            if best is None or others < best[1]:
                best = (records, others)
            if others <= self.opts.busy_threshold:
                break
            log(f"  {label}: other processes used {others:.2f} cores during the run "
                f"(threshold {self.opts.busy_threshold:.2f}); "
                + ("retrying" if attempt < retries else "keeping the least contaminated attempt"))
            self.retried += 1
            time.sleep(self.opts.retry_sleep)
        records, others = best
        flagged = others > self.opts.busy_threshold
        self.runs += 1
        self.contaminated += flagged
        self.max_others = max(self.max_others, others)
        for r in records:
            r["others_cores"] = round(others, 3)
            r["contaminated"] = flagged
            self.raw.append(r)
        return records, others, flagged


def find_program(build_dir, name):
    for d in (os.path.join(build_dir, "bench"), build_dir):
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def base_env(threads):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env.pop("LAMINA_NUM_THREADS", None)
    return env


@functools.lru_cache(maxsize=None)
def cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (read once)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def openblas_coretype():
    """The OpenBLAS kernel family for this CPU's vector extensions. Debian's OpenBLAS 0.3.21 picks
    its kernels by CPU model and falls back to Prescott (SSE3, ~1/3 of AVX2 speed) on models it
    does not know (seen: Intel Xeon family 6 model 207); naming the family from the flags makes
    OpenBLAS, and libtorch's GEMMs through it, run at their best. An OPENBLAS_CORETYPE already in
    the environment wins."""
    if os.environ.get("OPENBLAS_CORETYPE"):
        return os.environ["OPENBLAS_CORETYPE"]
    flags = cpu_flags()
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


def torch_env(threads):
    env = base_env(threads)
    if openblas_coretype():
        env["OPENBLAS_CORETYPE"] = openblas_coretype()
    ld = LIBTORCH_ENV["LD_LIBRARY_PATH"]
    env["LD_LIBRARY_PATH"] = ld + (":" + os.environ["LD_LIBRARY_PATH"] if os.environ.get("LD_LIBRARY_PATH") else "")
    env["GLIBC_TUNABLES"] = LIBTORCH_ENV["GLIBC_TUNABLES"]
    return env


def mark(flag):
    return "*" if flag else ""


# ---------------------------------------------------------------------------------------------
def race_models(runner, opts, progs, model, phase, threads, batch=None):
    """lamina and libtorch on one model, phase, thread count and batch, interleaved over rounds:
    a row with each side's per-round figures (images/s and median latency), peak RSS and flags."""
    lam, tor = progs["bench_models"], progs.get("bench_torch_models")
    args = ["--model", model, "--phase", phase, "--threads", str(threads), "--min-time", str(opts.min_time)]
    args += MODEL_PROTOCOL.get(model, [])
    if batch:
        args += ["--batch", str(batch)]
    res = {"lamina": [], "libtorch": []}
    lat = {"lamina": [], "libtorch": []}  # each run's median latency, microseconds
    best = {"lamina": [], "libtorch": []}  # images/s of each run's fastest step
    flags = {"lamina": False, "libtorch": False}
    rss = {"lamina": 0.0, "libtorch": 0.0}
    used_batch = batch
    for rnd in range(opts.rounds):
        pairs = [("lamina", lam, base_env(threads))]
        if tor:
            pairs.append(("libtorch", tor, torch_env(threads)))
        for impl, prog, env in pairs:
            label = f"{model} {phase} b={batch or 'default'} {impl} t={threads} round {rnd + 1}/{opts.rounds}"
            recs, others, flagged = runner.run([prog] + args, env, label)
            for r in recs:
                r["round"] = rnd + 1
                res[impl].append(r["images_per_s"])
                lat[impl].append(r.get("median_us", r["median_ms"] * 1e3))
                if r.get("min_ms"):
                    best[impl].append(r["batch"] * 1000.0 / r["min_ms"])
                rss[impl] = max(rss[impl], r.get("peak_rss_mb", 0.0))
                used_batch = r["batch"]
            flags[impl] |= flagged
            log(f"  {label}: {fmt(recs[0]['images_per_s'])} img/s, {lat[impl][-1]:.1f} us per call "
                f"(others {others:.2f} cores)")
    lam_ips = statistics.median(res["lamina"])
    tor_ips = statistics.median(res["libtorch"]) if res["libtorch"] else None
    ratio = lam_ips / tor_ips if tor_ips else None
    return {
        "model": model, "phase": phase, "threads": threads, "batch": used_batch,
        "lamina": lam_ips, "libtorch": tor_ips, "ratio": ratio,
        "lamina_us": statistics.median(lat["lamina"]),
        "libtorch_us": statistics.median(lat["libtorch"]) if lat["libtorch"] else None,
        "contaminated": flags["lamina"] or flags["libtorch"],
        "lamina_runs": res["lamina"], "libtorch_runs": res["libtorch"],
        "rss_lamina": rss["lamina"], "rss_libtorch": rss["libtorch"],
        # Fastest step of all rounds, each side: what the code does when the machine
        # lets it, robust to a neighbour that slows some steps (a shared host).
        "best_ratio": (statistics.median(best["lamina"]) / statistics.median(best["libtorch"])
                       if best["lamina"] and best["libtorch"] else None),
    }


def with_target(row, target):
    row["target"] = target
    row["met"] = None if row["ratio"] is None or target is None else row["ratio"] >= target
    return row


def check_models_built(progs):
    if not progs["bench_models"]:
        raise BenchError("bench_models not found in the build directory (build the bench targets first)")
    if not progs.get("bench_torch_models"):
        log("bench_torch_models not built (libtorch not found): lamina figures only")


def bench_models(runner, opts, progs):
    """The models at their default batches (MODEL_TARGETS; the ResNets have no target)."""
    check_models_built(progs)
    rows = []
    for threads in opts.threads:
        for model in opts.models:
            for phase in ("train", "infer"):
                row = race_models(runner, opts, progs, model, phase, threads)
                rows.append(with_target(row, MODEL_TARGETS.get((model, phase))))
    return rows


def bench_batch1(runner, opts, progs):
    """Batch-1 inference (the embedding case): latency, target lamina >= 1.5x faster."""
    check_models_built(progs)
    rows = []
    for threads in opts.batch1_threads:
        for model in BATCH1_MODELS:
            rows.append(with_target(race_models(runner, opts, progs, model, "infer", threads, batch=1), BATCH1_TARGET))
    return rows


def default_mnist_dir():
    env = os.environ.get("LAMINA_DATA_DIR")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "shared", "data", "mnist"))


def bench_tta(runner, opts, progs):
    """Time to 99% held-out accuracy on the ResNet-20 MNIST recipe, lamina and libtorch alternating."""
    lam, tor = progs.get("time_to_accuracy"), progs.get("time_to_accuracy_torch")
    if not lam:
        raise BenchError("time_to_accuracy not found in the build directory (build the bench targets first)")
    if not tor:
        log("time_to_accuracy_torch not built (libtorch not found, or not built by name): lamina only")
    if not os.path.isdir(opts.mnist_dir):
        raise BenchError(f"MNIST folder {opts.mnist_dir} not found (--mnist-dir or LAMINA_DATA_DIR)")
    rows = []
    for threads in opts.threads:
        args = ["--data", opts.mnist_dir, "--threads", str(threads), "--epochs", str(opts.tta_epochs),
                "--stop-at-target", "1"]
        runs = {"lamina": [], "libtorch": []}
        flags = {"lamina": False, "libtorch": False}
        for rnd in range(opts.tta_rounds):
            pairs = [("lamina", lam, base_env(threads))]
            if tor:
                pairs.append(("libtorch", tor, torch_env(threads)))
            for impl, prog, env in pairs:
                # Round k trains with seed k on both sides: one seed may never reach the target.
                label = f"tta {impl} t={threads} round {rnd + 1}/{opts.tta_rounds} seed {rnd + 1}"
                log(f"  {label}: running (minutes)")
                recs, others, flagged = runner.run([prog] + args + ["--seed", str(rnd + 1)], env, label, retries=0)
                summary = [r for r in recs if r.get("phase") == "summary"]
                if not summary:
                    raise BenchError(f"{prog} printed no summary line")
                r = summary[-1]
                r["round"] = rnd + 1
                runs[impl].append(r)
                flags[impl] |= flagged
                log(f"  {label}: 99% after {r['seconds_to_target']} s (epoch {r['epoch_reached']}), "
                    f"final {r['final_accuracy']:.4f} (others {others:.2f} cores)")

        def med(impl, key):
            v = [r[key] for r in runs[impl] if r.get(key) is not None]
            return statistics.median(v) if v else None

        for impl in ("lamina", "libtorch"):
            if runs[impl]:
                rows.append({"impl": impl, "threads": threads, "seconds_to_target": med(impl, "seconds_to_target"),
                             "epoch_reached": med(impl, "epoch_reached"), "final_accuracy": med(impl, "final_accuracy"),
                             "seconds": med(impl, "seconds"), "train_seconds": med(impl, "train_seconds"),
                             "rss": max(r.get("peak_rss_mb", 0.0) for r in runs[impl]),
                             "reached": sum(r.get("seconds_to_target") is not None for r in runs[impl]),
                             "rounds": len(runs[impl]), "contaminated": flags[impl]})
    return rows


def bench_threading(runner, opts, progs):
    """bench_models at 1 thread vs the same program built with LAMINA_NO_THREADS, interleaved."""
    lam, ser = progs["bench_models"], progs.get("bench_models_serial")
    if not lam or not ser:
        log("bench_models_serial not built: threading cost skipped")
        return []
    rows = []
    for model in ("mlp", "lenet5"):
        for phase in ("train", "infer"):
            args = ["--model", model, "--phase", phase, "--threads", "1", "--min-time", str(opts.min_time)]
            res = {"pool": [], "serial": []}
            flagged_any = False
            for rnd in range(opts.rounds):
                for impl, prog in (("pool", lam), ("serial", ser)):
                    label = f"threading {model} {phase} {impl} round {rnd + 1}/{opts.rounds}"
                    recs, others, flagged = runner.run([prog] + args, base_env(1), label)
                    for r in recs:
                        r["round"] = rnd + 1
                        res[impl].append(r["images_per_s"])
                    flagged_any |= flagged
                    log(f"  {label}: {recs[0]['images_per_s']:.0f} img/s (others {others:.2f} cores)")
            p, s = statistics.median(res["pool"]), statistics.median(res["serial"])
            rows.append({"model": model, "phase": phase, "pool": p, "serial": s, "cost": s / p,
                         "met": s / p <= THREADING_TARGET, "contaminated": flagged_any})
    return rows


def kokkos_env(threads):
    env = base_env(threads)
    env.setdefault("OMP_PROC_BIND", "spread")
    env.setdefault("OMP_PLACES", "threads")
    return env


def bench_kokkos(runner, opts, progs):
    """Kokkos backend vs host backend, interleaved, per Kokkos build directory."""
    rows = []
    host = progs["bench_models"]
    if not host:
        raise BenchError("bench_models not found in the build directory (build the bench targets first)")
    for kdir in opts.kokkos_build_dir:
        kprog = find_program(kdir, "bench_models_kokkos")
        if not kprog:
            raise BenchError(f"bench_models_kokkos not found in {kdir} (configure it with -DLAMINA_WITH_KOKKOS=ON "
                             f"-DLAMINA_BUILD_BENCH=ON and build that target)")
        for threads in opts.threads:
            for model in ("mlp", "lenet5"):
                for phase in ("train", "infer"):
                    args = ["--model", model, "--phase", phase, "--threads", str(threads),
                            "--min-time", str(opts.min_time)]
                    res = {"host": [], "kokkos": []}
                    flagged_any = False
                    space = "?"
                    for rnd in range(opts.rounds):
                        for impl, prog, env in (("host", host, base_env(threads)),
                                                ("kokkos", kprog, kokkos_env(threads))):
                            label = f"kokkos {model} {phase} {impl} t={threads} round {rnd + 1}/{opts.rounds}"
                            recs, others, flagged = runner.run([prog] + args, env, label)
                            for r in recs:
                                r["round"] = rnd + 1
                                r["kokkos_build_dir"] = kdir
                                res[impl].append(r["images_per_s"])
                                if impl == "kokkos":
                                    space = r["impl"].replace("lamina-kokkos-", "")
                            flagged_any |= flagged
                            log(f"  {label}: {recs[0]['images_per_s']:.0f} img/s (others {others:.2f} cores)")
                    h, k = statistics.median(res["host"]), statistics.median(res["kokkos"])
                    slowdown = h / k
                    rows.append({"model": model, "phase": phase, "threads": threads, "space": space,
                                 "host": h, "kokkos": k, "slowdown": slowdown,
                                 "met": slowdown <= KOKKOS_TARGET if space == "openmp" else None,
                                 "contaminated": flagged_any})
    return rows


def bench_peak(runner, opts, progs):
    """The FMA peak at lamina's compiled vector width (bench_peak), 1 and max(threads) threads:
    a header line, so GEMM and conv figures can be read as a fraction of what this build can do."""
    prog = progs.get("bench_peak")
    if not prog:
        return None
    threads = max(opts.threads)
    recs, _, flagged = runner.run([prog, "--threads", str(threads), "--min-time", "0.5"], base_env(threads), "fma peak")
    if not recs:
        return None
    by = {r["threads"]: r["gflops"] for r in recs}
    width = recs[0]["impl"].replace("fma-", "")
    parts = ", ".join(f"{by[t]:.0f} GFLOP/s on {t} thread{'s' if t > 1 else ''}" for t in sorted(by))
    log(f"  fma peak ({width} vectors): {parts}")
    return f"FMA peak at lamina's compiled vector width ({width}, bench_peak): {parts}{mark(flagged)}"


def cpu_isa():
    """The x86 vector extensions the CPU reports (lamina's width is fixed at compile time; oneDNN
    and OpenBLAS pick theirs at run time)."""
    flags = cpu_flags()
    return " ".join(x for x in ("avx2", "fma", "avx512f", "avx512_vnni", "amx_tile") if x in flags) or "unknown"


def bench_gemm(runner, opts, progs):
    prog = progs.get("bench_gemm")
    if not prog:
        log("bench_gemm not built: skipped")
        return []
    rows = []
    for threads in sorted(set([1, 2] + list(opts.threads))):
        for n in opts.gemm_sizes:
            cmd = [prog, "--sizes", str(n), "--threads", str(threads), "--min-time", str(opts.kernel_min_time)]
            recs, others, flagged = runner.run(cmd, torch_env(threads), f"gemm {n} t={threads}")
            by = {r["impl"]: r["gflops"] for r in recs}
            lam, ob = by.get("lamina"), by.get("openblas")
            ratio = lam / ob if lam and ob else None
            rows.append({"n": n, "threads": threads, "lamina": lam, "openblas": ob, "eigen": by.get("eigen"),
                         "ratio": ratio, "met": None if ratio is None else ratio >= GEMM_TARGET,
                         "contaminated": flagged})
            log(f"  gemm {n} t={threads}: " + ", ".join(f"{k} {v:.1f}" for k, v in by.items()) + " GFLOP/s")
    return rows


def bench_conv(runner, opts, progs):
    prog = progs.get("bench_conv")
    if not prog:
        log("bench_conv not built: skipped")
        return []
    listing = subprocess.run([prog, "--list", "1"], capture_output=True, text=True)
    if listing.returncode != 0:
        raise BenchError(f"bench_conv --list failed: {listing.stderr.strip()}")
    shapes = [s for s in listing.stdout.splitlines() if s.strip()]
    rows = []
    for threads in opts.threads:
        for shape in shapes:
            cmd = [prog, "--filter", shape, "--threads", str(threads), "--min-time", str(opts.kernel_min_time)]
            recs, others, flagged = runner.run(cmd, torch_env(threads), f"conv {shape} t={threads}")
            for phase in CONV_PHASES:
                by = {r["impl"]: r["gflops"] for r in recs if r["phase"] == phase}
                lam = by.get("lamina")
                best = max([v for k, v in by.items() if k.startswith("onednn")], default=None)
                ratio = lam / best if lam and best else None
                rows.append({"shape": shape, "phase": phase, "threads": threads, "lamina": lam,
                             "onednn_nchw": by.get("onednn_nchw"), "onednn_blocked": by.get("onednn_blocked"),
                             "ratio": ratio, "met": None if ratio is None else ratio >= CONV_TARGET,
                             "contaminated": flagged})
            log(f"  conv {shape} t={threads}: done (others {others:.2f} cores)")
    return rows


# ---------------------------------------------------------------------------------------------
def fmt(v, digits=0):
    if v is None:
        return "-"
    if digits == 0 and isinstance(v, float) and not v.is_integer() and abs(v) < 10:
        # the science models' seconds-long steps: 0.33 img/s, not 0
        return f"{v:.2g}" if abs(v) < 1 else f"{v:.1f}"
    return f"{v:,.{digits}f}"


def spread(runs):
    """max/min of a row's per-round figures: how much the machine drifted while it was measured
    (a busy neighbour on a shared host shows here, not in the contamination check)."""
    runs = [x for x in runs if x]
    return f"{max(runs) / min(runs):.2f}" if runs else "-"


def verdict(met, contaminated=False):
    if met is None:
        return "-"
    return ("met" if met else "missed") + (" (contaminated)" if contaminated else "")


def target_text(t):
    return "-" if t is None else f">= {t:.1f}x"


def tables(model_rows, gemm_rows, conv_rows, kokkos_rows=(), threading_rows=(), batch1_rows=(), tta_rows=()):
    """Markdown tables (also printed to stdout)."""
    out = []
    if threading_rows:
        out.append(f"### Threading cost at 1 thread (images/s; target: the thread-pool build at 1 thread within "
                   f"{THREADING_TARGET - 1:.0%} of the LAMINA_NO_THREADS build)\n")
        out.append("| model | phase | pool, 1 thread | LAMINA_NO_THREADS | pool time / no-threads time | result |")
        out.append("|---|---|---|---|---|---|")
        for r in threading_rows:
            out.append(f"| {r['model']} | {r['phase']} | {fmt(r['pool'])} | {fmt(r['serial'])} "
                       f"| {fmt(r['cost'], 3)}{mark(r['contaminated'])} | {verdict(r['met'], r['contaminated'])} |")
        out.append("")
    if kokkos_rows:
        out.append(f"### Kokkos backend vs host backend (images/s, median over rounds; target for Kokkos OpenMP: "
                   f"step time within {KOKKOS_TARGET:.1f}x of the host backend's)\n")
        out.append("| model | phase | Kokkos space | threads | host img/s | Kokkos img/s | Kokkos time / host time "
                   "| result |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in kokkos_rows:
            out.append(f"| {r['model']} | {r['phase']} | {r['space']} | {r['threads']} | {fmt(r['host'])} "
                       f"| {fmt(r['kokkos'])} | {fmt(r['slowdown'], 2)}{mark(r['contaminated'])} "
                       f"| {verdict(r['met'], r['contaminated'])} |")
        out.append("")
    if model_rows:
        out.append("### Models (images/s, median over rounds; float32; last column: the same ratio from each run's "
                   "fastest step, median over rounds)\n")
        out.append("| model | phase | batch | threads | lamina img/s | libtorch img/s | lamina / libtorch | target | result "
                   "| peak RSS MB lamina / libtorch | round spread (max/min) lamina / libtorch "
                   "| ratio on fastest steps |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in model_rows:
            out.append(f"| {r['model']} | {r['phase']} | {r['batch']} | {r['threads']} | {fmt(r['lamina'])} "
                       f"| {fmt(r['libtorch'])} | {fmt(r['ratio'], 2)}{mark(r['contaminated'])} | {target_text(r['target'])} "
                       f"| {verdict(r['met'], r['contaminated'])} | {r['rss_lamina']:.0f} / {r['rss_libtorch']:.0f} "
                       f"| {spread(r['lamina_runs'])} / {spread(r['libtorch_runs'])} | {fmt(r.get('best_ratio'), 2)} |")
        out.append("")
    if batch1_rows:
        out.append(f"### Batch 1, inference (the embedding case; median latency in microseconds, median over rounds; "
                   f"target: lamina >= {BATCH1_TARGET:.1f}x faster than libtorch; last column: the same from each "
                   f"run's fastest call)\n")
        out.append("| model | threads | lamina us | libtorch us | libtorch time / lamina time | target | result "
                   "| peak RSS MB lamina / libtorch | round spread (max/min) lamina / libtorch | ratio on fastest calls |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in batch1_rows:
            out.append(f"| {r['model']} | {r['threads']} | {fmt(r['lamina_us'], 1)} | {fmt(r['libtorch_us'], 1)} "
                       f"| {fmt(r['ratio'], 2)}{mark(r['contaminated'])} | {target_text(r['target'])} "
                       f"| {verdict(r['met'], r['contaminated'])} | {r['rss_lamina']:.0f} / {r['rss_libtorch']:.0f} "
                       f"| {spread(r['lamina_runs'])} / {spread(r['libtorch_runs'])} | {fmt(r.get('best_ratio'), 2)} |")
        out.append("")
    if tta_rows:
        out.append("### Time to 99% held-out accuracy (ResNet-20 MNIST recipe: t10k 0..7999 train, 8000..9999 held out; "
                   "wall seconds from the first step, evaluations included; median over rounds)\n")
        out.append("| implementation | threads | seconds to 99% | epoch reached | accuracy then | training seconds "
                   "| peak RSS MB | runs reaching 99% |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in tta_rows:
            out.append(f"| {r['impl']} | {r['threads']} | {fmt(r['seconds_to_target'], 1)}{mark(r['contaminated'])} "
                       f"| {fmt(r['epoch_reached'])} | {fmt(r['final_accuracy'], 4)} | {fmt(r['train_seconds'], 1)} "
                       f"| {r['rss']:.0f} | {r['reached']} of {r['rounds']} |")
        by = {(r["impl"], r["threads"]): r for r in tta_rows}
        for (impl, threads), r in sorted(by.items()):
            t = by.get(("libtorch", threads))
            if impl == "lamina" and t and r["seconds_to_target"] and t["seconds_to_target"]:
                out.append(f"\nAt {threads} threads libtorch takes {t['seconds_to_target'] / r['seconds_to_target']:.2f}x "
                           f"lamina's time to 99%.")
        out.append("")
    if gemm_rows:
        out.append(f"### GEMM (GFLOP/s, C = A B, row-major float32, M = N = K; target lamina >= "
                   f"{GEMM_TARGET:.0%} of OpenBLAS)\n")
        out.append("| M=N=K | threads | lamina | OpenBLAS | Eigen | lamina / OpenBLAS | result |")
        out.append("|---|---|---|---|---|---|---|")
        for r in gemm_rows:
            out.append(f"| {r['n']} | {r['threads']} | {fmt(r['lamina'], 1)} | {fmt(r['openblas'], 1)} "
                       f"| {fmt(r['eigen'], 1)} | {fmt(r['ratio'], 2)}{mark(r['contaminated'])} | {verdict(r['met'], r['contaminated'])} |")
        out.append("")
    if conv_rows:
        out.append(f"### Convolution (GFLOP/s = 2NKCRSPQ / time; target lamina >= {CONV_TARGET:.0%} of oneDNN's "
                   f"best of NCHW and blocked)\n")
        out.append("| shape (batch: ResNet-50 8, ResNet-20 32, LeNet 64) | phase | threads | lamina | oneDNN NCHW "
                   "| oneDNN blocked | lamina / best | result |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in conv_rows:
            out.append(f"| {r['shape']} | {r['phase']} | {r['threads']} | {fmt(r['lamina'], 1)} "
                       f"| {fmt(r['onednn_nchw'], 1)} | {fmt(r['onednn_blocked'], 1)} "
                       f"| {fmt(r['ratio'], 2)}{mark(r['contaminated'])} | {verdict(r['met'], r['contaminated'])} |")
        out.append("")
    return "\n".join(out)


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def parse_list(s):
    try:
        v = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not a comma-separated list of integers")
    if not v or any(x <= 0 for x in v):
        raise argparse.ArgumentTypeError(f"'{s}' must list positive integers")
    return v


def parse_models(s):
    v = []
    for x in (x.strip() for x in s.split(",") if x.strip()):
        for m in {"all": MODELS, "science": SCIENCE_MODELS}.get(x, (x,)):
            if m not in v:
                v.append(m)
    bad = [x for x in v if x not in MODELS]
    if not v or bad:
        raise argparse.ArgumentTypeError(f"'{s}': models are a comma-separated list of {', '.join(MODELS)}, "
                                         "science or all")
    return v


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default="build/bench", help="CMake build directory (default build/bench)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per model and phase (default 5)")
    ap.add_argument("--threads", type=parse_list, default=[2], help="thread counts, e.g. 2 or 1,2 (default 2)")
    ap.add_argument("--only", choices=["models", "batch1", "threading", "kokkos", "gemm", "conv", "tta"],
                    help="run only this part")
    ap.add_argument("--models", type=parse_models, default=list(DEFAULT_MODELS),
                    help="models for the models part, e.g. resnet20,resnet50; science: " + ",".join(SCIENCE_MODELS)
                    + "; all: every model (default: " + ",".join(DEFAULT_MODELS) + ")")
    ap.add_argument("--batch1-threads", type=parse_list, default=[1, 2],
                    help="thread counts of the batch-1 rows (default 1,2)")
    ap.add_argument("--tta", action="store_true", help="also run the time-to-accuracy part in a full run (minutes)")
    ap.add_argument("--mnist-dir", default=default_mnist_dir(),
                    help="MNIST t10k files for time to accuracy (default LAMINA_DATA_DIR or ../shared/data/mnist)")
    ap.add_argument("--tta-epochs", type=int, default=12, help="the recipe's epochs (default 12)")
    ap.add_argument("--tta-rounds", type=int, default=1, help="time-to-accuracy runs per implementation (default 1)")
    ap.add_argument("--kokkos-build-dir", action="append", default=[], metavar="DIR",
                    help="a LAMINA_WITH_KOKKOS=ON build with bench_models_kokkos (repeatable)")
    ap.add_argument("--min-time", type=float, default=1.0, help="timed seconds per model run (default 1)")
    ap.add_argument("--kernel-min-time", type=float, default=0.5,
                    help="timed seconds per GEMM/conv measurement (default 0.5)")
    ap.add_argument("--gemm-sizes", type=parse_list, default=[256, 512, 1024, 2048])
    ap.add_argument("--busy-threshold", type=float, default=0.10,
                    help="other processes' CPU use (in cores) above which a run is contaminated (default 0.10)")
    ap.add_argument("--max-retries", type=int, default=2, help="retries of a contaminated run (default 2)")
    ap.add_argument("--retry-sleep", type=float, default=2.0, help="seconds to wait before a retry (default 2)")
    ap.add_argument("--markdown", metavar="FILE", help="write the result tables as Markdown (for bench/RESULTS.md)")
    ap.add_argument("--json", metavar="FILE", help="write every measurement as JSON lines")
    opts = ap.parse_args(argv)
    if opts.rounds < 1 or opts.max_retries < 0 or opts.tta_rounds < 1 or opts.tta_epochs < 1:
        ap.error("--rounds, --tta-rounds and --tta-epochs must be >= 1 and --max-retries >= 0")

    if not os.path.isdir(opts.build_dir):
        raise BenchError(f"build directory {opts.build_dir} does not exist; see bench/README.md")
    progs = {n: find_program(opts.build_dir, n)
             for n in ("bench_models", "bench_models_serial", "bench_torch_models", "bench_gemm", "bench_conv",
                       "bench_peak", "time_to_accuracy", "time_to_accuracy_torch")}
    started = datetime.datetime.now().astimezone()
    runner = Runner(opts)
    model_rows = gemm_rows = conv_rows = kokkos_rows = threading_rows = batch1_rows = tta_rows = []
    peak_line = None
    if opts.only in (None, "gemm", "conv"):
        log("== fma peak")
        peak_line = bench_peak(runner, opts, progs)
    if opts.only in (None, "models"):
        log("== models")
        model_rows = bench_models(runner, opts, progs)
    if opts.only in (None, "batch1"):
        log("== batch 1")
        batch1_rows = bench_batch1(runner, opts, progs)
    if opts.only in (None, "threading"):
        log("== threading cost")
        threading_rows = bench_threading(runner, opts, progs)
    if opts.only in (None, "kokkos") and opts.kokkos_build_dir:
        log("== kokkos")
        kokkos_rows = bench_kokkos(runner, opts, progs)
    elif opts.only == "kokkos":
        raise BenchError("--only kokkos needs --kokkos-build-dir")
    if opts.only in (None, "gemm"):
        log("== gemm")
        gemm_rows = bench_gemm(runner, opts, progs)
    if opts.only in (None, "conv"):
        log("== conv")
        conv_rows = bench_conv(runner, opts, progs)
    if opts.only == "tta" or (opts.only is None and opts.tta):
        log("== time to accuracy")
        tta_rows = bench_tta(runner, opts, progs)

    body = tables(model_rows, gemm_rows, conv_rows, kokkos_rows, threading_rows, batch1_rows, tta_rows)
    if runner.contaminated:
        note = (f"CONTAMINATED: {runner.contaminated} of {runner.runs} runs had other processes using more than "
                f"{opts.busy_threshold:.2f} cores after {opts.max_retries} retries (worst {runner.max_others:.2f} "
                f"cores); their ratios are marked *. Re-measure on an idle machine.")
    else:
        note = (f"Clean: in all {runner.runs} runs other processes used at most {runner.max_others:.2f} cores "
                f"(threshold {opts.busy_threshold:.2f}; {runner.retried} retries).")
    command = "python3 bench/run_bench.py " + shlex.join(argv)
    header = (f"Date: {started.strftime('%Y-%m-%d %H:%M %Z')}  \n"
              f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs (reports: {cpu_isa()})  \n"
              + (f"{peak_line}  \n" if peak_line else "")
              + (f"OpenBLAS kernels (libtorch's GEMMs and bench_gemm): OPENBLAS_CORETYPE={openblas_coretype()}  \n"
                 if openblas_coretype() else "") +
              f"Command: `{command.strip()}`  \n"
              f"{note}\n")
    print(header)
    print(body)
    if opts.markdown:
        with open(opts.markdown, "w") as f:
            f.write("## Results\n\n" + header + "\n" + body + "\n")
        log(f"wrote {opts.markdown}")
    if opts.json:
        with open(opts.json, "w") as f:
            for r in runner.raw:
                f.write(json.dumps(r) + "\n")
        log(f"wrote {opts.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        print(f"run_bench.py: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
