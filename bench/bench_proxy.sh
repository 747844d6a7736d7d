#!/usr/bin/env bash
# make bench-proxy: guarded pages per second through the shipped nginx config
# (deploy/nginx/gatehouse.conf, only its ports changed) against the same nginx proxying the same
# app without auth. One nginx (Debian's, one worker, access_log off) serves three front doors:
#   guarded      the shipped config: an auth subrequest to a gatehouse node, then the app;
#   no keep-alive the shipped config with its upstream keep-alive removed (keepalive,
#                proxy_http_version 1.1, Connection "") — what the config shipped before;
#   plain        a server block that proxies to the same app upstream with no auth at all.
# The app is a server block of the same nginx answering `return 200`. The node runs with every
# default plus --trusted-proxies naming nginx, as the file says. wrk (same -t/-c/-d, a signed-in
# cookie) drives each in interleaved rounds; medians and the ratio guarded / plain (an auth
# subrequest roughly doubles nginx's work per page, so about 0.5 is the ceiling). Any answer other
# than 2xx, or any socket error, fails the run: a figure must be of pages that were served.
#
# Usage: bench/bench_proxy.sh [BUILD_DIR]. Environment: BENCH_SECONDS (per wrk run, default 4),
# BENCH_ROUNDS (3), BENCH_THREADS (wrk -t, 1), BENCH_CONNECTIONS (wrk -c, 64), NGINX
# (/usr/sbin/nginx). Exits non-zero only when it cannot run. Figures: docs/BENCHMARKS.md.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${1:-build}
BIN=$BUILD/gatehouse
SECS=${BENCH_SECONDS:-4} ROUNDS=${BENCH_ROUNDS:-3}
THREADS=${BENCH_THREADS:-1} CONNS=${BENCH_CONNECTIONS:-64}
NGINX=${NGINX:-/usr/sbin/nginx}
CONF=deploy/nginx/gatehouse.conf
. bench/bench_lib.sh

fail() { echo "bench-proxy: $*" >&2; exit 1; }
command -v wrk >/dev/null || fail "wrk is not installed (make deps)"
[ -x "$NGINX" ] || fail "$NGINX is not installed (make deps)"
[ -x "$BIN" ] || fail "$BIN is not built"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gh-bench-proxy-XXXXXX") || exit 1
NGINX_PID="" NODE_PID=""
cleanup() {
  if [ -n "$NGINX_PID" ]; then
    kill -QUIT "$NGINX_PID" 2>/dev/null
    wait "$NGINX_PID" 2>/dev/null
  fi
  node_down "$NODE_PID"
  rm -rf "$tmp"
}
trap cleanup EXIT

bench_machine bench-proxy
printf 'bench-proxy: %s, %s; wrk -t%s -c%s, %s s per run, %s rounds\n' \
  "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')" "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)" \
  "$THREADS" "$CONNS" "$SECS" "$ROUNDS"
bench_quiet_check bench-proxy

