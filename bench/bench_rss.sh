#!/usr/bin/env bash
# make bench-rss: what a million live sessions cost a real node, measured from the outside, and
# how long the node takes to start with them. A million logins would take hours of argon2id, so
# `bench_load --fill` writes DIR/sessions.db directly in the store's own format (one million live
# sessions, four per user, last seen within the last 20 minutes in random order). Then, in
# interleaved rounds, a node with the DEFAULT serve settings starts on an empty data dir and on
# that one:
#   - start-up time: process start to the first /healthz answer (goal < 2 s at a million);
#   - resident bytes per session: (VmRSS of the full node - VmRSS of the empty one) / sessions,
#     from /proc/PID/status, SETTLE seconds after /healthz (goal <= 160);
#   - accounted bytes per session: the same difference of gatehouse_memory_bytes{component=
#     "sessions"} from /metrics (goal <= 128).
# A node that has not answered within BENCH_RSS_TIMEOUT s is killed and reported as a miss (no
# resident figure then: its sessions were never all in memory); the rounds stop there.
#
# Usage: bench/bench_rss.sh [BUILD_DIR]. Environment: BENCH_RSS_SESSIONS (default 1000000),
# BENCH_ROUNDS (3), BENCH_RSS_SETTLE (2), BENCH_RSS_TIMEOUT (60). Exits non-zero only when it
# cannot run.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${1:-build}
BIN=$BUILD/gatehouse FILL=$BUILD/bench/bench_load
N=${BENCH_RSS_SESSIONS:-1000000} ROUNDS=${BENCH_ROUNDS:-3} SETTLE=${BENCH_RSS_SETTLE:-2}
NODE_UP_TIMEOUT=${BENCH_RSS_TIMEOUT:-60}
. bench/bench_lib.sh

fail() { echo "bench-rss: $*" >&2; exit 1; }
[ -x "$BIN" ] || fail "$BIN is not built"
[ -x "$FILL" ] || fail "$FILL is not built"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gh-bench-rss-XXXXXX") || exit 1
E_PID="" F_PID=""
trap 'node_down "$E_PID"; node_down "$F_PID"; rm -rf "$tmp"' EXIT

bench_machine bench-rss
bench_quiet_check bench-rss
mkdir -p "$tmp/full" || exit 1
"$FILL" --fill "$tmp/full" "$N" >"$tmp/fill.txt" ||
  fail "cannot write $N sessions: $(cat "$tmp/fill.txt")"
printf 'bench-rss: %s sessions written to sessions.db in %s s (%s MB); settle %s s, timeout %s s\n' \
  "$N" "$(sed -n 's/^fill_s //p' "$tmp/fill.txt")" \
  "$(($(stat -c %s "$tmp/full/sessions.db") / 1000000))" "$SETTLE" "$NODE_UP_TIMEOUT"

rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
metric() { # URL NAME-WITH-LABELS
  curl -sf --noproxy '*' --max-time 10 "$1/metrics" | awk -v m="$2" '$1 == m {print $2; exit}'
}
SESS='gatehouse_memory_bytes{component="sessions"}'

# measure VAR DIR: starts a node on DIR, waits SETTLE s, sets VAR_MS VAR_RSS (bytes) VAR_ACC
# VAR_N VAR_RSS0 (at the first /healthz), stops it. Returns node_up's status.
measure() {
  local v=$1 dir=$2 rc pid url rss0
  node_up NODE "$BIN" "$dir"
  rc=$?
  [ "$rc" -eq 0 ] || return "$rc"
  pid=$NODE_PID url=$NODE_URL
  printf -v "${v}_PID" '%s' "$pid"
  rss0=$(rss_kb "$pid")
  sleep "$SETTLE"
  printf -v "${v}_MS" '%s' "$NODE_START_MS"
  printf -v "${v}_RSS0" '%s' "$((rss0 * 1024))"
  printf -v "${v}_RSS" '%s' "$(($(rss_kb "$pid") * 1024))"
  printf -v "${v}_ACC" '%s' "$(metric "$url" "$SESS")"
  printf -v "${v}_N" '%s' "$(metric "$url" gatehouse_sessions_active)"
  node_down "$pid"
  printf -v "${v}_PID" '%s' ""
  return 0
}

starts=() empty_starts=() res=() acc=() timed_out=""
for round in $(seq 1 "$ROUNDS"); do
  measure E "$tmp/empty" || fail "the node did not start on an empty data dir"
  measure F "$tmp/full"
  rc=$?
  if [ "$rc" -eq 2 ]; then
    timed_out=1
    printf 'round %d  empty store: start %d ms, RSS %d; %d sessions: no /healthz answer within %s s\n' \
      "$round" "$E_MS" "$E_RSS" "$N" "$NODE_UP_TIMEOUT"
    break
  fi
  [ "$rc" -eq 0 ] || fail "the node did not start on the filled data dir"
  [ "${F_N%.*}" = "$N" ] || echo "bench-rss: WARNING: the node holds $F_N sessions, not $N"
  loaded=$(grep '"msg":"sessions loaded"' "$tmp/full.log" | tail -1 | sed -n 's/.*"duration_ms":\([0-9]*\).*/\1/p')
  printf 'round %d  empty: start %4d ms, RSS %d, sessions bytes %s | full: start %5d ms (load %s ms), RSS %d (%d at /healthz), sessions bytes %s, live %s\n' \
    "$round" "$E_MS" "$E_RSS" "$E_ACC" "$F_MS" "${loaded:-?}" "$F_RSS" "$F_RSS0" "$F_ACC" "$F_N"
  starts+=("$F_MS") empty_starts+=("$E_MS")
  res+=("$(awk -v a="$F_RSS" -v b="$E_RSS" -v n="$F_N" 'BEGIN { printf "%.1f", (a - b) / n }')")
  acc+=("$(awk -v a="$F_ACC" -v b="$E_ACC" -v n="$F_N" 'BEGIN { printf "%.1f", (a - b) / n }')")
done

verdict() { awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN {
  ok = (op == "<=") ? v <= g : v < g; print ok ? "met" : "MISSED" }'; }
if [ "${#starts[@]}" -gt 0 ]; then
  s=$(printf '%s\n' "${starts[@]}" | median) e=$(printf '%s\n' "${empty_starts[@]}" | median)
  r=$(printf '%s\n' "${res[@]}" | median) a=$(printf '%s\n' "${acc[@]}" | median)
  printf 'rss      resident bytes per session at %d sessions (VmRSS delta, median)  %6.1f  (goal <= 160) %s\n' \
    "$N" "$r" "$(verdict "$r" 160 '<=')"
  printf 'rss      accounted bytes per session at %d sessions (/metrics, median)   %6.1f  (goal <= 128) %s\n' \
    "$N" "$a" "$(verdict "$a" 128 '<=')"
  printf 'rss      start-up with %d persisted sessions (to /healthz, median)  %6.2f s (goal < 2 s) %s; empty store %.2f s\n' \
    "$N" "$(awk -v s="$s" 'BEGIN { printf "%.2f", s / 1000 }')" \
    "$(verdict "$s" 2000 '<')" "$(awk -v s="$e" 'BEGIN { print s / 1000 }')"
fi
if [ -n "$timed_out" ]; then
  printf 'rss      start-up with %d persisted sessions: no /healthz answer within %s s (goal < 2 s) MISSED; resident and accounted bytes per session not measured\n' \
    "$N" "$NODE_UP_TIMEOUT"
fi
