#!/usr/bin/env bash
# make bench-storm: does a login storm take the token checks of its own address with it? Every
# serve flag at its default (argon2id 19 MiB / 2 passes, the per-IP and per-account throttles,
# --max-connections-per-ip 64, --hash-queue 64), on two paths:
#   direct  one node; the storm and the token checks (GET /v1/auth, a bearer token) both come
#           from 127.0.0.1 — one address, like a NAT;
#   nginx   a node behind the shipped deploy/nginx/gatehouse.conf (only its ports changed; the
#           node run as the file says, --trusted-proxies naming nginx); the storm posts logins
#           through nginx and the checks are guarded pages (nginx's auth subrequest), all from
#           127.0.0.1.
# The storm: STORM_CONNS connections of correct logins (bench/storm_login.lua, spread over 8
# users so no account reaches its back-off and every login goes to the password pool). Token
# checks are measured alone, then during the storm: requests/s, p99 and every failure (non-2xx,
# socket errors) — the goal is that none fails and the rate holds (ratio under the storm).
#
# Usage: bench/bench_storm.sh [BUILD_DIR]. Environment: BENCH_SECONDS (token-check run, 10),
# CONNS (token-check connections, 8), STORM_CONNS (64), NGINX (/usr/sbin/nginx). Exits non-zero
# only when it cannot run; a failed check is reported, not fatal. Figures: docs/BENCHMARKS.md.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${1:-build}
BIN=$BUILD/gatehouse
SECS=${BENCH_SECONDS:-10} CONNS=${CONNS:-8} STORM_CONNS=${STORM_CONNS:-64}
NGINX=${NGINX:-/usr/sbin/nginx}
CONF=deploy/nginx/gatehouse.conf
PASSWORD=bench-storm-password-1
. bench/bench_lib.sh

fail() { echo "bench-storm: $*" >&2; exit 1; }
command -v wrk >/dev/null || fail "wrk is not installed (make deps)"
[ -x "$NGINX" ] || fail "$NGINX is not installed (make deps)"
[ -x "$BIN" ] || fail "$BIN is not built"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gh-bench-storm-XXXXXX") || exit 1
NGINX_PID="" DIRECT_PID="" PROXIED_PID="" STORM_PID=""
cleanup() {
  [ -n "$STORM_PID" ] && kill "$STORM_PID" 2>/dev/null
  if [ -n "$NGINX_PID" ]; then
    kill -QUIT "$NGINX_PID" 2>/dev/null
    wait "$NGINX_PID" 2>/dev/null
  fi
  node_down "$DIRECT_PID"
  node_down "$PROXIED_PID"
  rm -rf "$tmp"
}
trap cleanup EXIT

bench_machine bench-storm
printf 'bench-storm: every serve flag at its default; token checks wrk -t1 -c%s %s s, storm wrk -t1 -c%s of correct logins\n' \
  "$CONNS" "$SECS" "$STORM_CONNS"
bench_quiet_check bench-storm

# ---- nginx with the shipped config in front of $1 (host:port), and a stand-in app.
nginx_up() {
  local app front
  mkdir -p "$tmp/nginx/logs"
  for _ in 1 2 3 4 5; do
    app=$(bench_free_port) front=$(bench_free_port)
    sed -e "s/127\.0\.0\.1:8080/$1/" -e "s/127\.0\.0\.1:3000/127.0.0.1:$app/" \
      -e "s/listen 80;/listen 127.0.0.1:$front;/" "$CONF" >"$tmp/nginx/gatehouse.conf"
    cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log warn;
worker_rlimit_nofile 10240;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  include $tmp/nginx/gatehouse.conf;
  server {
    listen 127.0.0.1:$app;
    location / { default_type text/plain; return 200 "app: user=[\$http_x_auth_user]\n"; }
  }
}
EOF
    "$NGINX" -p "$tmp/nginx" -e "$tmp/nginx/logs/error.log" -c "$tmp/nginx/nginx.conf" &
    NGINX_PID=$!
    for _ in $(seq 1 100); do
      if curl -s -o /dev/null --noproxy '*' "http://127.0.0.1:$front/login"; then
        FRONT="http://127.0.0.1:$front"
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

