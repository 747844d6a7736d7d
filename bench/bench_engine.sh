#!/usr/bin/env bash
# make bench-engine: the `gatehouse load` engine against wrk -t1 on the same endpoint of the same
# fresh node: GET /v1/auth (the forward-auth token check, what `--scenario validate` sends) over 16
# keep-alive connections for 10 s each, alternating three times so drift on a shared machine hits
# both alike. Prints each run, the medians and their ratio (goal: the engine reaches at least half
# of wrk). Fails only when it cannot run. Figures: docs/BENCHMARKS.md.
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build}
BIN=$BUILD/gatehouse
CONNS=${BENCH_LOAD_CONNECTIONS:-16} SECS=${BENCH_LOAD_SECONDS:-10} ROUNDS=${BENCH_LOAD_ROUNDS:-3}
command -v wrk >/dev/null || { echo "bench-engine: wrk is not installed (make deps)" >&2; exit 1; }
. scripts/load-node.sh
trap node_stop EXIT
node_start "$BIN" || exit 1

user='{"username":"bench-wrk","password":"bench-password-1"}'
curl -sf --noproxy '*' -o /dev/null -X POST "$NODE_URL/v1/users" -H 'Content-Type: application/json' -d "$user" ||
  { echo "bench-engine: cannot register the wrk user" >&2; exit 1; }
token=$(curl -sf --noproxy '*' -X POST "$NODE_URL/v1/sessions" -H 'Content-Type: application/json' -d "$user" |
  sed -E 's/.*"token":"([^"]+)".*/\1/')
[ -n "$token" ] || { echo "bench-engine: cannot log the wrk user in" >&2; exit 1; }

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
wrk_rps=() load_rps=()
for round in $(seq 1 "$ROUNDS"); do
  out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -H "Authorization: Bearer $token" "$NODE_URL/v1/auth") ||
    { echo "bench-engine: wrk failed" >&2; exit 1; }
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out"); p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  printf 'round %d  wrk -t1 -c%d          %10.0f req/s  p50 %s  p99 %s\n' "$round" "$CONNS" "$rps" "$p50" "$p99"
  wrk_rps+=("$rps")
  json="$BUILD/bench-engine.json"
  "$BIN" load --url "$NODE_URL" --scenario validate --concurrency "$CONNS" --duration "${SECS}s" \
    --json "$json" >/dev/null 2>&1
  [ -s "$json" ] || { echo "bench-engine: gatehouse load failed" >&2; exit 1; }
  field() { sed -nE "s/^ +\"$1\": ([^,]+),?$/\1/p" "$json" | head -1; }
  rps=$(field throughput_rps)
  printf 'round %d  gatehouse load -c%d   %10.0f req/s  p50 %.3fms  p99 %.3fms\n' "$round" "$CONNS" "$rps" \
    "$(field p50)" "$(field p99)"
  load_rps+=("$rps")
done
w=$(printf '%s\n' "${wrk_rps[@]}" | median)
l=$(printf '%s\n' "${load_rps[@]}" | median)
ratio=$(awk -v l="$l" -v w="$w" 'BEGIN {printf "%.2f", l / w}')
printf 'median    wrk %.0f req/s, gatehouse load %.0f req/s, ratio %s (goal >= 0.50)\n' "$w" "$l" "$ratio"
