#!/usr/bin/env bash
# The whole test suite, from a fresh clone: unit, property, conformance (memory, sled, Kafka),
# integration and crash tests, then the docs check (scripts/doc-check.sh: every `sh` block of the
# README and docs/, run as written). Everything the tests need is installed or started from here:
# Rust crates come from crates.io into ~/.cargo; Apache Kafka's jars come from Maven Central into
# ~/.cache/ballast (scripts/kafka.sh), and a broker is started on 127.0.0.1 for the run and
# stopped afterwards; promtool and chromium come from Debian's packages (installed if missing);
# the Python test packages go into a venv and playwright-core into node_modules, both under
# ~/.cache/ballast.
# Kafka tests fail (never skip) here: BALLAST_REQUIRE_KAFKA=1.
set -euo pipefail
cd "$(dirname "$0")/.."

# promtool, for the metrics and alert-rule tests.
if ! command -v promtool >/dev/null 2>&1; then
  echo "test.sh: installing promtool (Debian package prometheus)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
export BALLAST_PROMTOOL="$(command -v promtool)"

# The example analytics consumer's dependencies (confluent-kafka, fastavro), the OpenAPI
# validator, the example MCP server's SDK (mcp), the Python client's (httpx, pytest) and the
# Compose file's validator (jsonschema, PyYAML), in a cached venv.
VENV="${BALLAST_VENV:-$HOME/.cache/ballast/venv}"
if ! "$VENV/bin/python" -c 'import confluent_kafka, fastavro, openapi_spec_validator, mcp.server.fastmcp, httpx, pytest, jsonschema, yaml' >/dev/null 2>&1; then
  echo "test.sh: installing the Python test dependencies into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r examples/analytics/requirements.txt -r examples/mcp/requirements.txt \
    -r scripts/test-requirements.txt
fi
export BALLAST_PYTHON="$VENV/bin/python" BALLAST_VENV="$VENV"

# The dashboard's browser test: Debian's Chromium, driven by playwright-core (from npm, cached;
# it never downloads a browser of its own).
if [ ! -x /usr/bin/chromium ]; then
  echo "test.sh: installing chromium (Debian package)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
NODE_DIR="$HOME/.cache/ballast/node"
if [ ! -f "$NODE_DIR/node_modules/playwright-core/package.json" ]; then
  echo "test.sh: installing playwright-core into $NODE_DIR"
  mkdir -p "$NODE_DIR"
  (cd "$NODE_DIR" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install --no-audit --no-fund playwright-core@1.65.1 >/dev/null)
fi
export BALLAST_NODE_MODULES="$NODE_DIR/node_modules"

# A port of its own, so a developer's broker on 9092 is neither used nor disturbed.
export BALLAST_KAFKA_PORT="${BALLAST_KAFKA_PORT:-19092}"
export BALLAST_KAFKA_HOME="${BALLAST_KAFKA_HOME:-$(mktemp -d /tmp/ballast-test-kafka.XXXXXX)}"
trap 'scripts/kafka.sh stop || true' EXIT
BALLAST_KAFKA_BOOTSTRAP="$(scripts/kafka.sh start | tail -n 1)"
export BALLAST_KAFKA_BOOTSTRAP BALLAST_REQUIRE_KAFKA=1
echo "test.sh: Kafka at $BALLAST_KAFKA_BOOTSTRAP"

# One build profile for every test target (dev, with optimised dependencies: see Cargo.toml).
cargo test --all-targets --no-fail-fast -- --test-threads=2

# Every documented command, run as written, with the binary the tests just built (no release
# build; `cargo build` would build it again without the tests' features) and this run's broker
# and venv.
BALLAST_BIN="${CARGO_TARGET_DIR:-target}/debug/ballast" scripts/doc-check.sh