node_up NODE "$BIN" "$tmp/node" --trusted-proxies 127.0.0.1/32 || fail "gatehouse serve did not start"
NODE_ADDR=${NODE_URL#http://}

# ---- nginx: everything under $tmp, so it runs without root and touches nothing of the system's.
nginx_up() {
  local app guarded nk plain
  mkdir -p "$tmp/nginx/logs"
  for _ in 1 2 3 4 5; do
    app=$(bench_free_port) guarded=$(bench_free_port) nk=$(bench_free_port) plain=$(bench_free_port)
    sed -e "s/127\.0\.0\.1:8080/$NODE_ADDR/" -e "s/127\.0\.0\.1:3000/127.0.0.1:$app/" \
      -e "s/listen 80;/listen 127.0.0.1:$guarded;/" "$CONF" >"$tmp/nginx/guarded.conf"
    # The same file without upstream keep-alive, under other upstream names.
    sed -e '/keepalive/d' -e '/proxy_http_version/d' -e '/proxy_set_header Connection ""/d' \
      -e 's/upstream gatehouse_app /upstream nk_app /; s/upstream gatehouse /upstream nk_gatehouse /' \
      -e 's|http://gatehouse_app|http://nk_app|; s|http://gatehouse\([/;]\)|http://nk_gatehouse\1|' \
      "$tmp/nginx/guarded.conf" | sed -e "s/listen 127\.0\.0\.1:$guarded;/listen 127.0.0.1:$nk;/" \
      >"$tmp/nginx/nokeepalive.conf"
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
  include $tmp/nginx/guarded.conf;
  include $tmp/nginx/nokeepalive.conf;
  server {
    listen 127.0.0.1:$app;
    location / { default_type text/plain; return 200 "app: user=[\$http_x_auth_user]\n"; }
  }
  server {
    listen 127.0.0.1:$plain;
    location / {
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_pass http://gatehouse_app;
    }
  }
}
EOF
    "$NGINX" -p "$tmp/nginx" -e "$tmp/nginx/logs/error.log" -c "$tmp/nginx/nginx.conf" &
    NGINX_PID=$!
    for _ in $(seq 1 100); do
      if curl -sf -o /dev/null --noproxy '*' "http://127.0.0.1:$plain/"; then
        GUARDED="http://127.0.0.1:$guarded" NOKA="http://127.0.0.1:$nk" PLAIN="http://127.0.0.1:$plain"
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

user='{"username":"bench-proxy","password":"bench-proxy-password-1"}'
curl -sf --noproxy '*' -o /dev/null -X POST "$GUARDED/v1/users" -H 'Content-Type: application/json' \
  -d "$user" || fail "cannot register through nginx"
token=$(curl -sf --noproxy '*' -X POST "$GUARDED/v1/sessions" -H 'Content-Type: application/json' \
  -d "$user" | sed -nE 's/.*"token":"(gh_[^"]+)".*/\1/p')
[ -n "$token" ] || fail "cannot log in through nginx"
cookie="Cookie: gatehouse_session=$token"
# The guarded page is the app's answer to this user (not a redirect to the login page).
curl -sf --noproxy '*' -H "$cookie" "$GUARDED/app/page" | grep -q 'user=\[bench-proxy\]' ||
  fail "the guarded page is not the app's answer to the signed-in user"

declare -A url=([guarded]="$GUARDED/app/page" [noka]="$NOKA/app/page" [plain]="$PLAIN/app/page")
declare -A label=([guarded]="guarded (shipped config)" [noka]="guarded, no upstream keep-alive"
  [plain]="plain proxy, no auth")
order=(plain guarded noka)
declare -A rps=() p99=()

run() { # NAME SECONDS OUT
  wrk -t"$THREADS" -c"$CONNS" -d"$2s" --latency -H "$cookie" "${url[$1]}" >"$3" 2>&1 ||
    fail "wrk failed: $(cat "$3")"
  if grep -qE 'Non-2xx|Socket errors' "$3"; then
    fail "$1: failed requests: $(grep -E 'Non-2xx|Socket errors' "$3" | tr '\n' ' ')"
  fi
}

for name in "${order[@]}"; do run "$name" 1 "$tmp/warmup.txt"; done
for round in $(seq 1 "$ROUNDS"); do
  for name in "${order[@]}"; do
    out="$tmp/$name.$round.txt"
    run "$name" "$SECS" "$out"
    r=$(wrk_rps "$out") b=$(wrk_p 99% "$out")
    printf 'round %d  %-34s %9.0f pages/s  p99 %7.3f ms\n' "$round" "${label[$name]}" "$r" "$b"
    rps[$name]+="$r " p99[$name]+="$b "
  done
done

med() { tr ' ' '\n' <<<"$1" | grep . | median; }
plain=$(med "${rps[plain]}")
for name in "${order[@]}"; do
  awk -v m="$(med "${rps[$name]}")" -v p="$plain" -v b="$(med "${p99[$name]}")" \
    -v l="${label[$name]} (median)" 'BEGIN {
      printf "proxy  %-43s %9.0f pages/s  p99 %7.3f ms  ratio %.2f of plain\n", l, m, b, m / p
    }'
done
echo "proxy  (an auth subrequest roughly doubles nginx's work per page: about 0.50 is the ceiling)"
