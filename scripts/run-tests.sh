#!/usr/bin/env bash
# The test gate: `scripts/run-tests.sh [STAGE...]` (default: all) runs stages in order and prints
# one line per stage ("name  N passed  N failed  seconds"); a failing stage's full log follows its
# line; the last line is "N passed, N failed" over every test and check of every stage. Exit
# status 0 only when nothing failed. Logs: build/test-logs/STAGE.log (and STAGE/ per binary).
#
# Stages (docs/CONTRIBUTING.md says what each one proves and how to read it):
#   build unit integration fuzz-regressions check-alloc lint asan tsan oom fuzz promtool valgrind
#   planted-leak soak
# Environment: FUZZ_SECONDS (per fuzz target, default 15), JOBS (parallel build jobs, default:
# cores), MAKE. Each stage builds what it needs, so any one can run alone.
set -u
cd "$(dirname "$0")/.."

ALL_STAGES=(build unit integration fuzz-regressions check-alloc lint asan tsan oom fuzz promtool
            valgrind planted-leak soak)
MAKE=${MAKE:-make}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
LOGS=build/test-logs
FUZZ_TARGETS=$(find tests/fuzz -maxdepth 1 -name 'fuzz_*.c' | sed 's|.*/fuzz_||; s|\.c$||' | sort)

# Sanitizer settings for everything this script starts (the harness passes them on to servers).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1}
# What the sanitizers and valgrind print when something is wrong.
REPORT_RE='ERROR: AddressSanitizer|WARNING: ThreadSanitizer|ERROR: LeakSanitizer|runtime error:|ERROR SUMMARY: [1-9]|blocks are (definitely|indirectly) lost'

# ---- stage bookkeeping ----
total_passed=0 total_failed=0 failed_stages=()
SP=0 SF=0 SNOTE="" STAGE_DIR=""

pass() { SP=$((SP + ${1:-1})); }
fail() { SF=$((SF + ${1:-1})); }

mk() { # make with the gate's parallelism; output goes to the stage log
  "$MAKE" --no-print-directory -j"$JOBS" "$@"
}

build_or_fail() { # make ARGS...: a failed build fails the stage and counts once
  if mk "$@"; then return 0; fi
  echo "build failed: make $*"
  fail
  return 1
}

run_stage() {
  local name=$1 log="$LOGS/$1.log" t0 rc dt
  STAGE_DIR="$LOGS/$name"
  rm -rf "$STAGE_DIR"
  mkdir -p "$STAGE_DIR"
  SP=0 SF=0 SNOTE=""
  t0=$(date +%s)
  "stage_${name//-/_}" >"$log" 2>&1
  rc=$?
  if [ "$rc" -ne 0 ] && [ "$SF" -eq 0 ]; then SF=1; fi
  dt=$(($(date +%s) - t0))
  total_passed=$((total_passed + SP))
  total_failed=$((total_failed + SF))
  printf '%-17s %5d passed %4d failed %5ds%s\n' "$name" "$SP" "$SF" "$dt" "${SNOTE:+  ($SNOTE)}"
  if [ "$SF" -gt 0 ]; then
    failed_stages+=("$name")
    echo "---- $name: full log ($log) ----"
    cat "$log"
    echo "---- end of $name ----"
  fi
}

# ---- test binaries ----

# count NAME RC LOG: adds a cmocka binary's results to the stage. A failed test is named on a
# "[  FAILED  ] name" line (and again in the summary) or, when its setup or teardown failed
# (the harness fails a teardown whose server log had a sanitizer report), "[  ERROR   ] name".
count() { # NAME RC LOG [SECONDS]
  local name=$1 rc=$2 log=$3 secs=${4:-} ok bad report=""
  ok=$(grep -cE '^\[       OK \]' "$log")
  bad=$( { grep -E '^\[  FAILED  \] [A-Za-z0-9_]+$' "$log"; grep -E '^\[  ERROR   \] [A-Za-z0-9_]+$' "$log"; } \
         | sed 's/^\[[^]]*\] //' | sort -u | wc -l)
  # A report that slipped past every test (printed at exit, in the test binary itself) still fails.
  if grep -qE "$REPORT_RE" "$log"; then report=" (sanitizer/valgrind report)"; fi
  if { [ "$rc" -ne 0 ] || [ -n "$report" ]; } && [ "$bad" -eq 0 ]; then bad=1; fi
  pass "$ok"
  fail "$bad"
  printf '%-55s %4d passed %3d failed%s%s\n' "$name" "$ok" "$bad" "${secs:+ ${secs}s}" "$report"
  if [ "$bad" -ne 0 ]; then
    echo "---- $name (exit $rc): $log ----"
    cat "$log"
    echo "---- end of $name ----"
  fi
}

