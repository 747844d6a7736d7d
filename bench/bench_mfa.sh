#!/usr/bin/env bash
# make bench-mfa: what the second factor adds to a login. A node at the default serve settings
# (argon2id at its default cost); USERS users without a factor and USERS with a confirmed TOTP
# factor (codes from oathtool). Then, interleaved, for each pair: a one-step login (POST
# /v1/sessions → 201) and a two-step login (POST /v1/sessions → 202, then POST /v1/sessions/mfa
# with the current code → 201), each timed end to end by curl, one at a time. Prints the medians
# of the one-step login, of each step and of the whole two-step login, and the server's own
# request durations (its log) of the second step. Each user's code is used once (a code is
# accepted once per 30-second step, hence one user per two-step login).
#
# Usage: bench/bench_mfa.sh [BUILD_DIR]. Environment: BENCH_MFA_USERS (default 20).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${1:-build}
BIN=$BUILD/gatehouse
USERS=${BENCH_MFA_USERS:-20}
. bench/bench_lib.sh

fail() { echo "bench-mfa: $*" >&2; exit 1; }
command -v oathtool >/dev/null || fail "oathtool is not installed (make deps)"
[ -x "$BIN" ] || fail "$BIN is not built"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gh-bench-mfa-XXXXXX") || exit 1
NODE_PID=""
trap 'node_down "$NODE_PID"; rm -rf "$tmp"' EXIT

bench_machine bench-mfa
bench_quiet_check bench-mfa
node_up NODE "$BIN" "$tmp/node" --throttle-ip 0 || fail "gatehouse serve did not start"
J='Content-Type: application/json'
PW=bench-mfa-password-1
post() { curl -s --noproxy '*' -X POST "$NODE_URL$1" -H "$J" "${@:3}" -d "$2"; }
field() { sed -E "s/.*\"$1\":\"?([^\",}]+).*/\\1/"; }
for i in $(seq 1 "$USERS"); do
  post /v1/users "{\"username\":\"one$i\",\"password\":\"$PW\"}" >/dev/null
  post /v1/users "{\"username\":\"two$i\",\"password\":\"$PW\"}" >/dev/null
  tok=$(post /v1/sessions "{\"username\":\"two$i\",\"password\":\"$PW\"}" | field token)
  en=$(post /v1/factors/totp "{\"current_password\":\"$PW\"}" -H "Authorization: Bearer $tok")
  secret=$(echo "$en" | field secret)
  id=$(echo "$en" | field id)
  echo "$secret" >"$tmp/secret$i"
  post "/v1/factors/totp/$id/confirm" "{\"code\":\"$(oathtool --totp -b "$secret")\"}" \
    -H "Authorization: Bearer $tok" | grep -q recovery_codes || fail "cannot enrol two$i"
done
# the confirming codes are spent: wait for the next 30-second step before logging in
sleep $((30 - $(date +%s) % 30 + 1))
echo "bench-mfa: $USERS one-step and $USERS two-step logins, interleaved, one at a time"
t() { curl -s --noproxy '*' -o "$tmp/body" -w '%{time_total}\n' -X POST "$NODE_URL$1" -H "$J" -d "$2"; }
for i in $(seq 1 "$USERS"); do
  t /v1/sessions "{\"username\":\"one$i\",\"password\":\"$PW\"}" >>"$tmp/one"
  t /v1/sessions "{\"username\":\"two$i\",\"password\":\"$PW\"}" >>"$tmp/first"
  pending=$(field pending <"$tmp/body")
  code=$(oathtool --totp -b "$(cat "$tmp/secret$i")")
  t /v1/sessions/mfa "{\"pending\":\"$pending\",\"method\":\"totp\",\"code\":\"$code\"}" >>"$tmp/second"
  grep -q '"token"' "$tmp/body" || fail "a two-step login failed: $(cat "$tmp/body")"
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.2f", m * 1000}'; }
paste "$tmp/first" "$tmp/second" | awk '{print $1 + $2}' >"$tmp/two"
server=$(grep '"route":"/v1/sessions/mfa"' "$tmp/node.log" | sed -E 's/.*"duration_ms":([0-9.]+).*/\1/' |
  sort -n | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]}')
echo "bench-mfa: one-step login median $(median "$tmp/one") ms"
echo "bench-mfa: two-step login median $(median "$tmp/two") ms (password step $(median "$tmp/first") ms + second step $(median "$tmp/second") ms end to end; the second step's server time median $server ms)"
