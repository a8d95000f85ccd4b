#!/usr/bin/env bash
# lamina's test suite: what CI runs (.ci/run) and what developers run before pushing.
#
#   scripts/test.sh            setup + all stages (a, b, c, k)
#   scripts/test.sh --quick    setup + stage (a) only
#   scripts/test.sh --stage b  setup + one stage (a, b, c or k; may be repeated)
#   scripts/test.sh --no-setup skip scripts/setup.sh (packages already installed)
#
# Stages, each in its own build folder (reused between runs, so reruns are incremental):
#   (a) build/ci-release  g++ Release (-mavx2 -mfma, the documented target), tests + examples (+ bench), ctest
#   (b) build/ci-asan     g++ -O0 -g1 with AddressSanitizer + UBSan (-DLAMINA_SANITIZE=ON), tests, ctest
#   (c) build/ci-clang    clang++-14 -O1 (asserts on), tests, ctest; also the libFuzzer harnesses
#       (tests/fuzz/: checkpoint loader, IDX/gzip reader; -fsanitize=fuzzer,address,undefined),
#       each fuzzed for LAMINA_FUZZ_SECONDS (default 45, both at once with -j2) and failing on
#       any crash, sanitizer report or leak; scripts/fuzz.sh fuzzes longer on demand
#   (k) scripts/test_kokkos.sh: the Kokkos backend on Kokkos Serial (Debian's libtrilinos-kokkos-dev,
#       build/ci-kokkos-serial) and on Kokkos OpenMP (built from Debian's trilinos sources by
#       scripts/build_kokkos.sh into ~/.cache/lamina, build/ci-kokkos-openmp)
# Stages (a)-(c) build with LAMINA_WITH_KOKKOS=OFF: the Kokkos backend is stage (k)'s.
# Every stage prints its time budget and its elapsed time; the run ends with one summary
# line per stage and exits non-zero when any stage failed.
#
# Environment: LAMINA_JOBS (build/ctest parallelism, default 2), LAMINA_NUM_THREADS (default 2),
# LAMINA_DATA_DIR (default: ../shared/data/mnist beside the checkout when it exists),
# LAMINA_CI_BENCH=0 to leave the benchmarks out of stage (a), LAMINA_CLANG_CXX (default clang++-14),
# LAMINA_ASAN_FLAGS (stage (b)'s optimisation/debug flags, default "-O0 -g1"), LAMINA_FUZZ_SECONDS
# (stage (c)'s time per fuzz harness, default 45).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

