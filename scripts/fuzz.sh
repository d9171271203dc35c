#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang with ASan and UBSan, in
# build/fuzz) and runs each for SECONDS (default 20), one after another,
# from its seed corpus (fuzz/corpus/<target>, copied to build/fuzz/corpus so
# the repository's seeds stay as they are). Prints, per target, executions,
# executions per second, edges covered and findings; a finding's input is
# kept in build/fuzz/findings/<target>/ and the exit status is 1.
#
#   bash scripts/fuzz.sh            # every target 20 s
#   bash scripts/fuzz.sh 600        # every target 10 minutes
#   bash scripts/fuzz.sh 60 fuzz_model fuzz_log
#
# Installs clang and libFuzzer from Debian when missing (as root).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SECONDS_EACH="${1:-20}"
shift || true
[[ "$SECONDS_EACH" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a number" >&2; exit 2; }

# shellcheck disable=SC2034  # read by recsys_ensure_packages
RECSYS_PACKAGES=("${RECSYS_PACKAGES[@]}" clang libfuzzer-14-dev)
recsys_ensure_packages

build="$RECSYS_ROOT/build/fuzz"
if [ ! -f "$build/build.ninja" ]; then
  CXX=clang++ cmake -S "$RECSYS_ROOT" -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRECSYS_FUZZ=ON >/dev/null
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in "$RECSYS_ROOT"/fuzz/fuzz_*.cc; do
    t="$(basename "$src" .cc)"
    [ "$t" = fuzz_util ] || targets+=("$t")
  done
fi
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

found=0
rows=()
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  findings="$build/findings/$t"
  mkdir -p "$corpus" "$findings"
  cp -n "$RECSYS_ROOT/fuzz/corpus/$t/"* "$corpus/" 2>/dev/null || true
  log="$build/$t.log"
  echo "fuzz.sh: $t for ${SECONDS_EACH}s" >&2
  status=0
  # -rss_limit_mb: a parser that allocates what a length field claims
  # before checking it is a finding too.
  ASAN_OPTIONS="detect_leaks=1" "$build/fuzz/$t" "$corpus" \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$findings/" >"$log" 2>&1 || status=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
  n="$(find "$findings" -type f | wc -l)"
  if [ "$status" -ne 0 ] || [ "$n" -gt 0 ]; then
    found=1
    echo "fuzz.sh: $t: FINDING (exit $status); see $log and $findings" >&2
    grep -m5 -E "ERROR|runtime error|SUMMARY" "$log" >&2 || true
  fi
  rows+=("| $t | ${execs:-?} | ${rate:-?} | ${cov:-?} | $n |")
done

echo "| target | executions | per second | edges covered | findings |"
echo "|---|---:|---:|---:|---:|"
for r in "${rows[@]}"; do echo "$r"; done
exit "$found"
