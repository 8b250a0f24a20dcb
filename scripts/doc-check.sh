#!/usr/bin/env bash
# Every documented command runs as written: each ```sh block of README.md and of every page under
# docs/ (in path order) is run, in order, and the check stops at the first block that fails. It
# ends by printing how many blocks it ran: `N blocks`. scripts/test.sh runs it after the tests.
#
#   scripts/doc-check.sh [PAGE.md ...]     # default: README.md, then docs/**/*.md
#
# What a page may rely on, and what the check does for it:
#
# - Which blocks run. ```sh blocks run. Blocks that are not commands to run say so: ```text
#   (output), ```console (a `$ command` shown with its output), ```toml, ```json, ```cedar,
#   ```python. A block right after the comment `<!-- doc-check: skip REASON -->` is not run and
#   the reason is printed (for what this machine cannot do in a test run: a release build, the
#   test suite itself, Docker, a real model server). A block after `<!-- doc-check: needs kafka -->`
#   runs only when $BALLAST_KAFKA_BOOTSTRAP names a broker (scripts/test.sh starts one, and exports
#   the BALLAST_KAFKA_PORT and BALLAST_KAFKA_HOME that make the page's `scripts/kafka.sh start`
#   find it running).
# - One shell per page. A page's blocks run one after another in one bash (`set -eo pipefail`:
#   any failing command fails its block), so what a block sets (`TOKEN=$(ballast token …)`) is
#   there in the next. Each page starts afresh in its own scratch directory holding a copy of the
#   repository's files (not target/ or .git), so `examples/…` paths work and nothing is written to
#   the checkout.
# - `ballast` is the test build. The docs show `ballast …` after `cargo install --path .`; here the
#   dev-profile binary comes first on PATH as `ballast`: $BALLAST_BIN (scripts/test.sh passes the
#   one `cargo test --all-targets` just built, target/debug/ballast), else `cargo build` makes it.
#   Never a release build.
# - Placeholders, filled in before a block runs:
#   - `/tmp/` becomes the page's scratch tmp/, so runs never share or reuse a data dir;
#   - the ports 8420 … 8429 become ports this run found free, so parallel runs do not collide: in
#     the blocks (`127.0.0.1:8420`, `--port 8421`) and, as `127.0.0.1:842N`, in the scratch copy's
#     examples/ (the quickstart's ballast.toml and catalog.json); `ballast serve` without
#     `--listen` gets the first of them, and QUICKSTART_PORT (examples/quickstart/run.sh) too;
#   - `127.0.0.1:9092` becomes $BALLAST_KAFKA_BOOTSTRAP when it is set;
#   - `TURN_ID` becomes the last turn id printed before the command that names it runs
#     (`"turn_id":"…"`, a trace's or run.sh's `turn …` line, a line of `ballast turns`), by this
#     block or an earlier one of the page (so never inside single quotes);
#   - `python3 -m venv .venv` links the venv scripts/test.sh made ($BALLAST_VENV, or the one
#     $BALLAST_PYTHON is in) when it has the packages, so `pip install -r …` finds them installed.
# - Servers. A block that starts `ballast serve … &` leaves it running and ends there; the check
#   waits until its /readyz answers before the next block (as a reader waits for "listening on"),
#   and stops everything a page started in the background when the page ends (a reader stops it
#   with Ctrl-C, or `kill %1`).
# - Expected output. A comment line `# → TEXT` in a block says the block's output must contain
#   TEXT — for what a command cannot fail on by itself, such as a turn's outcome.
# - curl fails on an HTTP error status, as with `--fail-with-body`: a documented request that gets
#   a 401 or a 403 is a failing example.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ -n "${BALLAST_BIN:-}" ]; then
  bin="$BALLAST_BIN"
else
  target="${CARGO_TARGET_DIR:-$root/target}"
  cargo build --quiet --bin ballast
  bin="$target/debug/ballast"
fi
[ -x "$bin" ] || { echo "doc-check: no ballast binary at $bin" >&2; exit 1; }
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"   # the blocks run elsewhere

