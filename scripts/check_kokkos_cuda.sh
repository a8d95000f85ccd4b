#!/usr/bin/env bash
# CUDA compile check for lamina's Kokkos backend: the Kokkos tests and examples must compile
# and link for CUDA (sm_90 by default) against a CUDA-enabled Kokkos, with
# -Werror=cross-execution-space-call (cmake/LaminaKokkos.cmake adds it when Kokkos has CUDA),
# so any host-only call inside a kernel fails the build. The tests then also instantiate every
# kernel on Kokkos::Cuda (tests/kokkos/kokkos_test_support.hpp).
#
# A development-time check, not a CI stage: Debian 12 ships no Kokkos 4 (its Kokkos 3.4.1
# cannot target CUDA 13), so a fresh CI machine cannot build a CUDA Kokkos. It needs the CUDA
# toolkit (nvcc) but no GPU: the binaries link against the toolkit's stub libcuda and RUN ONLY
# ON A GPU MACHINE. See ../shared/design/KOKKOS-CUDA.md beside the checkout.
#
# Usage:
#   scripts/check_kokkos_cuda.sh [KOKKOS_CUDA_ROOT]
#       configure lamina against the CUDA Kokkos install prefix (argument, or the
#       KOKKOS_CUDA_ROOT environment variable) in BUILD_DIR and build the Kokkos targets.
#   scripts/check_kokkos_cuda.sh --build-kokkos KOKKOS_SRC [PREFIX]
#       first build and install Kokkos (Serial + CUDA, C++17) from the source tree KOKKOS_SRC
#       (e.g. `git archive 4.6.01` of github.com/kokkos/kokkos) into PREFIX (default
#       $HOME/.cache/lamina/kokkos-cuda), then run the check against it. With CUDA >= 13 and a
#       Kokkos older than 4.7 the three CUDA 13 API changes in
#       core/src/Cuda/Kokkos_Cuda_Instance.hpp are patched in KOKKOS_SRC in place (idempotent).
#
# Environment: BUILD_DIR (default build/kokkos-cuda), JOBS (default 2), KOKKOS_ARCH (Kokkos
# architecture option, default HOPPER90), CUDA_SM (matching -arch, default sm_90),
# CUDA_HOME (default /usr/local/cuda), LAMINA_ARCH_FLAGS (host flags; default lamina's).
# Wall times on a 2-core machine: Kokkos about 2.5 min, lamina's Kokkos targets about 15 min.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
BUILD_DIR="${BUILD_DIR:-build/kokkos-cuda}"
JOBS="${JOBS:-2}"
KOKKOS_ARCH="${KOKKOS_ARCH:-HOPPER90}"
CUDA_SM="${CUDA_SM:-sm_90}"
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export PATH="$CUDA_HOME/bin:$PATH"
# every Kokkos test (lamina_kokkos_tests builds tests/kokkos/test_kokkos_*.cpp), the example
# twins and the README's Kokkos examples
targets=(lamina_kokkos_tests mnist_mlp_kokkos mnist_lenet_kokkos resnet_mnist_kokkos readme_examples_kokkos)
# CHECK_TARGETS (space-separated) replaces that list, e.g. CHECK_TARGETS=test_mpi_kokkos.
[ -n "${CHECK_TARGETS:-}" ] && read -r -a targets <<< "$CHECK_TARGETS"

command -v nvcc >/dev/null || { echo "check_kokkos_cuda: nvcc not found (CUDA_HOME=$CUDA_HOME)" >&2; exit 2; }

patch_kokkos_for_cuda13() {  # $1: Kokkos source tree
    local f="$1/core/src/Cuda/Kokkos_Cuda_Instance.hpp"
    [ -f "$f" ] || return 0
    python3 - "$f" <<'EOF'
import sys
p = sys.argv[1]
s = open(p).read()
if "CUDART_VERSION >= 13000" in s or "cudaGraphAddDependencies(graph, from, to, numDependencies)" not in s:
    sys.exit(0)  # already patched, or a Kokkos that knows CUDA 13
def sub(old, new):
    global s
    if old not in s:
        sys.exit("check_kokkos_cuda: unexpected Kokkos source, cannot patch: " + old.strip())
    s = s.replace(old, new)
sub("    return cudaGraphAddDependencies(graph, from, to, numDependencies);",
    "#if CUDART_VERSION >= 13000\n"
    "    return cudaGraphAddDependencies(graph, from, to, nullptr, numDependencies);\n"
    "#else\n"
    "    return cudaGraphAddDependencies(graph, from, to, numDependencies);\n"
    "#endif")
loc = ("    cudaMemLocation loc;\n"
       "    loc.id   = {v};\n"
       "    loc.type = {v} == cudaCpuDeviceId ? cudaMemLocationTypeHost : cudaMemLocationTypeDevice;\n")
sub("    return cudaMemAdvise(devPtr, count, advice, device);",
    "#if CUDART_VERSION >= 13000\n" + loc.format(v="device") +
    "    return cudaMemAdvise(devPtr, count, advice, loc);\n"
    "#else\n"
    "    return cudaMemAdvise(devPtr, count, advice, device);\n"
    "#endif")
sub("    return cudaMemPrefetchAsync(devPtr, count, dstDevice,\n                                get_input_stream(stream));",
    "#if CUDART_VERSION >= 13000\n" + loc.format(v="dstDevice") +
    "    return cudaMemPrefetchAsync(devPtr, count, loc, 0, get_input_stream(stream));\n"
    "#else\n"
    "    return cudaMemPrefetchAsync(devPtr, count, dstDevice, get_input_stream(stream));\n"
    "#endif")
open(p, "w").write(s)
print("check_kokkos_cuda: patched " + p + " for the CUDA 13 runtime API")
EOF
}

