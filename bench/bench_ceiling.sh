#!/usr/bin/env bash
# make bench-ceiling: Gatehouse against the fastest HTTP answer this machine can give. A real
# nginx (Debian's, one worker, access_log off, `location / { return 200; }`) and gatehouse nodes
# are driven by the same wrk (same -t/-c/-d, keep-alive) in interleaved rounds: nginx, then
# GET /v1/auth (forward auth, a valid bearer token) and GET /v1/session (who am I, a JSON body).
# The comparison the goal applies to is one worker against one worker: a node with
# `--http-threads 1` on the core nginx's worker has (core 0), the client on the last core. A node
# with every default (one HTTP thread per core, unpinned, so it shares the client's core) is
# measured too. Both log at the default level (info). Medians of the rounds and their ratios to
# nginx (goal >= 0.80). Then the latency of token
# checks at a fixed rate of half the measured maximum, open loop (`gatehouse load --scenario
# validate --rate R`, latency from each request's intended send time): p50, p99, p99.9.
#
# Usage: bench/bench_ceiling.sh [BUILD_DIR]. Environment: BENCH_SECONDS (per wrk run, default 4),
# BENCH_ROUNDS (3), BENCH_THREADS (wrk -t, 1), BENCH_CONNECTIONS (wrk -c, 16), BENCH_RATE_SECONDS
# (the open-loop run, 10; 0 skips it), NGINX (/usr/sbin/nginx). Prints every run, then one summary line per
# figure; exits non-zero only when it cannot run, never because a goal is missed.
# Method and figures: docs/BENCHMARKS.md, "Against the ceilings".
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${1:-build}
BIN=$BUILD/gatehouse
SECS=${BENCH_SECONDS:-4} ROUNDS=${BENCH_ROUNDS:-3}
THREADS=${BENCH_THREADS:-1} CONNS=${BENCH_CONNECTIONS:-16}
RATE_SECS=${BENCH_RATE_SECONDS:-10}
NGINX=${NGINX:-/usr/sbin/nginx}
PIN=${BENCH_PIN:-1} PIN_NODE=${BENCH_PIN_NODE:-0}
GOAL=0.80
. bench/bench_lib.sh

fail() { echo "bench-ceiling: $*" >&2; exit 1; }
command -v wrk >/dev/null || fail "wrk is not installed (make deps)"
[ -x "$NGINX" ] || fail "$NGINX is not installed (make deps)"
[ -x "$BIN" ] || fail "$BIN is not built"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gh-bench-ceiling-XXXXXX") || exit 1
NGINX_PID="" INFO_PID="" WARN_PID=""
cleanup() {
  if [ -n "$NGINX_PID" ]; then
    kill -QUIT "$NGINX_PID" 2>/dev/null # graceful: the master stops its worker
    wait "$NGINX_PID" 2>/dev/null
  fi
  node_down "$INFO_PID"
  node_down "$WARN_PID"
  rm -rf "$tmp"
}
trap cleanup EXIT

bench_machine bench-ceiling
printf 'bench-ceiling: %s, %s; wrk -t%s -c%s, %s s per run, %s rounds\n' \
  "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')" "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)" \
  "$THREADS" "$CONNS" "$SECS" "$ROUNDS"
bench_quiet_check bench-ceiling

# The client gets the last core and nginx's one worker the first. Unpinned, the scheduler often
# keeps two processes that wake each other over loopback on ONE core (wake-affine): nginx then
# measured 84k instead of 140-160k req/s in whole runs, a ceiling that depends on luck.
CLIENT=() AFFINITY=""
LAST=$(($(nproc) - 1))
if [ "$PIN" = 1 ] && [ "$LAST" -ge 1 ] && command -v taskset >/dev/null; then
  CLIENT=(taskset -c "$LAST")
  AFFINITY="worker_cpu_affinity 1;"
  echo "bench-ceiling: wrk and gatehouse load on core $LAST, nginx's worker on core 0" \
    "$([ "$PIN_NODE" = 1 ] && echo ", gatehouse on cores 0-$((LAST - 1))" || echo ", gatehouse unpinned")"
fi

