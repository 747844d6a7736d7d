#!/usr/bin/env bash
# make bench-heap: what the sampling heap profiler costs the token check. Two nodes with the
# default settings and one HTTP thread each, one with --heap-profile on (the default) and one with
# --heap-profile off, both pinned to core 0 and driven in turn (never at once) by the same wrk on
# the last core: GET /v1/auth (forward auth) and GET /v1/session (who am I, a JSON body, more
# allocations), in interleaved rounds. Medians of the rounds, the ratio on/off (goal >= 0.97) and
# the server's CPU time per request (off/on: the figure that holds when other work shares the
# cores, as it takes wall time from both nodes but not CPU time per request); then the
# profiler's own memory from /debug/memory.
#
# Usage: bench/bench_heap.sh [BUILD_DIR]. Environment: BENCH_SECONDS (per wrk run, default 4),
# BENCH_ROUNDS (5), BENCH_CONNECTIONS (wrk -c, 16). Exits non-zero only when it cannot run.
# Method and figures: docs/BENCHMARKS.md, "Heap profiler overhead".
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${1:-build}
BIN=$BUILD/gatehouse
SECS=${BENCH_SECONDS:-4} ROUNDS=${BENCH_ROUNDS:-5} CONNS=${BENCH_CONNECTIONS:-16}
GOAL=0.97
ADMIN=bench-heap-admin-token
. bench/bench_lib.sh

fail() { echo "bench-heap: $*" >&2; exit 1; }
command -v wrk >/dev/null || fail "wrk is not installed (make deps)"
[ -x "$BIN" ] || fail "$BIN is not built"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gh-bench-heap-XXXXXX") || exit 1
ON_PID="" OFF_PID=""
cleanup() {
  node_down "$ON_PID"
  node_down "$OFF_PID"
  rm -rf "$tmp"
}
trap cleanup EXIT

bench_machine bench-heap
printf 'bench-heap: wrk -t1 -c%s, %s s per run, %s rounds\n' "$CONNS" "$SECS" "$ROUNDS"
bench_quiet_check bench-heap

node_up ON "$BIN" "$tmp/on" --http-threads 1 --heap-profile on --admin-token "$ADMIN" ||
  fail "gatehouse serve did not start"
node_up OFF "$BIN" "$tmp/off" --http-threads 1 --heap-profile off --admin-token "$ADMIN" ||
  fail "gatehouse serve did not start"
CLIENT=()
LAST=$(($(nproc) - 1))
if [ "$LAST" -ge 1 ] && command -v taskset >/dev/null; then
  CLIENT=(taskset -c "$LAST")
  taskset -a -cp 0 "$ON_PID" >/dev/null || fail "cannot pin a node"
  taskset -a -cp 0 "$OFF_PID" >/dev/null || fail "cannot pin a node"
  echo "bench-heap: both nodes on core 0 (driven in turn), wrk on core $LAST"
fi

user='{"username":"bench-heap","password":"bench-heap-password-1"}'
token_of() {
  curl -sf --noproxy '*' -o /dev/null -X POST "$1/v1/users" -H 'Content-Type: application/json' \
    -d "$user" || return 1
  curl -sf --noproxy '*' -X POST "$1/v1/sessions" -H 'Content-Type: application/json' -d "$user" |
    sed -nE 's/.*"token":"(gh_[^"]+)".*/\1/p'
}
ON_TOKEN=$(token_of "$ON_URL") OFF_TOKEN=$(token_of "$OFF_URL")
{ [ -n "$ON_TOKEN" ] && [ -n "$OFF_TOKEN" ]; } || fail "cannot register and log in on the nodes"

HZ=$(getconf CLK_TCK)
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

declare -A rps=() cpu=()
# run NODE PATH OUT
run() {
  local u t p
  if [ "$1" = on ]; then u=$ON_URL t=$ON_TOKEN p=$ON_PID; else u=$OFF_URL t=$OFF_TOKEN p=$OFF_PID; fi
  local c0 c1
  c0=$(cpu_ticks "$p")
  "${CLIENT[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" -H "Authorization: Bearer $t" "$u$2" >"$3" 2>&1 ||
    fail "wrk failed: $(cat "$3")"
  c1=$(cpu_ticks "$p")
  grep -q 'Non-2xx' "$3" && fail "$1 $2: answers other than 2xx: $(grep 'Non-2xx' "$3")"
  reqs=$(sed -nE 's/^ *([0-9]+) requests in .*/\1/p' "$3")
  LAST_CPU=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
}

for path in /v1/auth /v1/session; do
  for node in on off; do SECS=1 run "$node" "$path" "$tmp/warmup.txt"; done
done
for round in $(seq 1 "$ROUNDS"); do
  for path in /v1/auth /v1/session; do
    # alternate which node goes first, so neither always runs on a warmer machine
    if [ $((round % 2)) = 1 ]; then nodes="on off"; else nodes="off on"; fi
    for node in $nodes; do
      out="$tmp/$node.$round.txt"
      run "$node" "$path" "$out"
      r=$(wrk_rps "$out")
      printf 'round %d  GET %-12s profiler %-3s %9.0f req/s  server CPU %5.2f us/req\n' \
        "$round" "$path" "$node" "$r" "$LAST_CPU"
      rps[$node$path]+="$r " cpu[$node$path]+="$LAST_CPU "
    done
  done
done

med() { tr ' ' '\n' <<<"$1" | grep . | median; }
for path in /v1/auth /v1/session; do
  on=$(med "${rps[on$path]}") off=$(med "${rps[off$path]}")
  awk -v on="$on" -v off="$off" -v p="$path" -v g="$GOAL" -v con="$(med "${cpu[on$path]}")" \
    -v coff="$(med "${cpu[off$path]}")" 'BEGIN {
      r = on / off; c = coff / con
      printf "heap-profile GET %-12s on %9.0f req/s (%.2f us/req)  off %9.0f req/s (%.2f us/req)  ratio %.3f (goal >= %.2f) %s; server CPU off/on %.3f\n",
        p, on, con, off, coff, r, g, (r >= g) ? "met" : "MISSED", c
    }'
done
mem=$(curl -sf --noproxy '*' "$ON_URL/debug/memory" -H "Authorization: Bearer $ADMIN")
echo "$mem" | sed -nE 's/.*"heap_profile":\{([^}]*)\}.*/heap-profile state: \1/p' | cut -c1-400
