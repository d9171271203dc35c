#!/usr/bin/env bash
# Builds recsys with AddressSanitizer and UndefinedBehaviorSanitizer
# (build/asan, RelWithDebInfo, the -march of the Release tree) and runs the
# whole test suite there; any finding, leaks included, fails its test. Not
# part of scripts/test.sh (it builds everything a second time: about 15
# minutes on 2 cores); run it after changes to parsing, the model file, the
# rating log or the kernels. Extra arguments go to ctest, e.g. -R Scoring.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

recsys_ensure_packages
asan="$RECSYS_ROOT/build/asan"
if [ ! -f "$asan/build.ninja" ]; then
  cmake -S "$RECSYS_ROOT" -B "$asan" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DRECSYS_MARCH=$RECSYS_MARCH" \
    -DRECSYS_ASAN=ON
fi
cmake --build "$asan" -j "$(nproc)"
ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="print_stacktrace=1" \
  ctest --test-dir "$asan" --output-on-failure -j "$(nproc)" "$@"
