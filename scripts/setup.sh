#!/usr/bin/env bash
# Installs the Debian 12 packages that lamina's build, tests and examples need.
#
#   scripts/setup.sh           build + tests + examples (g++ and clang-14 stages of scripts/test.sh)
#   scripts/setup.sh --bench   also the comparison libraries used by bench/ (libtorch, oneDNN, OpenBLAS)
#   scripts/setup.sh --kokkos  also Debian's Kokkos (Serial only) for the Kokkos backend's tests
#
# Idempotent: when every package is already installed it runs neither `apt-get update` nor
# `apt-get install`. Runs as root directly, otherwise through sudo when sudo exists.
# Non-interactive (DEBIAN_FRONTEND=noninteractive), so it is safe in CI without a terminal.
set -euo pipefail

# libclang-rt-14-dev: libFuzzer and the sanitizer runtimes for clang-14 (the fuzz harnesses of
# stage (c) and scripts/fuzz.sh); only recommended by clang-14, so --no-install-recommends skips it.
# nlohmann-json3-dev: the JSON parser of lamina's safetensors reader (optional for users; its
# tests and fuzz harness need it).
# libhdf5-dev, libpng-dev: DeepGalaxy's HDF5 data layout and the PNG pictures of
# examples/deepgalaxy (optional for users and for lamina::lamina: without them the HDF5 test
# reports itself skipped and the example trains from memory and writes PGM).
# libopenmpi-dev, openmpi-bin: the MPI communicator (include/lamina/communicators/mpi.hpp), its
# tests under mpirun, examples/distributed_mnist and bench_allreduce (optional for users and for
# lamina::lamina: without MPI, LAMINA_WITH_MPI is OFF and those targets are not built).
# libsimgrid-dev: SimGrid SMPI (smpicxx, smpirun) for the simulated 8-512-rank scaling study
# (bench/run_scaling_study.py) and its CI run (ctest scaling_sim_8_ranks, skipped without it).
packages=(cmake g++ make python3 libeigen3-dev libxsimd-dev catch2 zlib1g-dev clang-14 libclang-rt-14-dev
          nlohmann-json3-dev libhdf5-dev libpng-dev libopenmpi-dev openmpi-bin libsimgrid-dev)
bench_packages=(libtorch-dev libdnnl-dev libopenblas-dev libopenblas0-openmp)
# Kokkos 3.4.1 (Serial) and its KokkosKernels (the backend's GEMM through KokkosBlas::gemm);
# scripts/build_kokkos.sh builds an OpenMP Kokkos from Debian's sources
# and needs xz-utils to unpack them.
kokkos_packages=(libtrilinos-kokkos-dev libtrilinos-kokkos-kernels-dev xz-utils)

for arg in "$@"; do
  case "$arg" in
    --bench) packages+=("${bench_packages[@]}") ;;
    --kokkos) packages+=("${kokkos_packages[@]}") ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (use --bench, --kokkos or --help)" >&2; exit 2 ;;
  esac
done

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup.sh: this script needs a Debian/Ubuntu system (dpkg-query and apt-get)." >&2
  echo "setup.sh: install these packages (or equivalents) yourself: ${packages[*]}" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  if [[ "$status" != "installed" ]]; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup.sh: all ${#packages[@]} packages already installed (${packages[*]}); nothing to do."
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "setup.sh: missing packages: ${missing[*]}" >&2
  echo "setup.sh: not root and sudo is not available; install them as root." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "setup.sh: missing packages: ${missing[*]}"
run() {
  echo "setup.sh: running: $*"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive "$@"
}
run apt-get update -q -o DPkg::Lock::Timeout=300
run apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}"
echo "setup.sh: installed: ${missing[*]}"
