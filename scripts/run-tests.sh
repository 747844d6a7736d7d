#!/usr/bin/env bash
# Runs every test binary (cmocka) plus the repository checks, and ends with one line
# "N passed, N failed". Output of each binary goes to BUILD/test-logs/ and is shown on failure.
set -u
BUILD=${1:-build}
cd "$(dirname "$0")/.."
logs="$BUILD/test-logs"
mkdir -p "$logs"
passed=0 failed=0 failures=()

count() { # name, rc, logfile
  local name=$1 rc=$2 log=$3 ok bad
  ok=$(grep -cE '^\[       OK \]' "$log")
  # cmocka names a failed test on a "[  FAILED  ] name" line, then again in the summary list.
  bad=$(grep -E '^\[  FAILED  \] ' "$log" | grep -v 'test(s)' | sort -u | wc -l)
  if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
  passed=$((passed + ok)); failed=$((failed + bad))
  if [ "$bad" -ne 0 ]; then
    failures+=("$name")
    echo "---- $name (exit $rc) ----"; tail -n 60 "$log"
  fi
  printf '%-55s %4d passed %3d failed\n' "$name" "$ok" "$bad"
}

check() { # a repository check that prints one line; pass/fail by exit status
  local name=$1; shift
  local log="$logs/$(echo "$name" | tr '/ ' '__').log"
  if "$@" >"$log" 2>&1; then passed=$((passed + 1)); printf '%-55s %4d passed %3d failed\n' "$name" 1 0
  else failed=$((failed + 1)); failures+=("$name"); echo "---- $name ----"; cat "$log"; fi
}

check "check-alloc" bash scripts/check-alloc.sh

for bin in $(find "$BUILD/tests/unit" "$BUILD/tests/integration" -type f -name 'test_*' -perm -u+x 2>/dev/null | sort); do
  name=${bin#"$BUILD/"}
  log="$logs/$(echo "$name" | tr '/' '_').log"
  GATEHOUSE_BIN=${GATEHOUSE_BIN:-$BUILD/gatehouse} timeout 600 "$bin" >"$log" 2>&1
  count "$name" $? "$log"
done

[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
