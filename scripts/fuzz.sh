#!/usr/bin/env bash
# Runs lamina's libFuzzer harnesses (tests/fuzz/) for longer than scripts/test.sh does.
#
#   scripts/fuzz.sh [seconds] [harness...]   each harness for `seconds` (default 600), in parallel;
#                                            harnesses: checkpoint, idx, npy, safetensors (default: all;
#                                            safetensors needs nlohmann-json)
#
# Builds only the harnesses with clang++-14 (LAMINA_CLANG_CXX) and -fsanitize=fuzzer,address,
# undefined in build/fuzz (incremental), seeds them with tests/fuzz/corpus/ and keeps what they
# find in build/fuzz-corpus/<harness>/ (outside git; it grows from run to run). A crash,
# sanitizer report or leak is saved in build/fuzz-corpus/<harness>-findings/ and fails the run.
# Environment: LAMINA_JOBS (build parallelism, default 2).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

secs=600
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then secs=$1; shift; fi
harnesses=("$@")
[[ ${#harnesses[@]} -eq 0 ]] && harnesses=(checkpoint idx npy safetensors)
for h in "${harnesses[@]}"; do
  [[ -f "tests/fuzz/fuzz_$h.cpp" ]] || { echo "fuzz.sh: no harness '$h' (tests/fuzz/fuzz_$h.cpp)" >&2; exit 2; }
done
clangxx=${LAMINA_CLANG_CXX:-clang++-14}
command -v "$clangxx" >/dev/null 2>&1 || { echo "fuzz.sh: $clangxx not found (scripts/setup.sh installs it)" >&2; exit 1; }
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

cmake -S . -B build/fuzz "${launcher[@]}" -DCMAKE_CXX_COMPILER="$(command -v "$clangxx")" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1" \
  -DLAMINA_BUILD_TESTS=ON -DLAMINA_FUZZ=ON -DLAMINA_WITH_KOKKOS=OFF \
  -DLAMINA_BUILD_EXAMPLES=OFF -DLAMINA_BUILD_BENCH=OFF >/dev/null || { echo "fuzz.sh: configure failed" >&2; exit 1; }
targets=()
for h in "${harnesses[@]}"; do targets+=("fuzz_$h"); done
cmake --build build/fuzz -j"${LAMINA_JOBS:-2}" --target "${targets[@]}" || { echo "fuzz.sh: build failed" >&2; exit 1; }

pids=()
for h in "${harnesses[@]}"; do
  (bash tests/fuzz/run_fuzzer.sh "build/fuzz/tests/fuzz_$h" "$secs" "build/fuzz-corpus/$h" "tests/fuzz/corpus/$h" 2>&1 |
     sed -u "s/^/[$h] /") &
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then failed=1; echo "fuzz.sh: ${harnesses[$i]}: FAILED" >&2; fi
done
if [[ $failed -ne 0 ]]; then echo "fuzz.sh: FAILED (findings under build/fuzz-corpus/)"; exit 1; fi
echo "fuzz.sh: ${harnesses[*]}: ${secs}s each, no finding"
