#!/usr/bin/env bash
# Builds recsys in Release and runs the whole test suite through CTest.
# Installs missing Debian packages first (as root; otherwise says how).
# Real MovieLens tests read ../shared/data (or $RECSYS_TEST_DATA_DIR) and
# skip, saying so, when it is absent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

recsys_ensure_packages
recsys_build
cd "$RECSYS_BUILD"
ctest --output-on-failure -j "$(nproc)" "$@"
