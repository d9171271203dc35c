#!/usr/bin/env bash
# Builds recsys in Release and runs the whole test suite through CTest, then
# builds the concurrent parts under ThreadSanitizer (build/tsan) and runs
# their tests there, then runs every fuzz target for 20 s (scripts/fuzz.sh).
# Installs missing Debian packages first (as root; otherwise says how).
# Real MovieLens tests read ../shared/data (or $RECSYS_TEST_DATA_DIR) and
# skip, saying so, when it is absent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

recsys_ensure_packages
recsys_build
ctest --test-dir "$RECSYS_BUILD" --output-on-failure -j "$(nproc)" "$@"

# Concurrency under ThreadSanitizer: the engine (snapshots, per-user state,
# training while serving, catalogue edits, a replica's copying, racing
# writers of events and their ids) and the
# rating log (group commit, readers following it). gRPC and
# protobuf are not built with TSan, so the RPC layer is left out.
tsan="$RECSYS_ROOT/build/tsan"
if [ ! -f "$tsan/build.ninja" ]; then
  cmake -S "$RECSYS_ROOT" -B "$tsan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DRECSYS_TSAN=ON
fi
cmake --build "$tsan" -j "$(nproc)" --target engine_test rating_log_test \
  catalogue_test replication_test events_test
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir "$tsan" --output-on-failure -j "$(nproc)" \
  -R '^(EngineTest|RatingLog|LogReader|Policies|CatalogueTest|ReplicaEngineTest|EventsTest)'

# Every parser of outside bytes under libFuzzer, briefly (clang, ASan and
# UBSan, build/fuzz): a regression in a loader, the model reader or the
# log's recovery shows up here. `bash scripts/fuzz.sh 600` runs them longer.
bash "$RECSYS_ROOT/scripts/fuzz.sh" 20
