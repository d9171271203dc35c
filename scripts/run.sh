#!/usr/bin/env bash
# The main job: build (Release) if needed, train the default model on
# MovieLens-100K and show the top-10 recommendations for user 1.
# Installs missing Debian packages first (as root; otherwise says how).
#
# MovieLens-100K comes from $RECSYS_DATA_DIR, else ../shared/data when it
# exists, else it is downloaded from GroupLens (and checked) into
# ~/.cache/recsys.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

recsys_ensure_packages
recsys_build --target recsys-trainer

if [ -z "${RECSYS_DATA_DIR:-}" ] && [ -d "$RECSYS_ROOT/../shared/data/ml-100k" ]; then
  export RECSYS_DATA_DIR="$(cd "$RECSYS_ROOT/../shared/data" && pwd)"
fi

trainer="$RECSYS_BUILD/trainer/recsys-trainer"
model="$RECSYS_BUILD/ml-100k.rsm"
"$trainer" train --data=ml-100k --out="$model" --quiet
echo
"$trainer" recommend --model-file="$model" --user="${RECSYS_USER:-1}" --k=10
