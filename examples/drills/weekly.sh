#!/usr/bin/env bash
# The weekly drill suite on the demo workload: the four drills of the brief, each run without and
# with its fault, reported as Markdown (one section per drill) on stdout.
#   examples/drills/weekly.sh [BALLAST_BIN] > drills.md
set -euo pipefail
BIN="${1:-ballast}"
SEED="${BALLAST_DRILL_SEED:-7}"
TURNS="${BALLAST_DRILL_TURNS:-300}"
drill() { "$BIN" drill --workload demo --turns "$TURNS" --seed "$SEED" --markdown "$@"; echo; }
echo "# Weekly drills (seed $SEED, $TURNS turns)"
echo
drill --fault retrieval_outage:rate=0.5                               # retrieval outage
drill --fault stale_context:rate=0.5 --fault contradictory_context:rate=0.3   # stale or contradictory context
drill --fault tool_schema_mismatch:rate=0.5                           # tool schema mismatch
drill --fault dropped_confidence:rate=0.5                             # dropped confidence signal