# users BASE: registers the checker and the 8 storm users at BASE (9 registrations: inside the
# default per-IP throttle of 20 a minute) and prints the checker's token.
users() {
  local i body
  for i in 0 1 2 3 4 5 6 7 checker; do
    body="{\"username\":\"storm$i\",\"password\":\"$PASSWORD\"}"
    curl -sf --noproxy '*' -o /dev/null -X POST "$1/v1/users" -H 'Content-Type: application/json' \
      -d "$body" || return 1
  done
  curl -sf --noproxy '*' -X POST "$1/v1/sessions" -H 'Content-Type: application/json' -d "$body" |
    sed -nE 's/.*"token":"(gh_[^"]+)".*/\1/p'
}

# checks NAME URL HEADER: one token-check run; prints "rps p99 failures".
checks() {
  wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -H "$3" "$2" >"$tmp/$1.txt" 2>&1
  local non2xx sock
  non2xx=$(sed -nE 's/^ *Non-2xx or 3xx responses: ([0-9]+)/\1/p' "$tmp/$1.txt")
  sock=$(sed -nE 's/^ *Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)/\1 \2 \3 \4/p' \
    "$tmp/$1.txt" | awk '{print $1 + $2 + $3 + $4}')
  echo "$(wrk_rps "$tmp/$1.txt") $(wrk_p 99% "$tmp/$1.txt") $((${non2xx:-0} + ${sock:-0}))"
}

# path NAME BASE CHECK_URL CHECK_HEADER: alone, then under the storm; prints the figures.
path() {
  local name=$1 base=$2 url=$3 header=$4 a ap af s sp sf
  read -r a ap af < <(checks "$name-alone" "$url" "$header")
  wrk -t1 -c"$STORM_CONNS" -d"$((SECS + 5))s" --timeout 10s -s bench/storm_login.lua \
    "$base/v1/sessions" -- storm 8 "$PASSWORD" >"$tmp/$name-storm.txt" 2>&1 &
  STORM_PID=$!
  sleep 3 # the storm holds its connections and fills the password queue
  read -r s sp sf < <(checks "$name-storm-checks" "$url" "$header")
  wait "$STORM_PID"
  STORM_PID=""
  awk -v n="$name" -v a="$a" -v ap="$ap" -v af="$af" -v s="$s" -v sp="$sp" -v sf="$sf" \
    -v st="$(grep -m1 'storm statuses' "$tmp/$name-storm.txt" | sed 's/storm statuses: *//')" \
    -v sr="$(wrk_rps "$tmp/$name-storm.txt")" 'BEGIN {
      printf "storm  %-7s token checks alone          %9.0f req/s  p99 %8.2f ms  failed %d\n", n, a, ap, af
      printf "storm  %-7s token checks under the storm %8.0f req/s  p99 %8.2f ms  failed %d  ratio %.2f  %s\n",
        n, s, sp, sf, (a > 0) ? s / a : 0, (sf == 0 && s > 0) ? "every check answered" : "CHECKS FAILED"
      printf "storm  %-7s the storm                   %8.0f req/s  (%s)\n", n, sr, st
    }'
}

# ---- direct: one address, no proxy.
node_up DIRECT "$BIN" "$tmp/direct" || fail "gatehouse serve did not start"
token=$(users "$DIRECT_URL") && [ -n "$token" ] || fail "cannot register and log in (direct)"
path direct "$DIRECT_URL" "$DIRECT_URL/v1/auth" "Authorization: Bearer $token"
node_down "$DIRECT_PID"
DIRECT_PID=""

# ---- through the shipped nginx config.
node_up PROXIED "$BIN" "$tmp/proxied" --trusted-proxies 127.0.0.1/32 || fail "gatehouse serve did not start"
nginx_up "${PROXIED_URL#http://}" || fail "nginx did not start"
token=$(users "$FRONT") && [ -n "$token" ] || fail "cannot register and log in (through nginx)"
path nginx "$FRONT" "$FRONT/app/page" "Cookie: gatehouse_session=$token"
