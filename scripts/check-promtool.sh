#!/usr/bin/env bash
# The promtool checks of the leak gate: starts the real server (BIN, default build/gatehouse) on a
# free loopback port, has it serve a few requests, and runs `promtool check metrics` on its
# /metrics page (the exposition format and the metric naming rules), then checks the shipped
# Prometheus alert rules (YAML under deploy/ with a top-level `groups:`: `promtool check rules`)
# and their unit tests (top-level `rule_files:`: `promtool test rules`, run from the test file's
# directory so its relative rule_files resolve) when they exist.
set -u
cd "$(dirname "$0")/.."
BIN=${1:-build/gatehouse}
command -v promtool >/dev/null || { echo "promtool is missing (scripts/deps.sh installs it)"; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/gh-promtool-XXXXXX")
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  rm -rf "$dir"
}
trap cleanup EXIT
"$BIN" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --hash-memory 8KiB --hash-ops 1 \
  --log-format json 2>"$dir/server.log" &
pid=$!
addr=""
for _ in $(seq 100); do
  addr=$(grep -o '"msg":"listening"[^}]*' "$dir/server.log" | grep -o '"addr":"[^"]*"' | head -1 | cut -d'"' -f4)
  [ -n "$addr" ] && break
  sleep 0.1
done
if [ -z "$addr" ]; then
  echo "the server did not start:"; cat "$dir/server.log"; exit 1
fi
status=0
# Some traffic first, so counters and histograms have series to show.
curl -s -o /dev/null "http://$addr/healthz"
curl -s -o /dev/null -H 'Content-Type: application/json' \
  -d '{"username":"promtool","password":"correct horse battery"}' "http://$addr/v1/users"
curl -s -o /dev/null -H 'Content-Type: application/json' \
  -d '{"username":"promtool","password":"correct horse battery"}' "http://$addr/v1/sessions"
curl -s -o /dev/null "http://$addr/v1/auth"
if ! curl -sf -o "$dir/metrics.txt" "http://$addr/metrics"; then
  echo "GET /metrics failed"; status=1
elif ! promtool check metrics <"$dir/metrics.txt" >"$dir/promtool.out" 2>&1; then
  echo "promtool check metrics found problems in /metrics:"; cat "$dir/promtool.out"; status=1
else
  echo "promtool check metrics: /metrics of a live server is clean ($(grep -vc '^#' "$dir/metrics.txt") samples)"
fi
# Rule files and rule tests are found by what they hold, not by name: a Prometheus rule file has
# a top-level "groups:", a promtool rule test a top-level "rule_files:".
yamls=$(find deploy \( -name '*.yml' -o -name '*.yaml' \) 2>/dev/null | sort)
rules=$(for f in $yamls; do grep -q '^groups:' "$f" && echo "$f"; done)
tests=$(for f in $yamls; do grep -q '^rule_files:' "$f" && echo "$f"; done)
if [ -n "$rules" ]; then
  # shellcheck disable=SC2086
  promtool check rules $rules || status=1
else
  echo "promtool check rules: no rule files under deploy/ yet"
fi
if [ -n "$tests" ]; then
  for t in $tests; do
    (cd "$(dirname "$t")" && promtool test rules "$(basename "$t")") || status=1
  done
else
  echo "promtool test rules: no rule tests under deploy/ yet"
fi
exit $status
