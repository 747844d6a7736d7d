#!/usr/bin/env bash
# The soak of the leak gate (`make soak`, the soak stage of `make test`, and the planted-leak
# check): starts a fresh node (cheap password hashing, no per-IP throttle), drives it with
# `gatehouse load --scenario soak` — churn at a fixed rate in waves that fill the node with
# sessions and empty it again every 5 s — and fails unless the verdict is `pass`. A leak (exit 1),
# an inconclusive run or a node that could not be driven (exit 2) all fail.
#
#   scripts/soak.sh                      60 s against build/gatehouse (make soak: its $(BUILD))
#   scripts/soak.sh --short              40 s (what the planted-leak check runs twice)
#   scripts/soak.sh ... --against BIN    the same against another binary (the load tool itself is
#                                        always build/gatehouse)
#   scripts/soak.sh --check-available    exit 0 when the soak can run
# SOAK_DURATION and SOAK_RATE override the duration and the rate (3,000 requests/s). The summary
# is printed; the JSON and the HTML report go to build/soak[-short][-BUILDDIR].{json,html}.
#
# Figures: one token check per session (--checks 1) so that a third of the requests are logins
# and a third logouts: the store fills and empties at ~1,000 sessions/s, 5,000 at the peak of a
# wave. A sanitizer build of the node gets ASan options that keep its own allocator from growing
# (no quarantine, no stored allocation stacks): ASan's quarantine alone grows RSS by ~10 MiB/s.
set -u
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
short=0 against="" check=0
while [ $# -gt 0 ]; do
  case $1 in
    --short) short=1 ;;
    --against) against=${2:-}; shift ;;
    --check-available) check=1 ;;
    *) echo "soak: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done

LOAD=build/gatehouse
if [ ! -x "$LOAD" ] && ! "$MAKE" --no-print-directory "$LOAD" >/dev/null 2>&1; then
  echo "soak: cannot build $LOAD" >&2
  exit 2
fi
if [ "$check" -eq 1 ]; then
  "$LOAD" load --help >/dev/null 2>&1
  exit $?
fi
NODE=${against:-$LOAD}
[ -x "$NODE" ] || { echo "soak: $NODE is not an executable" >&2; exit 2; }

duration=${SOAK_DURATION:-$([ "$short" -eq 1 ] && echo 40s || echo 60s)}
rate=${SOAK_RATE:-3000}
name=soak$([ "$short" -eq 1 ] && echo -short)
if [ -n "$against" ] && [ "$(realpath "$NODE")" != "$(realpath "$LOAD")" ]; then
  name="$name-$(basename "$(dirname "$NODE")")"
fi

. scripts/load-node.sh
trap node_stop EXIT
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0:thread_local_quarantine_size_kb=0:malloc_context_size=0:max_free_fill_size=0"
# An admin token of this run only: with it the load tool reads the node's heap profile
# (/debug/heap) at the start and the end, and names the call stacks that grew.
admin=soak-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
node_start "$NODE" --admin-token "$admin" || exit 2
echo "soak: $NODE, $duration at $rate requests/s"
"$LOAD" load --url "$NODE_URL" --scenario soak --duration "$duration" --rate "$rate" --checks 1 \
  --admin-token "$admin" --json "build/$name.json" --report "build/$name.html"
rc=$?
if [ $rc -eq 0 ] && ! grep -q '"verdict": "pass"' "build/$name.json"; then
  rc=1
fi
if ! kill -0 "$NODE_PID" 2>/dev/null; then
  echo "soak: the node died during the soak; its log:"
  cat "$NODE_DIR/server.log"
  rc=2
fi
verdict=$(sed -nE 's/^  "verdict": "([a-z]+)",?$/\1/p' "build/$name.json" 2>/dev/null)
if [ $rc -eq 0 ]; then
  echo "soak: pass (report: build/$name.html)"
else
  echo "soak: FAILED, verdict ${verdict:-none} (exit $rc; report: build/$name.html)"
fi
exit $rc