# ---- nginx: everything under $tmp, so it runs without root and touches nothing of the system's.
nginx_up() {
  local port
  mkdir -p "$tmp/nginx/logs"
  for _ in 1 2 3 4 5; do
    port=$(bench_free_port)
    cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
$AFFINITY
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  server {
    listen 127.0.0.1:$port;
    location / { return 200; }
  }
}
EOF
    "$NGINX" -p "$tmp/nginx" -e "$tmp/nginx/logs/error.log" -c "$tmp/nginx/nginx.conf" &
    NGINX_PID=$!
    for _ in $(seq 1 100); do
      if curl -sf -o /dev/null --noproxy '*' "http://127.0.0.1:$port/"; then
        NGINX_URL="http://127.0.0.1:$port"
        return 0
      fi
      kill -0 "$NGINX_PID" 2>/dev/null || break
      sleep 0.05
    done
    kill -KILL "$NGINX_PID" 2>/dev/null
    wait "$NGINX_PID" 2>/dev/null
    NGINX_PID=""
  done
  cat "$tmp/nginx/logs/error.log" >&2
  return 1
}
nginx_up || fail "nginx did not start"

# ---- two nodes with the default settings; one logs only warnings. Registration and login use
# the default argon2id cost too (a tenth of a second each).
# ONE: one HTTP thread on nginx's core; INFO: every default (named for its log level, info).
node_up INFO "$BIN" "$tmp/info" || fail "gatehouse serve did not start"
node_up WARN "$BIN" "$tmp/one" --http-threads 1 || fail "gatehouse serve did not start"
if [ ${#CLIENT[@]} -gt 0 ]; then
  taskset -a -cp 0 "$WARN_PID" >/dev/null || fail "cannot pin the one-thread node"
  if [ "$PIN_NODE" = 1 ]; then
    taskset -a -cp "0-$((LAST - 1))" "$INFO_PID" >/dev/null || fail "cannot pin the node"
  fi
fi
user='{"username":"bench-ceiling","password":"bench-ceiling-password-1"}'
token_of() {
  curl -sf --noproxy '*' -o /dev/null -X POST "$1/v1/users" -H 'Content-Type: application/json' \
    -d "$user" || return 1
  curl -sf --noproxy '*' -X POST "$1/v1/sessions" -H 'Content-Type: application/json' -d "$user" |
    sed -nE 's/.*"token":"(gh_[^"]+)".*/\1/p'
}
INFO_TOKEN=$(token_of "$INFO_URL") WARN_TOKEN=$(token_of "$WARN_URL")
{ [ -n "$INFO_TOKEN" ] && [ -n "$WARN_TOKEN" ]; } || fail "cannot register and log in on the nodes"

# name -> URL, and the token it presents (none for nginx)
declare -A url=(
  [nginx]="$NGINX_URL/"
  [auth_info]="$INFO_URL/v1/auth" [session_info]="$INFO_URL/v1/session"
  [auth_warn]="$WARN_URL/v1/auth" [session_warn]="$WARN_URL/v1/session"
)
declare -A token=(
  [nginx]="" [auth_info]="$INFO_TOKEN" [session_info]="$INFO_TOKEN"
  [auth_warn]="$WARN_TOKEN" [session_warn]="$WARN_TOKEN"
)
order=(nginx auth_warn session_warn auth_info session_info)
declare -A label=(
  [nginx]="nginx return 200"
  [auth_info]="GET /v1/auth, defaults"
  [session_info]="GET /v1/session, defaults"
  [auth_warn]="GET /v1/auth, 1 thread"
  [session_warn]="GET /v1/session, 1 thread"
)
declare -A rps=() p50=() p99=() cpu=()

# The server's CPU time per request is steadier than its rate on a shared machine (other work
# takes wall time from both, not CPU time per request), and says where the difference goes.
HZ=$(getconf CLK_TCK)
server_pids() {
  # shellcheck disable=SC2046
  case $1 in
  nginx) echo "$NGINX_PID" $(ps -o pid= --ppid "$NGINX_PID") ;; # the master and its worker
  *_info) echo "$INFO_PID" ;;
  *_warn) echo "$WARN_PID" ;;
  esac
}
cpu_ticks() { # PID...: user + system time of these processes (all their threads), in ticks
  local p t=0
  for p in "$@"; do
    t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}