# suite BUILD DIR...: runs every test_* binary under the dirs. EXCLUDE (a regex on the path)
# skips some; WRAP (a command prefix, e.g. valgrind) runs each under it; TEST_TIMEOUT (s).
suite() {
  local build=$1 bin name log t0
  shift
  for bin in $(find "$@" -type f -name 'test_*' -perm -u+x 2>/dev/null | sort); do
    if [ -n "${EXCLUDE:-}" ] && [[ $bin =~ $EXCLUDE ]]; then continue; fi
    name=${bin#"$build/"}
    log="$STAGE_DIR/$(echo "$name" | tr '/' '_').log"
    t0=$SECONDS
    # shellcheck disable=SC2086 # WRAP is a command line
    GATEHOUSE_BIN=${GATEHOUSE_BIN:-$build/gatehouse} timeout "${TEST_TIMEOUT:-600}" \
      ${WRAP:-} "$bin" >"$log" 2>&1
    count "$name" $? "$log" $((SECONDS - t0))
  done
}

# replays BUILD: each fuzz target's seed corpus and regression inputs, once each.
replays() {
  local build=$1 t log rc
  for t in $FUZZ_TARGETS; do
    log="$STAGE_DIR/replay_$t.log"
    timeout 300 "$build/tests/fuzz/fuzz_$t" "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t" \
      >"$log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ] && ! grep -qE "$REPORT_RE" "$log"; then
      pass
      printf '%-55s %s\n' "fuzz replay $t" "$(tail -n 1 "$log")"
    else
      fail
      echo "---- fuzz replay $t (exit $rc): $log ----"
      cat "$log"
      echo "---- end ----"
    fi
  done
}

check() { # NAME CMD...: a repository check; pass or fail by exit status
  local name=$1 log
  shift
  log="$STAGE_DIR/$(echo "$name" | tr '/ ' '__').log"
  if "$@" >"$log" 2>&1; then
    pass
    printf '%-55s ok\n' "$name"
  else
    fail
    echo "---- $name: $log ----"
    cat "$log"
    echo "---- end of $name ----"
  fi
}

# ---- stages ----

stage_build() {
  build_or_fail all test-unit test-integration fuzz-targets && pass
}

# test_oom runs in the oom stage (plain and ASan), not twice more here.
OOM_RE='/test_oom$'

stage_unit() {
  build_or_fail all test-unit || return
  EXCLUDE=$OOM_RE suite build build/tests/unit
}

stage_integration() {
  build_or_fail all test-integration || return
  suite build build/tests/integration
}

stage_fuzz_regressions() {
  build_or_fail fuzz-targets || return
  replays build
}

stage_check_alloc() {
  check "check-alloc" bash scripts/check-alloc.sh
}

stage_lint() {
  local line
  MAKE="$MAKE" JOBS="$JOBS" bash scripts/lint.sh >"$STAGE_DIR/lint.out" 2>&1
  cat "$STAGE_DIR/lint.out"
  # scripts/lint.sh prints "lint: NAME ok" or "lint: NAME FAILED" per check.
  while read -r line; do
    case $line in
      "lint: "*" ok") pass ;;
      "lint: "*" FAILED") fail ;;
    esac
  done <"$STAGE_DIR/lint.out"
}

stage_asan() {
  build_or_fail SANITIZER=address all test-unit test-integration fuzz-targets || return
  EXCLUDE=$OOM_RE GATEHOUSE_BIN=build-address/gatehouse suite build-address \
    build-address/tests/unit build-address/tests/integration
  replays build-address
}

# The heap profiler's tables and read-outs from threads under ThreadSanitizer (TSan owns malloc,
# so the interposer stands aside and the test drives the tables directly).
stage_tsan() {
  # The code that threads share by design: the heap profiler's tables, the OpenID key set
  # (signers while the janitor rotates and refreshes) and the grant store (two threads at once).
  local t tests=(mem/test_heap_profile account/test_oidc_keys store/test_grant_memory)
  build_or_fail SANITIZER=thread "${tests[@]/#/build-thread/tests/unit/}" || return
  for t in "${tests[@]}"; do suite build-thread "build-thread/tests/unit/$t"; done
}

stage_oom() {
  build_or_fail build/tests/unit/api/test_oom || return
  build_or_fail SANITIZER=address build-address/tests/unit/api/test_oom || return
  suite build build/tests/unit/api/test_oom
  suite build-address build-address/tests/unit/api/test_oom
}

