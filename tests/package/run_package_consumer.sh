#!/usr/bin/env bash
# ctest package_consumer: install lamina from a separate configure of the source tree into a
# temporary prefix, check the installed CMake package, then configure, build and run
# tests/package/consumer (find_package(lamina CONFIG REQUIRED) + lamina::lamina) against it.
#   run_package_consumer.sh <lamina source dir> <work dir> [extra cmake args, e.g. -G ... -DCMAKE_CXX_COMPILER=...]
set -euo pipefail
src=$(cd "$1" && pwd); work=$2; shift 2
cmake_args=("$@")
fail() { echo "package_consumer: FAIL: $*" >&2; exit 1; }
step() { echo; echo "---- $* ----"; }

rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
prefix=$work/prefix

step "configure lamina (tests, examples, benchmarks off) with prefix $prefix"
cmake -S "$src" -B "$work/lamina-build" "${cmake_args[@]}" -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DLAMINA_BUILD_TESTS=OFF -DLAMINA_BUILD_EXAMPLES=OFF -DLAMINA_BUILD_BENCH=OFF -DLAMINA_INSTALL=ON
step "install"
cmake --install "$work/lamina-build"

step "check the installed package"
cfg_dir=$(dirname "$(find "$prefix" -name lamina-config.cmake -print -quit)")
[[ "$cfg_dir" != . && -f "$cfg_dir/lamina-config.cmake" ]] || fail "no lamina-config.cmake under $prefix"
targets=("$cfg_dir"/lamina-targets*.cmake)
[[ -f "${targets[0]}" ]] || fail "no lamina-targets*.cmake in $cfg_dir"
[[ -f "$cfg_dir/lamina-config-version.cmake" ]] || fail "no lamina-config-version.cmake in $cfg_dir"
echo "package files: $(cd "$cfg_dir" && ls)"
# Code lines only (comments may explain why xtl is avoided).
if grep -nE '^[^#]*\bxtl\b' "$cfg_dir"/*.cmake; then fail "the installed CMake files mention xtl (xsimd's bogus dependency)"; fi
if grep -nE '^[^#]*march=native' "$cfg_dir"/*.cmake; then fail "the installed CMake files force -march=native on consumers"; fi
if grep -n "$src/include" "$cfg_dir"/*.cmake; then fail "the installed CMake files point into the source tree"; fi
if grep -nE '^[^#]*(lamina_dev_flags|Catch2)' "$cfg_dir"/*.cmake; then fail "the installed CMake files export lamina's own dev targets"; fi
( cd "$src/include" && find lamina -name '*.hpp' | sort ) > "$work/src-headers.txt"
( cd "$prefix/include" && find lamina -name '*.hpp' | sort ) > "$work/installed-headers.txt"
diff -u "$work/src-headers.txt" "$work/installed-headers.txt" || fail "installed headers differ from include/lamina"
echo "installed $(wc -l < "$work/installed-headers.txt") headers; no xtl, no -march=native"

step "configure the consumer with CMAKE_PREFIX_PATH=$prefix"
cmake -S "$src/tests/package/consumer" -B "$work/consumer-build" "${cmake_args[@]}" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
cc_json=$work/consumer-build/compile_commands.json
if grep -n 'march=native' "$cc_json"; then fail "the consumer is compiled with -march=native"; fi
if grep -nE -- "(-I|-isystem )$src/include([ \"]|\$)" "$cc_json"; then
  fail "the consumer compiles against the source tree's include/, not the installed headers"
fi
grep -q -- "$prefix/include" "$cc_json" || fail "the consumer does not use $prefix/include"
step "build the consumer"
cmake --build "$work/consumer-build"
step "run the consumer"
"$work/consumer-build/app"
echo "package_consumer: PASS"
