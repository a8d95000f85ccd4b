#!/usr/bin/env bash
# ctest subdirectory_consumer: configure, build and run tests/package/subdir, a project that
# does add_subdirectory(<lamina source> lamina). Catch2 is made unfindable
# (CMAKE_DISABLE_FIND_PACKAGE_Catch2), and the build must contain no lamina test executables
# and no -march=native (lamina's own dev flags must not reach consumers).
#   run_subdirectory_consumer.sh <lamina source dir> <work dir> [extra cmake args]
set -euo pipefail
src=$(cd "$1" && pwd); work=$2; shift 2
cmake_args=("$@")
fail() { echo "subdirectory_consumer: FAIL: $*" >&2; exit 1; }
step() { echo; echo "---- $* ----"; }

rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
build=$work/build

step "configure tests/package/subdir (add_subdirectory of $src), Catch2 disabled"
cmake -S "$src/tests/package/subdir" -B "$build" "${cmake_args[@]}" -DLAMINA_SOURCE_DIR="$src" \
  -DCMAKE_DISABLE_FIND_PACKAGE_Catch2=ON -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
for opt in LAMINA_BUILD_TESTS LAMINA_BUILD_EXAMPLES LAMINA_BUILD_BENCH LAMINA_INSTALL; do
  grep -q "^$opt:BOOL=OFF$" "$build/CMakeCache.txt" || fail "$opt is not OFF when lamina is a subdirectory"
done
if grep -n 'march=native' "$build/compile_commands.json"; then fail "a consumer target is compiled with -march=native"; fi
if grep -n '/tests/unit/\|/examples/\|/bench/' "$build/compile_commands.json"; then
  fail "lamina's tests, examples or benchmarks are part of the consumer's build"
fi
step "build"
cmake --build "$build"
# CMakeFiles/ holds CMake's own probes (e.g. FindMPI's test_mpi_CXX.bin), not lamina's targets.
found=$(find "$build" -path '*/CMakeFiles' -prune -o -type f \( -name 'test_*' -o -name 'single_include_smoke' \) -perm -u+x -print)
[[ -z "$found" ]] || fail "lamina test executables were built: $found"
step "run"
"$build/app"
echo "subdirectory_consumer: PASS"