stages=()
run_setup=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) stages=(a) ;;
    --stage) shift; [[ "${1:-}" =~ ^[abck]$ ]] || { echo "test.sh: --stage needs a, b, c or k" >&2; exit 2; }
             stages+=("$1") ;;
    --no-setup) run_setup=0 ;;
    -h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ ${#stages[@]} -eq 0 ]] && stages=(a b c k)

JOBS=${LAMINA_JOBS:-2}
export LAMINA_NUM_THREADS=${LAMINA_NUM_THREADS:-2}
if [[ -z "${LAMINA_DATA_DIR:-}" && -d "$ROOT/../shared/data/mnist" ]]; then
  LAMINA_DATA_DIR=$(cd "$ROOT/../shared/data/mnist" && pwd)
  export LAMINA_DATA_DIR
fi
export CTEST_OUTPUT_ON_FAILURE=1
# Sanitizer reports must fail the tests loudly and say where.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

fmt_time() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
banner() { printf '\n==== %s ====\n' "$*"; }

suite_start=$SECONDS
echo "test.sh: root $ROOT, stages: ${stages[*]}, jobs $JOBS, LAMINA_NUM_THREADS=$LAMINA_NUM_THREADS," \
     "LAMINA_DATA_DIR=${LAMINA_DATA_DIR:-<unset: MNIST tests will be skipped>}"

if [[ $run_setup -eq 1 ]]; then
  banner "setup: scripts/setup.sh"
  setup_args=()
  [[ " ${stages[*]} " == *" k "* ]] && setup_args=(--kokkos)
  if ! bash "$ROOT/scripts/setup.sh" "${setup_args[@]}"; then
    echo "test.sh: scripts/setup.sh failed" >&2
    exit 1
  fi
fi

# Options common to every stage. The examples and benchmarks folders are only added when they
# have a CMakeLists.txt, so the script also works while they are being written.
has_dir() { [[ -f "$ROOT/$1/CMakeLists.txt" ]] && echo ON || echo OFF; }
common=(-DLAMINA_BUILD_TESTS=ON -DLAMINA_WITH_KOKKOS=OFF)
launcher=()
if command -v ccache >/dev/null 2>&1 && [[ "${LAMINA_CCACHE:-1}" != 0 ]]; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

# run_stage <letter> <title> <budget seconds> <build dir> <ctest args...> -- <cmake args...>
declare -A result elapsed budget_of title_of
run_stage() {
  local id=$1 title=$2 budget=$3 dir=$4; shift 4
  local ctest_args=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do ctest_args+=("$1"); shift; done
  shift
  local start=$SECONDS status=PASS
  title_of[$id]=$title; budget_of[$id]=$budget
  banner "stage ($id) $title: build dir $dir, time budget $(fmt_time "$budget")"
  # Hard limit: three times the budget, so one hung stage cannot eat CI's 90 minutes.
  local hard=$((budget * 3))
  left() { local l=$((hard - (SECONDS - start))); echo $((l > 1 ? l : 1)); }
  echo "+ cmake -S . -B $dir $*"
  if ! timeout "$hard" cmake -S . -B "$dir" "${launcher[@]}" "$@"; then
    status="FAIL (configure)"
  else
    # Keep going past a failing target so one log shows every compile error, then still run
    # the tests that did build (ctest lists the others as "Not Run").
    local keep_going=()
    case "$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$dir/CMakeCache.txt")" in
      Ninja*) keep_going=(-- -k 0) ;;
      *Makefiles*) keep_going=(-- -k) ;;
    esac
    echo "+ cmake --build $dir -j$JOBS ${keep_going[*]}"
    if ! timeout "$(left)" cmake --build "$dir" -j"$JOBS" "${keep_going[@]}"; then
      status="FAIL (build)"
      echo "stage ($id): BUILD FAILED (errors above); running the tests that did build"
    fi
    echo "stage ($id): configure+build took $(fmt_time $((SECONDS - start)))"
    echo "+ (cd $dir && ctest --output-on-failure -j$JOBS ${ctest_args[*]})"
    if ! (cd "$dir" && timeout "$(left)" \
            ctest --output-on-failure -j"$JOBS" --timeout 900 "${ctest_args[@]}"); then
      [[ $status == PASS ]] && status="FAIL (tests)" || status="FAIL (build+tests)"
    fi
  fi
  local t=$((SECONDS - start))
  if [[ $status == PASS && $t -gt $budget ]]; then
    echo "stage ($id): WARNING: took $(fmt_time "$t"), over its budget of $(fmt_time "$budget")"
  fi
  result[$id]=$status; elapsed[$id]=$t
  echo "stage ($id) $title: $status in $(fmt_time "$t")"
}

