#!/usr/bin/env bash
# make bench-oidc: the OpenID provider's token endpoint against login throughput, measured in the
# same run on the same node. A node with the default serve settings (argon2id at its default
# cost; only --throttle-ip 0, as bench_login.sh); a confidential client registered with
# `gatehouse client add` (client_secret_basic on every token request). Interleaved rounds of
# SECONDS each, wrk -t1 -cCONNS (bench_login.sh's concurrency):
#   logins                POST /v1/sessions, right password (bench/login_ok.lua): 201s per second
#   refresh_token grants  POST /oidc/token over a pool of 16 live families; every answer's new
#                         refresh token goes back to the pool (bench/oidc_token.lua refresh)
#   authorizations        GET /oidc/authorize with a session cookie, PKCE S256, no consent
#                         (first-party client): 302s with a code per second; the codes are kept
#   code exchanges        POST /oidc/token grant_type=authorization_code, each kept code once
#                         (bench/oidc_token.lua code), within the codes' 60 s
# Prints each round, then the medians and each token-endpoint rate as a multiple of the login
# rate. Each exchange and each refresh signs an ID token (RS256 unless the node's key says
# otherwise) and writes a family; a login costs an argon2id verification. All families belong to
# one user, so past --max-oidc-families-per-user (100) each exchange also revokes that user's
# oldest family: the bound's work is in the figure.
#
# Usage: bench/bench_oidc.sh [BUILD_DIR]. Environment: BENCH_OIDC_SECONDS (per run, default 5),
# BENCH_ROUNDS (3), BENCH_OIDC_CONNECTIONS (8). Exits non-zero only when it cannot run.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${1:-build}
BIN=$BUILD/gatehouse
SECS=${BENCH_OIDC_SECONDS:-5} ROUNDS=${BENCH_ROUNDS:-3} CONNS=${BENCH_OIDC_CONNECTIONS:-8}
POOL=16
REDIRECT=http://127.0.0.1:9/callback # never contacted: the code is read from the 302
. bench/bench_lib.sh

fail() { echo "bench-oidc: $*" >&2; exit 1; }
command -v wrk >/dev/null || fail "wrk is not installed (make deps)"
command -v openssl >/dev/null || fail "openssl is not installed"
[ -x "$BIN" ] || fail "$BIN is not built"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gh-bench-oidc-XXXXXX") || exit 1
NODE_PID=""
trap 'node_down "$NODE_PID"; [ -n "${BENCH_KEEP:-}" ] || rm -rf "$tmp"' EXIT

bench_machine bench-oidc
bench_quiet_check bench-oidc
node_up NODE "$BIN" "$tmp/node" --throttle-ip 0 || fail "gatehouse serve did not start"
C=(--noproxy '*' -s)
post_json() { curl "${C[@]}" -X POST "$NODE_URL$1" -H 'Content-Type: application/json' -d "$2"; }
field() { sed -nE "s/.*\"$1\" *: *\"([^\"]+)\".*/\\1/p"; }
pw=bench-oidc-password-1
# one login user per round: the account throttle's state (attempts in flight count as failures
# to be) must not carry from one round's end into the next
for round in $(seq 1 "$ROUNDS"); do
  post_json /v1/users "{\"username\":\"bench-login-$round\",\"password\":\"$pw\"}" >/dev/null
done
post_json /v1/users "{\"username\":\"bench-rp\",\"password\":\"$pw\"}" >/dev/null
cookie=$(post_json /v1/sessions "{\"username\":\"bench-rp\",\"password\":\"$pw\"}" | field token)
[ -n "$cookie" ] || fail "cannot log in"

client=$("$BIN" client add bench --redirect-uri "$REDIRECT" --data-dir "$tmp/node" 2>"$tmp/client.err") ||
  fail "gatehouse client add failed: $(cat "$tmp/client.err")"
cid=$(field client_id <<<"$client") secret=$(field client_secret <<<"$client")
{ [ -n "$cid" ] && [ -n "$secret" ]; } || fail "gatehouse client add printed: $client"
basic=$(printf '%s:%s' "$cid" "$secret" | base64 -w0)
verifier=$(openssl rand -hex 32)
challenge=$(printf '%s' "$verifier" | openssl dgst -sha256 -binary | base64 -w0 | tr '+/' '-_' | tr -d '=')
redirect_enc=$(sed 's/:/%3A/g; s|/|%2F|g' <<<"$REDIRECT")
query="response_type=code&client_id=$cid&redirect_uri=$redirect_enc&scope=openid%20profile%20email"
query+="&state=bench&nonce=bench&code_challenge=$challenge&code_challenge_method=S256"

