#!/usr/bin/env bash
# make bench-login: login throughput against the raw argon2id rate. bench_login (bench/bench_login.c)
# runs crypto_pwhash_str_verify at the node's default cost on as many threads as the node's
# default hash workers (half the cores, at least 1) for SECONDS; then wrk sends successful logins
# (POST /v1/sessions, right password, bench/login_ok.lua) to a node with the default serve
# settings for the same SECONDS, enough connections to keep the password pool's queue non-empty
# but never full (8: a 503 would be a refused login, not a slow one). Interleaved rounds, medians,
# ratio (goal >= 0.95: everything around the hash should be nearly free).
#
# Only the per-IP throttle is turned off (--throttle-ip 0): successful logins do not count toward
# it, but the benchmark should not depend on that. The same flags go to bench_login, so both
# resolve the same cost and worker count.
#
# Usage: bench/bench_login.sh [BUILD_DIR]. Environment: BENCH_LOGIN_SECONDS (per run, default 5),
# BENCH_ROUNDS (3), BENCH_LOGIN_CONNECTIONS (8). Exits non-zero only when it cannot run.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${1:-build}
BIN=$BUILD/gatehouse RAW=$BUILD/bench/bench_login
SECS=${BENCH_LOGIN_SECONDS:-5} ROUNDS=${BENCH_ROUNDS:-3} CONNS=${BENCH_LOGIN_CONNECTIONS:-8}
GOAL=0.95
FLAGS=(--throttle-ip 0)
. bench/bench_lib.sh

fail() { echo "bench-login: $*" >&2; exit 1; }
command -v wrk >/dev/null || fail "wrk is not installed (make deps)"
{ [ -x "$BIN" ] && [ -x "$RAW" ]; } || fail "$BIN or $RAW is not built"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gh-bench-login-XXXXXX") || exit 1
NODE_PID=""
trap 'node_down "$NODE_PID"; rm -rf "$tmp"' EXIT

bench_machine bench-login
bench_quiet_check bench-login
node_up NODE "$BIN" "$tmp/node" "${FLAGS[@]}" || fail "gatehouse serve did not start"
workers=$(sed -n 's/.*"hash_workers":\([0-9]*\).*/\1/p' "$tmp/node.log" | head -1)
name=bench-login password=bench-login-password-1
curl -sf --noproxy '*' -o /dev/null -X POST "$NODE_URL/v1/users" -H 'Content-Type: application/json' \
  -d "{\"username\":\"$name\",\"password\":\"$password\"}" || fail "cannot register the user"
echo "bench-login: node hash workers $workers, wrk -t1 -c$CONNS, $SECS s per run, $ROUNDS rounds"

raw=() node=()
for round in $(seq 1 "$ROUNDS"); do
  "$RAW" "$SECS" "${FLAGS[@]}" >"$tmp/raw.txt" || fail "bench_login failed"
  r=$(awk '{print $2}' "$tmp/raw.txt")
  printf 'round %d  raw argon2id verify   %7.2f /s  (%s)\n' "$round" "$r" \
    "$(cut -d' ' -f3- "$tmp/raw.txt")"
  raw+=("$r")

  wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s bench/login_ok.lua "$NODE_URL/v1/sessions" \
    -- "$name" "$password" >"$tmp/wrk.txt" 2>&1 || fail "wrk failed: $(cat "$tmp/wrk.txt")"
  statuses=$(sed -n 's/^login statuses: //p' "$tmp/wrk.txt")
  ok=$(tr ' ' '\n' <<<"$statuses" | sed -n 's/^201=//p')
  # wrk's own run time ("N requests in 5.00s"): logins in flight at the end are not counted.
  elapsed=$(sed -nE 's/.* requests in ([0-9.]+)s,.*/\1/p' "$tmp/wrk.txt")
  { [ -n "$ok" ] && [ -n "$elapsed" ]; } || fail "no successful login: $(cat "$tmp/wrk.txt")"
  r=$(awk -v n="$ok" -v s="$elapsed" 'BEGIN { printf "%.2f", n / s }')
  printf 'round %d  logins (201)          %7.2f /s  ratio %.2f  (statuses %s; p50 %s ms, p99 %s ms)\n' \
    "$round" "$r" "$(awk -v a="$r" -v b="${raw[-1]}" 'BEGIN { print a / b }')" "$statuses" \
    "$(wrk_p 50% "$tmp/wrk.txt")" "$(wrk_p 99% "$tmp/wrk.txt")"
  node+=("$r")
done

a=$(printf '%s\n' "${raw[@]}" | median)
b=$(printf '%s\n' "${node[@]}" | median)
awk -v a="$a" -v b="$b" -v g="$GOAL" -v w="$workers" 'BEGIN {
  r = b / a
  printf "login    raw argon2id verify on %d thread(s) %.2f /s, node logins %.2f /s (medians): ratio %.2f (goal >= %.2f) %s\n",
    w, a, b, r, g, (r >= g) ? "met" : "MISSED"
}'
