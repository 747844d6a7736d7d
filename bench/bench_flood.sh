#!/usr/bin/env bash
# bench_flood.sh — do logins starve token checks? Starts the real binary with the DEFAULT password
# hash cost (argon2id 19 MiB, 2 passes) and measures GET /v1/auth (the forward-auth check nginx
# makes on every request) with wrk: throughput and p99 alone, then again while a flood of failed
# logins keeps the password pool saturated, and prints the ratio. Goal (issue 7): under the flood
# at least half the unloaded throughput, and p99 under 10 ms.
#
# Usage: bench/bench_flood.sh [path/to/gatehouse]
# Environment: DURATION (wrk seconds per run, default 10), CONNS (token-check connections,
# default 8), FLOOD_CONNS (login flood connections, default 64), SERVE_ARGS (extra serve flags,
# e.g. "--hash-workers 1"). Exits non-zero only when it cannot run; a missed goal is reported.
set -euo pipefail

BIN=${1:-build/gatehouse}
DURATION=${DURATION:-10}
CONNS=${CONNS:-8}
FLOOD_CONNS=${FLOOD_CONNS:-64}
SERVE_ARGS=${SERVE_ARGS:-}
HERE=$(cd "$(dirname "$0")" && pwd)

command -v wrk >/dev/null || { echo "bench-flood: wrk is not installed (scripts/deps.sh)" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench-flood: curl is not installed" >&2; exit 1; }
[ -x "$BIN" ] || { echo "bench-flood: $BIN is not built" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/gh-bench-flood.XXXXXX")
pid=""
flood_pid=""
cleanup() {
  [ -n "$flood_pid" ] && kill "$flood_pid" 2>/dev/null || true
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

# Every client here is 127.0.0.1, so the per-IP limits are lifted: with the login throttle on, the
# flood would be answered 429 without hashing (the throttle working, not the pool being tested),
# and 64 flooding connections would use up the per-IP connection limit.
# shellcheck disable=SC2086
"$BIN" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --throttle-ip 0 \
  --max-connections-per-ip 1024 $SERVE_ARGS \
  2>"$dir/server.log" &
pid=$!
addr=""
for _ in $(seq 100); do
  addr=$(grep -m1 '"msg":"listening"' "$dir/server.log" 2>/dev/null |
    sed -n 's/.*"addr":"\([^"]*\)".*/\1/p') || true
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "bench-flood: the server did not start" >&2; cat "$dir/server.log" >&2; exit 1; }
base="http://$addr"
workers=$(sed -n 's/.*"hash_workers":\([0-9]*\).*/\1/p' "$dir/server.log" | head -1)

json='Content-Type: application/json'
curl -sf -o /dev/null -H "$json" -d '{"username":"bench","password":"bench password 1"}' "$base/v1/users"
token=$(curl -sf -H "$json" -d '{"username":"bench","password":"bench password 1"}' \
  "$base/v1/sessions" | sed -n 's/.*"token":"\(gh_[^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "bench-flood: could not log in" >&2; exit 1; }

# Prints "<requests/s> <p99 in ms>" from wrk --latency output on stdin.
parse() {
  awk '
    /Requests\/sec:/ { rps = $2 }
    /^ +99%/ {
      v = $2; unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
      ms = (unit == "us") ? v / 1000 : (unit == "s") ? v * 1000 : (unit == "m") ? v * 60000 : v
      p99 = ms
    }
    END { printf "%s %s\n", rps, p99 }'
}

validate() {
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Authorization: Bearer $token" \
    "$base/v1/auth" >"$dir/$1.txt"
  if grep -q "Non-2xx" "$dir/$1.txt"; then
    echo "bench-flood: token checks failed during $1:" >&2
    cat "$dir/$1.txt" >&2
    exit 1
  fi
  parse <"$dir/$1.txt"
}

echo "bench-flood: $(nproc) cores, hash workers $workers, argon2id default cost, ${DURATION}s runs," \
  "$CONNS token-check connections, $FLOOD_CONNS flooding ${SERVE_ARGS:+($SERVE_ARGS)}"
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$load" 'BEGIN { exit !(l > 1.5) }'; then
  echo "bench-flood: WARNING: load average $load before the run; other work shares these cores" \
    "and the figures below say more about it than about the password pool"
fi
read -r alone_rps alone_p99 < <(validate alone)

wrk -t1 -c"$FLOOD_CONNS" -d"$((DURATION + 6))s" -s "$HERE/flood_login.lua" "$base/v1/sessions" \
  >"$dir/flood.txt" 2>&1 &
flood_pid=$!
sleep 3 # let the queue fill
depth=$(curl -s --max-time 5 "$base/metrics" |
  sed -n 's/^gatehouse_password_queue_depth \([0-9.]*\)$/\1/p' || true)
read -r flood_rps flood_p99 < <(validate flood)
wait "$flood_pid" || true
flood_pid=""
flood_statuses=$(grep -m1 'flood statuses' "$dir/flood.txt" || echo "flood statuses: ?")
flood_rate=$(awk '/Requests\/sec:/ { print $2 }' "$dir/flood.txt")

awk -v a="$alone_rps" -v ap="$alone_p99" -v f="$flood_rps" -v fp="$flood_p99" \
  -v depth="${depth:-?}" -v fs="$flood_statuses" -v fr="${flood_rate:-?}" 'BEGIN {
  ratio = (a > 0) ? f / a : 0
  printf "token checks alone:        %9.0f req/s   p99 %7.2f ms\n", a, ap
  printf "token checks under flood:  %9.0f req/s   p99 %7.2f ms\n", f, fp
  printf "login flood:               %9.0f req/s   (%s; queue depth %s)\n", fr, fs, depth
  printf "ratio under flood:         %9.2f         goal >= 0.50 and p99 < 10 ms: %s\n", ratio,
         (ratio >= 0.5 && fp < 10) ? "met" : "MISSED"
}'