if [ "${1:-}" = "--build-kokkos" ]; then
    src="${2:?usage: $0 --build-kokkos KOKKOS_SRC [PREFIX]}"
    src="$(cd "$src" && pwd)"
    prefix="${3:-$HOME/.cache/lamina/kokkos-cuda}"
    patch_kokkos_for_cuda13 "$src"
    kbuild="$prefix-build"
    start=$SECONDS
    # nvcc_wrapper defaults to an architecture CUDA 13 rejects: pass -arch for the compiler checks.
    cmake -S "$src" -B "$kbuild" -DCMAKE_CXX_COMPILER="$src/bin/nvcc_wrapper" -DCMAKE_CXX_FLAGS="-arch=$CUDA_SM" \
        -DKokkos_ENABLE_CUDA=ON -DKokkos_ENABLE_SERIAL=ON -DKokkos_ARCH_"$KOKKOS_ARCH"=ON \
        -DCMAKE_CXX_STANDARD=17 -DKokkos_ENABLE_TESTS=OFF -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix"
    cmake --build "$kbuild" -j "$JOBS"
    cmake --install "$kbuild"
    echo "check_kokkos_cuda: Kokkos installed in $prefix ($((SECONDS - start)) s)"
    set -- "$prefix"
fi

root="${1:-${KOKKOS_CUDA_ROOT:-}}"
[ -n "$root" ] || { echo "usage: $0 KOKKOS_CUDA_ROOT | --build-kokkos KOKKOS_SRC [PREFIX]" >&2; exit 2; }
grep -qs 'Kokkos_DEVICES.*CUDA' "$root"/lib*/cmake/Kokkos/KokkosConfigCommon.cmake ||
    { echo "check_kokkos_cuda: $root is not a CUDA-enabled Kokkos install" >&2; exit 2; }

start=$SECONDS
arch_args=()
[ -n "${LAMINA_ARCH_FLAGS+x}" ] && arch_args=(-DLAMINA_ARCH_FLAGS="$LAMINA_ARCH_FLAGS")
# g++ as the C++ compiler: Kokkos routes its dependents through nvcc_wrapper itself
# (kokkos_launch_compiler); the lamina targets without Kokkos stay plain g++ and are not built.
cmake -S . -B "$BUILD_DIR" -DKokkos_ROOT="$root" -DCMAKE_CXX_COMPILER=g++ -DLAMINA_WITH_KOKKOS=ON \
    -DLAMINA_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Release "${arch_args[@]}"
grep -q 'cross-execution-space-call' "$BUILD_DIR/tests/kokkos/CMakeFiles/test_kokkos_kernels.dir/flags.make" ||
    { echo "check_kokkos_cuda: -Werror=cross-execution-space-call missing from the compile flags" >&2; exit 1; }
# With MPI found, the communicators' Kokkos test too: device buckets to MPI, directly or
# through pinned host staging (communicators/staging.hpp).
if [ -z "${CHECK_TARGETS:-}" ] && cmake --build "$BUILD_DIR" --target help | grep -q 'test_mpi_kokkos'; then
    targets+=(test_mpi_kokkos)
fi
cmake --build "$BUILD_DIR" -j "$JOBS" --target "${targets[@]}"

echo "check_kokkos_cuda: OK: ${targets[*]} compiled and linked for CUDA $CUDA_SM ($((SECONDS - start)) s):"
# Device code per binary: cuobjdump -lelf when the toolkit has it, else the .nv_fatbin headers.
list_device_code() {
    if command -v cuobjdump >/dev/null; then
        cuobjdump -lelf "$1" | sed -E 's/.*\.(sm_[0-9a-z]+)\..*/ELF \1/' | sort | uniq -c
        return
    fi
    python3 - "$1" <<'EOF'
import struct, subprocess, sys, tempfile
with tempfile.TemporaryDirectory() as d:
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.nv_fatbin", sys.argv[1], d + "/fb"], check=True)
    data = open(d + "/fb", "rb").read()
pos, seen = 0, {}
while pos + 16 <= len(data):
    magic, _, hsize, fsize = struct.unpack_from("<IHHQ", data, pos)
    if magic != 0xBA55ED50:
        pos += 8
        continue
    e, end = pos + hsize, pos + hsize + fsize
    while e < end:
        kind, _, ehs, size = struct.unpack_from("<HHII", data, e)
        key = {1: "PTX", 2: "ELF"}.get(kind, "kind%d" % kind) + " sm_%d" % struct.unpack_from("<I", data, e + 28)[0]
        seen[key] = seen.get(key, 0) + 1
        e += ehs + size
    pos = end
print("  " + (", ".join("%s x%d" % kv for kv in sorted(seen.items())) or "no device code"))
EOF
}
while IFS= read -r f; do
    echo "$f"
    list_device_code "$f"
done < <(find "$BUILD_DIR/tests/kokkos" "$BUILD_DIR/tests/mpi" "$BUILD_DIR/examples/kokkos" -maxdepth 1 -type f -perm -u+x \
             2>/dev/null | sort)
echo "check_kokkos_cuda: these binaries run only on a machine with an NVIDIA GPU."