pages=("$@")
if [ ${#pages[@]} -eq 0 ]; then
  pages=(README.md)
  while IFS= read -r p; do pages+=("$p"); done < <(find docs -name '*.md' | LC_ALL=C sort)
fi

# Ten free ports in a row, standing in for 8420–8429.
base="$(python3 - <<'EOF'
import random, socket
for _ in range(200):
    base = random.randrange(20000, 60000, 10)
    socks = []
    try:
        for p in range(base, base + 10):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    break
EOF
)"
[ -n "$base" ] || { echo "doc-check: no free ports" >&2; exit 1; }

venv="${BALLAST_VENV:-}"
if [ -z "$venv" ] && [ -n "${BALLAST_PYTHON:-}" ]; then venv="$(dirname "$(dirname "$BALLAST_PYTHON")")"; fi
if [ -n "$venv" ] && ! "$venv/bin/python" -c 'import mcp' >/dev/null 2>&1; then venv=""; fi

work="$(mktemp -d /tmp/ballast-doc-check.XXXXXX)"
keep_work="${DOC_CHECK_KEEP:-}"
cleanup() { [ -n "$keep_work" ] || rm -rf "$work"; }
trap cleanup EXIT

# Blocks of one page, as files: NNN.sh (the code, unindented) and NNN.meta (line, kind, reason).
extract() {
  awk -v out="$2" '
    function flush_meta(kind, reason) {
      printf "%d\t%s\t%s\n", start, kind, reason > (out "/" sprintf("%03d", n) ".meta")
      close(out "/" sprintf("%03d", n) ".meta")
    }
    {
      line = $0
      if (!inblock) {
        if (match(line, /^[ \t]*```/)) {
          indent = RLENGTH - 3
          lang = substr(line, RLENGTH + 1); gsub(/[ \t].*/, "", lang)
          inblock = 1; start = NR
          if (lang == "sh") {
            n++; file = out "/" sprintf("%03d", n) ".sh"; printf "" > file
            kind = "run"; reason = ""
            if (marker ~ /doc-check: skip/) { kind = "skip"; reason = marker; sub(/.*doc-check: skip[ \t]*/, "", reason); sub(/[ \t]*-->.*/, "", reason) }
            if (marker ~ /doc-check: needs kafka/) { kind = "kafka" }
            flush_meta(kind, reason)
          } else { file = "" }
        } else if (line ~ /[^ \t]/) {
          marker = line
        }
      } else {
        if (match(line, /^[ \t]*```[ \t]*$/)) { inblock = 0; if (file != "") close(file); marker = ""; next }
        if (file != "") { print substr(line, indent + 1) >> file }
      }
    }
  ' "$1"
}

# The driver one page runs in: helper functions, then one `__block` call per block.
driver_head() {
  cat <<'EOF'
set -eo pipefail
exec 3>&1   # the check's own output, while a block's goes to its log
__stop_jobs() {
  local pids; pids="$(jobs -p)"
  [ -n "$pids" ] || return 0
  kill $pids 2>/dev/null || true
  for p in $pids; do wait "$p" 2>/dev/null || true; done
}
__report() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    {
      echo "doc-check: FAILED at $__label (exit $rc)"
      echo "---- the block"; sed 's/^/    /' "$__src"
      echo "---- its output (last 60 lines)"; tail -n 60 "$__out" | sed 's/^/    /'
    } >&3
  fi
  __stop_jobs
  exit "$rc"
}
trap __report EXIT
curl() { command curl --fail-with-body "$@"; }
__ports=()
for i in 0 1 2 3 4 5 6 7 8 9; do __ports+=(-e "s/\b842$i\b/$((DOC_BASE_PORT + i))/g"); done
__TURN_ID=""
# The last turn id the running block has printed so far: `"turn_id":"…"`, a trace's or run.sh's
# `turn …` line, or a line that starts with one (`ballast turns`). Run before each command.
__seen_turn() {
  local id
  id="$(grep -oE '("turn_id": ?"|^turn +|^)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' "$__out" 2>/dev/null \
        | tail -n 1 | grep -oE '[0-9a-f]{8}-[0-9a-f-]{27}' || true)"
  [ -z "$id" ] || __TURN_ID="$id"
  return 0
}
__block() {  # label, file
  __label="$1"
  __src="$DOC_PAGE_DIR/current.sh" __out="$DOC_PAGE_DIR/out.$2.log"
  local kafka=()
  [ -n "${BALLAST_KAFKA_BOOTSTRAP:-}" ] && kafka=(-e "s/127\.0\.0\.1:9092\b/$BALLAST_KAFKA_BOOTSTRAP/g")
  local venv=()
  [ -n "${DOC_VENV:-}" ] && venv=(-e "s#python3 -m venv \.venv#ln -sfn $DOC_VENV .venv#g")
  sed -e "s#/tmp/#$DOC_TMP/#g" \
    -e 's/TURN_ID/${__TURN_ID:?TURN_ID: no earlier command printed a turn id}/g' \
    "${__ports[@]}" "${kafka[@]}" "${venv[@]}" "$DOC_PAGE_DIR/$2.sh" >"$__src"
  echo "== $__label: $(grep -m1 -v '^[[:space:]]*\(#\|$\)' "$DOC_PAGE_DIR/$2.sh" | cut -c1-100)"
  local started=$SECONDS
  : >"$__out"
  set -T
  trap __seen_turn DEBUG
  { source "$__src"; } >>"$__out" 2>&1 </dev/null
  trap - DEBUG
  set +T
  __seen_turn
  # Expected output.
  local want
  while IFS= read -r want; do
    if ! grep -qF -- "$want" "$__out"; then
      echo "expected in the output: $want" >>"$__out"
      return 1
    fi
  done < <(sed -n 's/^[[:space:]]*# → \(.*[^[:space:]]\)[[:space:]]*$/\1/p' "$__src")
  # Servers the block left running: wait until they are ready.
  local port
  while IFS= read -r port; do
    local ready=""
    for _ in $(seq 1 600); do
      if command curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=1; break; fi
      if [ -z "$(jobs -rp)" ]; then break; fi
      sleep 0.2
    done
    [ -n "$ready" ] || { echo "ballast serve on port $port never became ready" >>"$__out"; return 1; }
  done < <(grep -E '\bballast serve\b.*&[[:space:]]*(#.*)?$' "$__src" \
            | sed -n 's/.*--listen [^ ]*:\([0-9][0-9]*\).*/\1/p; t; s/.*/'"$DOC_BASE_PORT"'/p')
  tail -n 12 "$__out" | cut -c1-160 | sed 's/^/   | /'
  echo "   ($((SECONDS - started)) s)"
}
EOF
}