# run NAME SECONDS OUT: one wrk run; fails when any answer was not 2xx (a wrong token or route
# would measure 401s, not the path the figure names).
run() {
  local -a auth=()
  [ -n "${token[$1]}" ] && auth=(-H "Authorization: Bearer ${token[$1]}")
  "${CLIENT[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$2s" --latency "${auth[@]}" "${url[$1]}" >"$3" 2>&1 ||
    fail "wrk failed: $(cat "$3")"
  if grep -q 'Non-2xx' "$3"; then
    fail "$1: answers other than 2xx: $(grep 'Non-2xx' "$3")"
  fi
}

for name in "${order[@]}"; do run "$name" 1 "$tmp/warmup.txt"; done # connections, caches, pages
for round in $(seq 1 "$ROUNDS"); do
  for name in "${order[@]}"; do
    out="$tmp/$name.$round.txt"
    # shellcheck disable=SC2046
    t0=$(cpu_ticks $(server_pids "$name"))
    run "$name" "$SECS" "$out"
    # shellcheck disable=SC2046
    t1=$(cpu_ticks $(server_pids "$name"))
    r=$(wrk_rps "$out") a=$(wrk_p 50% "$out") b=$(wrk_p 99% "$out")
    reqs=$(sed -nE 's/^ *([0-9]+) requests in .*/\1/p' "$out")
    c=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
    printf 'round %d  %-26s %9.0f req/s  p50 %6.3f ms  p99 %6.3f ms  server CPU %5.2f us/req\n' \
      "$round" "${label[$name]}" "$r" "$a" "$b" "$c"
    rps[$name]+="$r " cpu[$name]+="$c "
    p50[$name]+="$a " p99[$name]+="$b "
  done
done

med() { tr ' ' '\n' <<<"$1" | grep . | median; }
n=$(med "${rps[nginx]}")
nc=$(med "${cpu[nginx]}")
printf 'ceiling  %-34s %9.0f req/s  p50 %.3f ms  p99 %.3f ms  server CPU %.2f us/req\n' \
  "nginx return 200 (median)" "$n" "$(med "${p50[nginx]}")" "$(med "${p99[nginx]}")" "$nc"
for name in auth_warn session_warn auth_info session_info; do
  m=$(med "${rps[$name]}")
  awk -v m="$m" -v n="$n" -v l="${label[$name]}" -v g="$GOAL" -v a="$(med "${p50[$name]}")" \
    -v b="$(med "${p99[$name]}")" -v c="$(med "${cpu[$name]}")" -v nc="$nc" 'BEGIN {
      r = m / n
      goal = (l ~ /1 thread/) ? sprintf("goal >= %.2f) %s", g, (r >= g) ? "met" : "MISSED") : "no goal: shares the client'"'"'s core)"
      printf "ceiling  %-34s %9.0f req/s  p50 %.3f ms  p99 %.3f ms  server CPU %.2f us/req (nginx/this %.2f)  ratio %.2f of nginx (%s\n",
        l " (median)", m, a, b, c, nc / c, r, goal
    }'
done

# ---- open loop at half the maximum just measured, on the default node.
[ "$RATE_SECS" -gt 0 ] || exit 0
max=$(med "${rps[auth_warn]}")
rate=$(awk -v m="$max" 'BEGIN { printf "%d", m / 2 }')
json="$tmp/rate.json"
# Four pool users: their registrations stay well inside the default per-IP throttle (20/min).
"${CLIENT[@]}" "$BIN" load --url "$WARN_URL" --scenario validate --rate "$rate" --concurrency "$CONNS" \
  --users 4 --duration "${RATE_SECS}s" --warmup 1s --json "$json" >"$tmp/rate.txt" 2>&1
[ -s "$json" ] || fail "gatehouse load failed: $(cat "$tmp/rate.txt")"
field() { sed -nE "s/^ +\"$1\": ([^,]+),?$/\1/p" "$json" | head -1; }
# A client that cannot keep the schedule charges its own delay to every request (as it should):
# then the line says so, because the latency is the client's, not the node's.
behind=$(awk -v t="$(field throughput_rps)" -v r="$rate" 'BEGIN {
  if (t < 0.95 * r) printf "  CLIENT FELL BEHIND (sent %.0f of %d/s): not the node'"'"'s latency", t, r }')
printf 'ceiling  %-34s %9.0f req/s  p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  errors %s (half of %.0f, %s s)%s\n' \
  "GET /v1/auth open loop, 1 thread" "$(field throughput_rps)" "$(field p50)" "$(field p99)" \
  "$(field p999)" "$(field errors)" "$max" "$RATE_SECS" "$behind"
