#!/usr/bin/env bash
# The quickstart, in one command: a scripted OpenAI-compatible model (model_server.py), an
# orders service (orders_service.py) and `ballast serve --config` on this directory's
# ballast.toml; then one turn — "Please refund order A1001, it arrived broken." — through the
# HTTP API, whose reply and outcome it prints. Everything it starts is stopped when it exits,
# unless --keep: then it keeps serving the dashboard until Ctrl-C.
#
#   examples/quickstart/run.sh [--keep]
#
# Needs python3 and curl, and a built `ballast`: the one on PATH (`cargo install --path .`),
# else target/release/ballast or target/debug/ballast ($CARGO_TARGET_DIR is honoured), or the
# file $BALLAST names. Ports: QUICKSTART_PORT (default 8420) for the API and dashboard, the two
# next ones for the model and the orders service. Its files (data dir, logs, token) go to
# QUICKSTART_DIR, default a new directory under /tmp.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
keep=false
for arg in "$@"; do
  case "$arg" in
    --keep) keep=true ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

fail() { echo "run.sh: $*" >&2; exit 1; }
command -v python3 >/dev/null || fail "python3 is needed (the model and the orders service)"
command -v curl >/dev/null || fail "curl is needed"

# The binary.
target="${CARGO_TARGET_DIR:-$here/../../target}"
if [ -n "${BALLAST:-}" ]; then bin="$BALLAST"
elif command -v ballast >/dev/null; then bin="$(command -v ballast)"
elif [ -x "$target/release/ballast" ]; then bin="$target/release/ballast"
elif [ -x "$target/debug/ballast" ]; then bin="$target/debug/ballast"
else fail "no ballast binary: build it first (cargo install --path . from the repository root)"
fi

# Ports, checked before anything starts so a clash is named, not met as a failed turn.
port="${QUICKSTART_PORT:-8420}"
model_port=$((port + 1)) orders_port=$((port + 2))
for p in "$port" "$model_port" "$orders_port"; do
  python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$p" \
    2>/dev/null || fail "port $p is taken (a ballast serve still running?); choose others: QUICKSTART_PORT=9420 $0"
done

# A working copy of the deployment, with the ports filled in and its own data dir.
work="${QUICKSTART_DIR:-$(mktemp -d /tmp/ballast-quickstart.XXXXXX)}"
mkdir -p "$work"
cp -r "$here/policies" "$work/"
for f in ballast.toml catalog.json; do
  sed -e "s/127\.0\.0\.1:8421/127.0.0.1:$model_port/g" -e "s/127\.0\.0\.1:8422/127.0.0.1:$orders_port/g" \
    "$here/$f" >"$work/$f"
done

pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT
trap 'exit 130' INT TERM

python3 "$here/model_server.py" --port "$model_port" >"$work/model.log" 2>&1 & pids+=($!)
python3 "$here/orders_service.py" --port "$orders_port" >"$work/orders.log" 2>&1 & pids+=($!)

# An API token for the shop's backend. Its grants bound what its requests may assert about a
# customer; by default a request gets the customer role and may read orders, and one that says
# so (the `scopes` attribute below) may also refund.
token="$("$bin" token --data-dir "$work/data" --name shop-backend --tenant acme \
  --roles submitter,operator,auditor \
  --grants 'role:customer,orders:read,refunds:write' --defaults 'role:customer,orders:read' \
  2>/dev/null)"
(umask 077 && printf '%s\n' "$token" >"$work/token")

"$bin" serve --config "$work/ballast.toml" --dev-key --listen "127.0.0.1:$port" \
  >"$work/serve.log" 2>&1 & pids+=($!)
api="http://127.0.0.1:$port"
for _ in $(seq 1 300); do
  curl -fs "$api/readyz" >/dev/null 2>&1 && break
  kill -0 "${pids[2]}" 2>/dev/null || { tail -n 20 "$work/serve.log" >&2; fail "ballast serve exited"; }
  sleep 0.2
done
curl -fs "$api/readyz" >/dev/null || { tail -n 20 "$work/serve.log" >&2; fail "ballast serve is not ready after 60 s"; }

# The turn: wait_ms makes the POST answer with the finished turn.
answer="$(curl -s -X POST "$api/v1/turns?wait_ms=30000" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' \
  -d '{"user_id":"customer-42","text":"Please refund order A1001, it arrived broken.","attributes":{"scopes":"orders:read,refunds:write"}}')"
refunds="$(curl -s "http://127.0.0.1:$orders_port/refunds")"

python3 - "$answer" "$refunds" <<'EOF'
import json, sys
turn, refunds = json.loads(sys.argv[1]), json.loads(sys.argv[2])["refunds"]
print(f"turn     {turn.get('turn_id')}")
print(f"outcome  {turn.get('outcome', turn.get('status'))}")
print(f"reply    {turn.get('reply')}")
for r in refunds:
    print(f"refunds  {r['refund_id']}: {r['amount_cents'] / 100:.2f} for order {r['order_id']} ({r['status']})")
EOF
outcome="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("outcome", ""))' "$answer")"
turn_id="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("turn_id", ""))' "$answer")"

echo
echo "dashboard  $api/  (sign in with the token in $work/token)"
echo "trace      ballast trace $turn_id --data-dir $work/data"
echo "logs       $work/{serve,model,orders}.log"
if [ "$outcome" != "succeeded" ]; then
  tail -n 20 "$work/serve.log" >&2
  fail "the turn did not succeed: $answer"
fi
if $keep; then
  echo "serving until Ctrl-C"
  wait "${pids[2]}"
else
  echo "stopped; run it with --keep to keep the dashboard up"
fi
