#!/usr/bin/env bash
# The CI run of the simulated scaling study's program (tests/mpi/CMakeLists.txt registers it as
# the ctest scaling_sim_8_ranks): compiles bench/scaling_sim/scaling_sim.cpp with smpicxx and runs
# it on 8 simulated ranks of the fat tree, on tiny_profile.csv with real buffers, so that the
# program checks every bucket's sum over the ranks and that a step takes at least its injected
# compute (it exits non-zero otherwise); where the hybrid scheme's headers exist, also 2 groups of
# 4 + 2 parameter servers, whose group sums it checks the same way. Exit 77 (ctest: skipped) when
# SimGrid is not installed.
#
#   check_scaling_sim.sh SOURCE_DIR WORK_DIR [SMPICXX SMPIRUN]
set -euo pipefail
src=$1
work=$2
smpicxx=${3:-$(command -v smpicxx || true)}
smpirun=${4:-$(command -v smpirun || true)}
if [[ -z "$smpicxx" || -z "$smpirun" || ! -x "$smpicxx" || ! -x "$smpirun" ]]; then
  echo "skipped: SimGrid SMPI (smpicxx and smpirun, Debian package libsimgrid-dev) is not installed"
  exit 77
fi
mkdir -p "$work"
"$smpicxx" -std=c++17 -O2 -DSMPI_NO_OVERRIDE_MALLOC -Wall -Wextra -Wpedantic -I "$src/include" \
  "$src/bench/scaling_sim/scaling_sim.cpp" -o "$work/scaling_sim"
for i in $(seq 0 9); do echo "node-$i"; done > "$work/hosts_10.txt"
# the options of bench/run_scaling_study.py (it says why each)
smpi=(-platform "$src/bench/scaling_sim/fat_tree_512.xml" -hostfile "$work/hosts_10.txt"
  --cfg=smpi/host-speed:1Gf --cfg=smpi/simulate-computation:no --cfg=smpi/test:1e-6 --cfg=smpi/cpu-threshold:0
  --cfg=smpi/grow-injected-times:no --cfg=smpi/coll-selector:ompi --cfg=smpi/tmpdir:"$work" --log=root.thres:warning)
out=$("$smpirun" -np 8 "${smpi[@]}" "$work/scaling_sim" --profile "$src/bench/scaling_sim/tiny_profile.csv" \
  --platform fat_tree_512 --buffers real --check-step --first-bucket-mib 0.001 --bucket-mib 0.25 --warmup 1 --steps 2)
echo "$out"
# the program's own checks passed (else set -e stopped here); the line says what they checked
grep -q '"ranks":8,' <<<"$out"
grep -q '"buckets":3,' <<<"$out"
grep -q '"sums":"correct"' <<<"$out"
grep -q '"step_at_least_compute":true' <<<"$out"
if [[ -f "$src/include/lamina/communicators/parameter_client.hpp" ]]; then
  out=$("$smpirun" -np 10 "${smpi[@]}" "$work/scaling_sim" --profile "$src/bench/scaling_sim/tiny_profile.csv" \
    --buffers real --groups 2 --servers 2 --slow-group 0 --straggler-factor 1.5 --first-bucket-mib 0.001 --bucket-mib 0.25 --steps 3)
  echo "$out"
  grep -q '"scheme":"hybrid"' <<<"$out"
  grep -q '"server_updates":16,' <<<"$out"  # 2 servers x 2 groups x (1 warm-up + 3 steps)
  grep -q '"sums":"correct"' <<<"$out"
fi
