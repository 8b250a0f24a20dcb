#!/usr/bin/env bash
# Runs each property-based fuzz target of tests/fuzz.rs for a while (default 600 s each) and
# prints the inputs tried per target. The test suite runs the same targets with a bounded number
# of inputs; this is the long run.
#
#   scripts/fuzz.sh                    # every target, 10 minutes each
#   FUZZ_SECONDS=60 scripts/fuzz.sh api cedar
#   BALLAST_FUZZ_SEED=123 scripts/fuzz.sh ballast_toml   # replay a failing seed
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${FUZZ_SECONDS:-600}"
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(avro_decoder_and_intake api_bodies_and_queries ballast_toml control_toml cedar_loading times)
fi
cargo test --test fuzz --no-run 2>&1 | tail -n 1
BIN="$(cargo test --test fuzz --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="fuzz": print(m["executable"])' | tail -n 1)"
# A copy, so a rebuild while this runs does not swap the binary under it.
RUN="$(mktemp -d)/fuzz"
cp "$BIN" "$RUN"
status=0
for t in "${TARGETS[@]}"; do
  echo "== fuzz_$t for ${SECONDS_EACH}s"
  if ! BALLAST_FUZZ_SECONDS="$SECONDS_EACH" "$RUN" "fuzz_$t" --exact --nocapture --test-threads=1 2>&1 \
      | grep -E 'fuzz [^ ]+: [0-9]+ inputs|panicked|input:|FAILED'; then
    status=1
  fi
done
exit $status
