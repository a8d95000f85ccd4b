#!/usr/bin/env bash
# CI stage for the Kokkos backend (include/lamina/backends/kokkos). Two builds:
#   serial  Debian's libtrilinos-kokkos-dev (Kokkos 3.4.1, Serial only)   -> build/ci-kokkos-serial
#   openmp  Kokkos with OpenMP + Serial from scripts/build_kokkos.sh       -> build/ci-kokkos-openmp
# Each: configure with LAMINA_WITH_KOKKOS=ON, build the Kokkos tests and example twins, check
# that the Kokkos headers pull in no host-backend header (preprocessor), run ctest -L kokkos,
# and, when MNIST is present, one epoch of examples/kokkos/mnist_mlp_kokkos (>= 90%).
#
#   scripts/test_kokkos.sh                  both builds
#   scripts/test_kokkos.sh serial|openmp    one of them
#
# Environment: LAMINA_JOBS (default 2), LAMINA_DATA_DIR (default ../shared/data/mnist when it
# exists), LAMINA_CACHE (where build_kokkos.sh keeps sources and the install), LAMINA_KOKKOS_MLP=0
# to skip the MNIST run. Budget: about 10 minutes for both on the 2-core development machine.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
JOBS=${LAMINA_JOBS:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_PROC_BIND=${OMP_PROC_BIND:-false} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export CTEST_OUTPUT_ON_FAILURE=1
if [[ -z "${LAMINA_DATA_DIR:-}" && -d "$ROOT/../shared/data/mnist" ]]; then
  LAMINA_DATA_DIR=$(cd "$ROOT/../shared/data/mnist" && pwd)
fi
variants=("$@")
[[ ${#variants[@]} -eq 0 ]] && variants=(serial openmp)

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }
targets=(lamina_kokkos_tests mnist_mlp_kokkos mnist_lenet_kokkos readme_examples_kokkos)

stage() {  # stage NAME KOKKOS_DIR KOKKOS_INCLUDE
  local name=$1 kdir=$2 kinc=$3 build="$ROOT/build/ci-kokkos-$1" t0=$SECONDS
  mkdir -p "$build"
  printf '\n==== kokkos %s: Kokkos_DIR=%s ====\n' "$name" "$kdir"
  cmake -S "$ROOT" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLAMINA_WITH_KOKKOS=ON -DKokkos_DIR="$kdir" \
        -DLAMINA_BUILD_BENCH=OFF ${LAMINA_DATA_DIR:+-DLAMINA_DATA_DIR="$LAMINA_DATA_DIR"} >"$build/lamina-configure.log" 2>&1 \
    || { cat "$build/lamina-configure.log"; return 1; }
  grep -E 'lamina: (Kokkos|KokkosKernels)' "$build/lamina-configure.log"
  cmake --build "$build" -j "$JOBS" --target "${targets[@]}" || return 1
  # No host-backend header behind the Kokkos backend (test_kokkos_no_host checks types too).
  local pre
  pre=$(echo '#include <lamina/kokkos.hpp>' |
        ${CXX:-c++} -std=c++17 -fopenmp -E -x c++ -I"$ROOT/include" -isystem "$kinc" -isystem /usr/include/eigen3 - 2>&1) \
    || { echo "$pre" | tail -20; echo "kokkos $name: preprocessing kokkos.hpp failed"; return 1; }
  if grep -E '^# [0-9]+ ".*(backends/host/|xsimd)' <<<"$pre" | head -5 | grep .; then
    echo "kokkos $name: kokkos.hpp includes host-backend headers (above)"; return 1
  fi
  echo "kokkos $name: kokkos.hpp includes no backends/host header"
  (cd "$build" && ctest -L kokkos -j "$JOBS") || return 1
  if [[ "${LAMINA_KOKKOS_MLP:-1}" != 0 && -n "${LAMINA_DATA_DIR:-}" && -d "${LAMINA_DATA_DIR}" ]]; then
    local out acc
    out=$("$build/examples/kokkos/mnist_mlp_kokkos" "$LAMINA_DATA_DIR" --epochs 1 --seed 1 2>&1) || { echo "$out"; return 1; }
    acc=$(grep -o 'held-out accuracy [0-9.]*' <<<"$out" | tail -1 | awk '{print $3}')
    echo "kokkos $name: mnist_mlp_kokkos 1 epoch: ${acc}%"
    awk -v a="$acc" 'BEGIN { exit !(a >= 90) }' || { echo "kokkos $name: MLP accuracy below 90%"; return 1; }
  fi
  echo "kokkos $name: OK in $((SECONDS - t0)) s"
}

status=0
for v in "${variants[@]}"; do
  case "$v" in
    serial)
      { dpkg -s libtrilinos-kokkos-dev && dpkg -s libtrilinos-kokkos-kernels-dev; } >/dev/null 2>&1 ||
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
          libtrilinos-kokkos-dev libtrilinos-kokkos-kernels-dev >/dev/null || status=1
      kdir=$(dirname "$(dpkg -L libtrilinos-kokkos-dev 2>/dev/null | grep '/cmake/Kokkos/KokkosConfig.cmake$' | head -n1)")
      stage serial "$kdir" /usr/include/trilinos || status=1 ;;
    openmp)
      prefix=$("$ROOT/scripts/build_kokkos.sh" | tail -n1) || { status=1; continue; }
      kdir=$(dirname "$(find "$prefix" -name KokkosConfig.cmake | head -n1)")
      stage openmp "$kdir" "$prefix/include" || status=1 ;;
    *) echo "test_kokkos.sh: unknown variant '$v' (serial or openmp)" >&2; exit 2 ;;
  esac
done
[[ $status -eq 0 ]] && echo "test_kokkos.sh: all Kokkos stages passed" || echo "test_kokkos.sh: FAILED"
exit $status
