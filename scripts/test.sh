#!/usr/bin/env bash
# The whole test suite, from a fresh clone: unit, property, conformance, integration, crash tests.
# Everything the tests need is installed or started from here (today: only the Rust toolchain's
# own crates, fetched into ~/.cargo, outside the clone).
set -euo pipefail
cd "$(dirname "$0")/.."

# One build profile for every test target (dev, with optimised dependencies: see Cargo.toml).
cargo test --all-targets --no-fail-fast -- --test-threads=2