for s in "${stages[@]}"; do
  case "$s" in
    a)
      bench=$(has_dir bench)
      [[ "${LAMINA_CI_BENCH:-1}" == 0 ]] && bench=OFF
      run_stage a "g++ Release -mavx2 -mfma, tests + examples" 480 build/ci-release \
        -- "${common[@]}" -DCMAKE_BUILD_TYPE=Release -DLAMINA_NATIVE=OFF -DLAMINA_SANITIZE=OFF \
           -DLAMINA_BUILD_EXAMPLES="$(has_dir examples)" -DLAMINA_BUILD_BENCH="$bench"
      ;;
    b)
      # The packaging tests (install + consumer projects) are compiler-flag independent and
      # already ran in stage (a); compile-fail checks run in (a) with g++ and in (c) with clang.
      # -O0 -g1: compiling lamina's templates under ASan at -O1 takes ~3x longer (measured:
      # 190 s vs 60 s for test_layer_gradients.cpp) while the tests only run ~2x slower; -g1
      # keeps file:line in sanitizer reports at a fraction of -g's cost. Asserts stay on.
      run_stage b "g++ ASan+UBSan -O0 -g1, tests" 600 build/ci-asan -LE "packaging|compile_fail|slow" \
        -- "${common[@]}" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="${LAMINA_ASAN_FLAGS:--O0 -g1}" \
           -DLAMINA_SANITIZE=ON -DLAMINA_BUILD_EXAMPLES=OFF -DLAMINA_BUILD_BENCH=OFF
      ;;
    c)
      clangxx=${LAMINA_CLANG_CXX:-clang++-14}
      if ! command -v "$clangxx" >/dev/null 2>&1; then
        title_of[c]="clang Release, tests"; budget_of[c]=0; elapsed[c]=0
        result[c]="FAIL ($clangxx not found; run scripts/setup.sh)"
        echo "stage (c): ${result[c]}"
        continue
      fi
      # -O1 with asserts on: stage (a) already tests optimised code; this stage checks that
      # lamina compiles and passes with clang, and -O1 compiles ~1.5x faster than -O3.
      # -march=native here: where the machine has AVX-512, its kernels are tested too.
      # The fuzz harnesses (tests/cmake/fuzz.cmake) add about 2 x LAMINA_FUZZ_SECONDS / JOBS
      # to the tests and a minute of building.
      run_stage c "$clangxx -O1 -march=native, tests + fuzzers" 480 build/ci-clang -LE packaging \
        -- "${common[@]}" -DCMAKE_CXX_COMPILER="$(command -v "$clangxx")" \
           -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1" \
           -DLAMINA_NATIVE=ON -DLAMINA_SANITIZE=OFF -DLAMINA_BUILD_EXAMPLES=OFF -DLAMINA_BUILD_BENCH=OFF \
           -DLAMINA_FUZZ=ON -DLAMINA_FUZZ_SECONDS="${LAMINA_FUZZ_SECONDS:-45}"
      ;;
    k)
      # Its own script (two Kokkos installs, two build folders); also runnable alone.
      title_of[k]="Kokkos backend: Serial + OpenMP"; budget_of[k]=600
      banner "stage (k) ${title_of[k]}: scripts/test_kokkos.sh, time budget $(fmt_time 600)"
      start=$SECONDS
      if timeout 1800 env LAMINA_JOBS="$JOBS" bash "$ROOT/scripts/test_kokkos.sh"; then result[k]=PASS; else result[k]="FAIL"; fi
      elapsed[k]=$((SECONDS - start))
      if [[ ${result[k]} == PASS && ${elapsed[k]} -gt 600 ]]; then
        echo "stage (k): WARNING: took $(fmt_time "${elapsed[k]}"), over its budget of $(fmt_time 600)"
      fi
      echo "stage (k) ${title_of[k]}: ${result[k]} in $(fmt_time "${elapsed[k]}")"
      ;;
  esac
done

banner "summary"
failed=0
for s in "${stages[@]}"; do
  printf 'stage (%s) %-45s %-22s %s (budget %s)\n' "$s" "${title_of[$s]}" "${result[$s]}" \
    "$(fmt_time "${elapsed[$s]}")" "$(fmt_time "${budget_of[$s]}")"
  [[ "${result[$s]}" == PASS ]] || failed=1
done
echo "total: $(fmt_time $((SECONDS - suite_start)))"
if [[ $failed -ne 0 ]]; then
  echo "test.sh: FAILED"
  exit 1
fi
echo "test.sh: all stages passed"
