#!/usr/bin/env bash
# How long `GET /v1/queue` and `GET /v1/handoffs` take with N turns waiting for a person.
#
#   scripts/queue_latency.sh [BALLAST_BINARY] [N]
#
# Parks N turns on approvals with `ballast bench --waiting N` (its parking phase, killed once
# every turn waits), issues an operator token, starts `ballast serve` on that data dir and times
# each route five times with curl. Prints one line per request: route, seconds, entries.
set -euo pipefail
BIN=${1:-target/release/ballast}
N=${2:-3000}
DIR=$(mktemp -d)
trap 'kill $SERVE_PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
SERVE_PID=
coproc PARK { exec "$BIN" bench --waiting "$N" --partitions 2 --park-dir "$DIR/data" 2>/dev/null; }
while read -r line <&"${PARK[0]}"; do
  [ "$line" = ready ] && break
done
kill "$PARK_PID"; wait "$PARK_PID" 2>/dev/null || true
TOKEN=$("$BIN" token --name ops --tenant bench --roles operator --data-dir "$DIR/data" | grep -o 'blst_[A-Za-z0-9_]*' | head -1)
PORT=$((20000 + RANDOM % 20000))
"$BIN" serve --data-dir "$DIR/data" --listen "127.0.0.1:$PORT" --dev-key >"$DIR/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  sleep 0.5
done
for route in queue handoffs; do
  for i in 1 2 3 4 5; do
    curl -s -o "$DIR/out.json" -w "$route %{time_total}s " -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/$route"
    python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))), 'entries')" "$DIR/out.json"
  done
done
