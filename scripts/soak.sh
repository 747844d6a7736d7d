#!/usr/bin/env bash
# make soak: starts a fresh node (cheap password hashing, no per-IP throttle), runs a churn soak
# at a fixed rate against it, and fails unless the verdict is `pass` — a leak (exit 1), an
# inconclusive run or a node that could not be driven (exit 2) all fail the gate.
# Usage: scripts/soak.sh BUILD DURATION RATE. Leaves BUILD/soak.json and BUILD/soak.html.
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build} DURATION=${2:-60s} RATE=${3:-3000}
BIN=$BUILD/gatehouse
. scripts/load-node.sh
trap node_stop EXIT
node_start "$BIN" || exit 2
"$BIN" load --url "$NODE_URL" --scenario soak --duration "$DURATION" --rate "$RATE" \
  --json "$BUILD/soak.json" --report "$BUILD/soak.html"
rc=$?
if [ $rc -eq 0 ] && ! grep -q '"verdict": "pass"' "$BUILD/soak.json"; then
  echo "soak: the verdict is not pass (see $BUILD/soak.html)" >&2
  rc=1
fi
if ! kill -0 "$NODE_PID" 2>/dev/null; then
  echo "soak: the node died during the soak; its log:" >&2
  cat "$NODE_DIR/server.log" >&2
  rc=2
fi
[ $rc -eq 0 ] && echo "soak: pass (report: $BUILD/soak.html)"
exit $rc
