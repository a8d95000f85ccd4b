#!/usr/bin/env python3
"""Compile time and peak compiler memory of lamina networks (the usability side of type
computations): a generated 250-layer flat network, and the ResNet-50 example. Prints one JSON
line per measurement.

usage: python3 bench/compile_time/measure.py [--cxx g++] [--layers 250] [--opt -O2] [--repeat 1]

The flat network alternates dense<32>, tanh, dense<32>, gelu, ... (no two neighbours fuse, so
every layer is its own leaf) and is trained for one step and run through predict, so the
trainer, the model and every node are instantiated. Measured with /usr/bin/time -v (wall time,
maximum resident set size) on one compiler process."""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def flat_source(layers):
    acts = ["lm::tanh", "lm::gelu"]
    items = ["lm::input<32>"]
    for i in range(layers):
        items.append("lm::dense<32>" if i % 2 == 0 else acts[(i // 2) % 2])
    net = ",\n    ".join(items)
    return f"""#include <lamina/lamina.hpp>
#include <cstdio>
namespace lm = lamina;
using deep = lm::sequential<
    {net}>;
int main() {{
    deep::model<lm::host> net{{lm::seed{{1}}}};
    lm::dataset<float> d(8, 32, 32);
    lm::trainer fit{{net, lm::loss::mse{{}}, lm::optim::sgd{{0.01}}}};
    fit.run(d, lm::epochs{{1}}, lm::batch{{8}});
    std::vector<float> y(32);
    net.predict(d.view().inputs, y.data(), 1);
    std::printf("%zu layers, %zu parameters, %g\\n", net.graph().leaves().size(), net.parameter_count, double(y[0]));
}}
"""


def measure(cxx, src_path, opt, extra):
    cmd = ["/usr/bin/time", "-v", cxx, "-std=c++17", opt, "-mavx2", "-mfma", "-I" + os.path.join(ROOT, "include"),
           "-isystem", "/usr/include/eigen3", "-c", src_path, "-o", os.devnull] + extra
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"compile failed: {' '.join(cmd)}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (.*)", p.stderr).group(1)
    parts = [float(x) for x in wall.split(":")]
    seconds = parts[-1] + 60 * parts[-2] + (3600 * parts[-3] if len(parts) > 2 else 0)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return seconds, rss_kb / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cxx", default="g++")
    ap.add_argument("--layers", type=int, default=250)
    ap.add_argument("--opt", default="-O2")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    version = subprocess.run([a.cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    with tempfile.TemporaryDirectory() as tmp:
        flat = os.path.join(tmp, "flat.cpp")
        with open(flat, "w") as f:
            f.write(flat_source(a.layers))
        cases = [(f"flat_{a.layers}_layers", flat, [])]
        resnet = os.path.join(ROOT, "examples", "resnet50", "main.cpp")
        if os.path.exists(resnet):
            cases.append(("resnet50_example", resnet, ["-I" + os.path.join(ROOT, "examples", "common")]))
        for name, path, extra in cases:
            for _ in range(a.repeat):
                s, mb = measure(a.cxx, path, a.opt, extra)
                print(json.dumps({"bench": "compile_time", "what": name, "compiler": version, "flags": a.opt,
                                  "seconds": round(s, 2), "peak_rss_mb": round(mb, 1), "cpu": platform.processor()}),
                      flush=True)


if __name__ == "__main__":
    main()
