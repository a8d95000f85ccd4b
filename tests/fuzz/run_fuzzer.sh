#!/usr/bin/env bash
# Runs one libFuzzer harness for a bounded time and fails on any finding (crash, sanitizer
# report, leak, timeout, out-of-memory):
#
#   run_fuzzer.sh <harness binary> <seconds> <work corpus dir> <seed corpus dir>...
#
# New interesting inputs go to the work corpus (kept between runs; never in git); a finding is
# written to <work corpus dir>-findings/ and printed with the command that replays it; the
# whole log is <work corpus dir>.log.
set -uo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: run_fuzzer.sh <harness> <seconds> <work corpus dir> <seed corpus dir>..." >&2
  exit 2
fi
bin=$1 secs=$2 work=$3
shift 3
findings="${work}-findings"
mkdir -p "$work" "$findings"
# Sanitizer reports must end the run as a finding; leaks are checked after every input.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:abort_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-}:halt_on_error=1:print_stacktrace=1"
log="${work}.log"
echo "+ $bin -max_total_time=$secs -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$findings/ $work $*"
"$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$findings/" "$work" "$@" >"$log" 2>&1
rc=$?
if [[ $rc -ne 0 ]]; then
  tail -n 150 "$log"
  echo "run_fuzzer.sh: $(basename "$bin") FAILED (exit $rc); findings in $findings:" >&2
  ls -l "$findings" >&2
  echo "run_fuzzer.sh: replay one with: $bin <file>" >&2
  exit 1
fi
# The start (seeds loaded), the last progress line and the final statistics.
grep -m 3 -E 'INFO: (Seed|seed corpus)|INITED' "$log"
grep -E '^#[0-9]+' "$log" | tail -n 1
grep -E '^(stat::|Done )' "$log"
echo "run_fuzzer.sh: $(basename "$bin"): no finding in ${secs}s"