ran=0 skipped=0
for page in "${pages[@]}"; do
  [ -f "$page" ] || { echo "doc-check: no page $page" >&2; exit 1; }
  name="$(echo "$page" | tr '/.' '__')"
  blocks="$work/$name.blocks" scratch="$work/$name"
  mkdir -p "$blocks" "$scratch/tmp" "$scratch/bin"
  extract "$page" "$blocks"
  count="$(find "$blocks" -name '*.sh' | wc -l)"
  [ "$count" -gt 0 ] || continue
  echo "## $page"
  # The page's scratch copy of the repository, and `ballast` on PATH.
  git ls-files -z --cached --others --exclude-standard | grep -zv '^target/' \
    | (cd "$root" && xargs -0 cp --parents -t "$scratch" 2>/dev/null || true)
  cat >"$scratch/bin/ballast" <<EOF
#!/bin/sh
# doc-check: the test build, and \`serve\` on this run's port unless told otherwise.
if [ "\${1:-}" = serve ]; then
  case " \$* " in *" --listen "*|*" --listen="*) ;; *) set -- "\$@" --listen "127.0.0.1:$base" ;; esac
fi
exec "$bin" "\$@"
EOF
  chmod +x "$scratch/bin/ballast"
  port_map=()
  for i in 0 1 2 3 4 5 6 7 8 9; do port_map+=(-e "s/127\.0\.0\.1:842$i\b/127.0.0.1:$((base + i))/g"); done
  grep -rlE '127\.0\.0\.1:842[0-9]' "$scratch/examples" | xargs -r sed -i "${port_map[@]}"
  driver="$blocks/driver.sh"
  driver_head >"$driver"
  for meta in "$blocks"/*.meta; do
    id="$(basename "$meta" .meta)"
    IFS=$'\t' read -r line kind reason <"$meta"
    label="$page:$line"
    case "$kind" in
      skip) printf 'echo %q\n' "== $label: skipped ($reason)" >>"$driver"; skipped=$((skipped + 1)); continue ;;
      kafka)
        if [ -z "${BALLAST_KAFKA_BOOTSTRAP:-}" ]; then
          printf 'echo %q\n' "== $label: skipped (no broker: BALLAST_KAFKA_BOOTSTRAP is not set)" >>"$driver"
          skipped=$((skipped + 1)); continue
        fi ;;
    esac
    echo "__block '$label' '$id'" >>"$driver"
    ran=$((ran + 1))
  done
  echo '__stop_jobs' >>"$driver"
  (
    cd "$scratch"
    export PATH="$scratch/bin:$PATH" DOC_BASE_PORT="$base" DOC_TMP="$scratch/tmp" \
      DOC_PAGE_DIR="$blocks" DOC_VENV="$venv" QUICKSTART_PORT="$base" BALLAST_OPERATOR=doc-check
    bash "$driver"
  ) || { keep_work=1; echo "doc-check: the scratch files are in $work"; exit 1; }
done
[ "$skipped" -eq 0 ] || echo "doc-check: $skipped block(s) skipped, each with its reason above"
echo "$ran blocks"
