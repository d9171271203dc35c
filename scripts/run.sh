#!/usr/bin/env bash
# The main job: build (Release) if needed, start recsys-server on the default
# model and show a recsys-client query against it. Installs missing Debian
# packages first (as root; otherwise says how).
#
# The server keeps its data in build/release/recsys-data. On its first start
# it trains the default model on MovieLens-100K, read from
# $RECSYS_DATA_DIR, else ../shared/data when it exists, else downloaded from
# GroupLens (and checked) into ~/.cache/recsys. On a terminal the server
# then keeps running until Ctrl-C; otherwise it is stopped after the query.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

recsys_ensure_packages
recsys_build --target recsys-server recsys-client recsys-trainer

if [ -z "${RECSYS_DATA_DIR:-}" ] && [ -d "$RECSYS_ROOT/../shared/data/ml-100k" ]; then
  export RECSYS_DATA_DIR="$(cd "$RECSYS_ROOT/../shared/data" && pwd)"
fi

server="$RECSYS_BUILD/server/recsys-server"
client="$RECSYS_BUILD/client/recsys-client"
data="${RECSYS_SERVER_DATA:-$RECSYS_BUILD/recsys-data}"
port_file="$RECSYS_BUILD/recsys-server.port"
rm -f "$port_file"

"$server" --data-dir="$data" --listen=127.0.0.1:0 --port-file="$port_file" &
pid=$!
stop() { kill -TERM "$pid" 2>/dev/null && wait "$pid" || true; }
trap stop EXIT

for _ in $(seq 600); do
  [ -s "$port_file" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "recsys-server failed to start" >&2; exit 1; }
  sleep 0.1
done
target="127.0.0.1:$(cat "$port_file")"
for _ in $(seq 600); do
  "$client" --target="$target" --timeout=2 health >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "recsys-server failed to start" >&2; exit 1; }
  sleep 0.1
done

echo
echo "\$ recsys-client --target=$target recommend --user=${RECSYS_USER:-1} -k 10"
"$client" --target="$target" recommend --user="${RECSYS_USER:-1}" -k 10
echo
if [ -t 0 ] && [ -t 1 ]; then
  echo "recsys-server is serving on $target (data in $data). Try:"
  echo "  $client --target=$target   # interactive: Enter user id"
  echo "Press Ctrl-C to stop it."
  wait "$pid"
fi