stage_fuzz() {
  local secs=${FUZZ_SECONDS:-15} t running=0 rc log
  build_or_fail SANITIZER=fuzzer fuzz-targets || return
  mkdir -p build-fuzzer/corpus build-fuzzer/crashes
  # Two targets at a time on two cores; each writes what it learns to its own scratch corpus
  # (the checked-in seeds stay as they are) and a crash to build-fuzzer/crashes/.
  for t in $FUZZ_TARGETS; do
    mkdir -p "build-fuzzer/corpus/$t"
    ( "build-fuzzer/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="build-fuzzer/crashes/$t-" \
        "build-fuzzer/corpus/$t" "tests/fuzz/corpus/$t" >"$STAGE_DIR/fuzz_$t.log" 2>&1
      echo $? >"$STAGE_DIR/fuzz_$t.rc" ) &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
  done
  wait
  for t in $FUZZ_TARGETS; do
    log="$STAGE_DIR/fuzz_$t.log"
    rc=$(cat "$STAGE_DIR/fuzz_$t.rc" 2>/dev/null || echo 1)
    if [ "$rc" -eq 0 ]; then
      pass
      printf '%-20s %s\n' "fuzz $t" "$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') runs in ${secs}s, corpus $(find "build-fuzzer/corpus/$t" -type f | wc -l) files"
    else
      fail
      echo "---- fuzz $t (exit $rc): $log ----"
      cat "$log"
      echo "---- end ----"
      echo "To keep this input as a regression test (replayed by every \`make test\`):"
      echo "  mkdir -p tests/fuzz/regressions/$t && cp build-fuzzer/crashes/$t-* tests/fuzz/regressions/$t/"
    fi
  done
}

stage_promtool() {
  build_or_fail all || return
  check "promtool" bash scripts/check-promtool.sh build/gatehouse
}

stage_valgrind() {
  build_or_fail all test-unit test-integration || return
  local wrapper="build/valgrind/gatehouse"
  bash scripts/valgrind-wrap.sh build/gatehouse "$wrapper" || { fail; return; }
  # The unit suite, less three tests whose time under valgrind goes into arithmetic, not into
  # allocations: the OOM sweep (thousands of requests; its allocation paths are what the oom
  # stage checks under ASan), the watchdog's (hours of simulated samples through the trend
  # arithmetic: 9 s natively, over two minutes here) and the OpenID key tests (test_jwt,
  # test_oidc_keys: RSA-2048 key generation, a few milliseconds natively and minutes per key
  # under valgrind) — the asan stage runs all three, and tsan the key set's. Then a short
  # integration run of the real server under valgrind: test_lifecycle logs in some 25000 times,
  # expires, evicts and revokes sessions (its first start makes the OpenID keys, about 20 s here).
  local skip="$OOM_RE|/unit/watch/test_watchdog\$|/unit/auth/test_jwt\$|/unit/account/test_oidc_keys\$"
  WRAP="valgrind $(bash scripts/valgrind-flags.sh) --suppressions=tests/valgrind.supp" \
    EXCLUDE="$skip" TEST_TIMEOUT=900 suite build build/tests/unit
  GATEHOUSE_BIN=$wrapper GATEHOUSE_TEST_TIMEOUT_SCALE=10 TEST_TIMEOUT=900 \
    suite build build/tests/integration/test_lifecycle
}

stage_planted_leak() {
  MAKE="$MAKE" JOBS="$JOBS" bash scripts/planted-leak.sh >"$STAGE_DIR/planted-leak.out" 2>&1
  local rc=$? line
  cat "$STAGE_DIR/planted-leak.out"
  while read -r line; do
    case $line in
      "planted-leak: "*" ok") pass ;;
      "planted-leak: "*" FAILED") fail ;;
    esac
  done <"$STAGE_DIR/planted-leak.out"
  return $rc
}

stage_soak() {
  bash scripts/soak.sh >"$STAGE_DIR/soak.out" 2>&1
  local rc=$?
  cat "$STAGE_DIR/soak.out"
  if [ "$rc" -eq 0 ]; then
    if grep -q '^soak: skipped' "$STAGE_DIR/soak.out"; then
      SNOTE=$(grep -m1 '^soak: skipped' "$STAGE_DIR/soak.out" | sed 's/^soak: //')
    else
      pass
    fi
  fi
  return $rc
}

# ---- main ----
stages=("$@")
if [ ${#stages[@]} -eq 0 ] || [ "${stages[0]}" = all ]; then stages=("${ALL_STAGES[@]}"); fi
mkdir -p "$LOGS"
for s in "${stages[@]}"; do
  if ! declare -F "stage_${s//-/_}" >/dev/null; then
    echo "run-tests: unknown stage '$s' (stages: ${ALL_STAGES[*]})" >&2
    exit 2
  fi
done
t_start=$(date +%s)
for s in "${stages[@]}"; do
  run_stage "$s"
  # Nothing else can run on a tree that does not build.
  if [ "$s" = build ] && [ "$SF" -gt 0 ]; then break; fi
done
[ ${#failed_stages[@]} -gt 0 ] && echo "failed stages: ${failed_stages[*]}"
echo "total time $(($(date +%s) - t_start))s"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