# one code flow by hand: the refresh token it ends with (and a check that the flow works at all)
flow() {
  local loc code
  loc=$(curl "${C[@]}" -o /dev/null -w '%{redirect_url}' -H "Cookie: gatehouse_session=$cookie" \
    "$NODE_URL/oidc/authorize?$query")
  code=$(sed -nE 's/.*[?&]code=([^&]+).*/\1/p' <<<"$loc")
  [ -n "$code" ] || { echo "authorize did not redirect with a code: '$loc'" >&2; return 1; }
  curl "${C[@]}" -X POST "$NODE_URL/oidc/token" -H "Authorization: Basic $basic" \
    --data "grant_type=authorization_code&code=$code&redirect_uri=$redirect_enc&code_verifier=$verifier" \
    -o "$tmp/flow.json"
  echo >>"$tmp/flow.json" # the body has no newline, and sed keeps a last line's missing one
  field refresh_token <"$tmp/flow.json"
}
pool() {
  : >"$tmp/pool"
  for _ in $(seq 1 "$POOL"); do flow >>"$tmp/pool" || return 1; done
  [ "$(grep -c . "$tmp/pool")" -eq "$POOL" ] || { echo "no refresh token in: $(cat "$tmp/flow.json")" >&2; return 1; }
}
pool || fail "the code flow does not work on this build"
alg=$(curl "${C[@]}" "$NODE_URL/oidc/jwks" | sed -nE 's/.*"alg" *: *"([^"]+)".*/\1/p' | head -1)
workers=$(sed -n 's/.*"hash_workers":\([0-9]*\).*/\1/p' "$tmp/node.log" | head -1)
echo "bench-oidc: node hash workers ${workers:-?}, ID tokens ${alg:-?}, wrk -t1 -c$CONNS, $SECS s per run, $ROUNDS rounds"

# run_wrk LABEL OK_STATUS URL SCRIPT ARGS...: prints the rate of OK_STATUS answers per second
run_wrk() {
  local label=$1 want=$2 url=$3 script=$4 statuses ok elapsed
  shift 4
  wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$script" "$url" -- "$@" >"$tmp/wrk.txt" 2>&1 ||
    fail "wrk ($label) failed: $(cat "$tmp/wrk.txt")"
  statuses=$(sed -nE 's/^(login|oidc) statuses: //p' "$tmp/wrk.txt")
  ok=$(tr ' ' '\n' <<<"$statuses" | sed -n "s/^$want=//p")
  elapsed=$(sed -nE 's/.* requests in ([0-9.]+)s,.*/\1/p' "$tmp/wrk.txt")
  { [ -n "$ok" ] && [ -n "$elapsed" ]; } || fail "no $label answered $want: $(cat "$tmp/wrk.txt")"
  awk -v n="$ok" -v s="$elapsed" 'BEGIN { printf "%.2f", n / s }'
  printf '  %s: statuses %s, p50 %s ms, p99 %s ms\n' "$label" "$statuses" \
    "$(wrk_p 50% "$tmp/wrk.txt")" "$(wrk_p 99% "$tmp/wrk.txt")" >>"$tmp/details"
}

logins=() refreshes=() authorizes=() exchanges=()
for round in $(seq 1 "$ROUNDS"); do
  : >"$tmp/details"
  l=$(run_wrk logins 201 "$NODE_URL/v1/sessions" bench/login_ok.lua "bench-login-$round" "$pw") || exit 1
  [ "$round" -eq 1 ] || pool || fail "cannot refill the refresh-token pool"
  r=$(run_wrk refresh 200 "$NODE_URL/oidc/token" bench/oidc_token.lua refresh "$basic" "$tmp/pool") || exit 1
  rm -f "$tmp/codes"
  a=$(run_wrk authorize 302 "$NODE_URL/oidc/authorize" bench/oidc_token.lua authorize \
    "$cookie" "$query" "$tmp/codes") || exit 1
  [ -s "$tmp/codes" ] || fail "no code was kept from the authorizations"
  e=$(run_wrk exchange 200 "$NODE_URL/oidc/token" bench/oidc_token.lua code "$basic" \
    "$redirect_enc" "$verifier" "$tmp/codes") || exit 1
  printf 'round %d  logins %8.2f /s  refresh_token grants %8.2f /s  authorizations %8.2f /s  code exchanges %8.2f /s\n' \
    "$round" "$l" "$r" "$a" "$e"
  cat "$tmp/details"
  logins+=("$l") refreshes+=("$r") authorizes+=("$a") exchanges+=("$e")
done

l=$(printf '%s\n' "${logins[@]}" | median)
r=$(printf '%s\n' "${refreshes[@]}" | median)
a=$(printf '%s\n' "${authorizes[@]}" | median)
e=$(printf '%s\n' "${exchanges[@]}" | median)
awk -v l="$l" -v r="$r" -v a="$a" -v e="$e" 'BEGIN {
  printf "oidc     token endpoint against logins (medians): refresh_token grants %.2f /s = %.1f x logins, authorization_code exchanges %.2f /s = %.1f x logins (logins %.2f /s; authorizations %.2f /s)\n",
    r, r / l, e, e / l, l, a
}'
