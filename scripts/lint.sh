#!/usr/bin/env bash
# `make lint`: the code must build without a warning under gcc and clang (-Wall -Wextra -Werror,
# each compiler finds what the other misses), be formatted as .clang-format says, and pass
# cppcheck with the checked-in settings (.cppcheck-suppressions; options below), and keep the
# dependency rule (scripts/check-layers.py). Prints
# "lint: NAME ok" or "lint: NAME FAILED" (with the findings) per check; exit 1 on any failure.
# Fix formatting with `make format`.
set -u
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
OUT=build/test-logs/lint
mkdir -p "$OUT"
failed=0

result() { # name, status, log
  if [ "$2" -eq 0 ]; then
    echo "lint: $1 ok"
  else
    echo "lint: $1 FAILED"
    cat "$3"
    failed=1
  fi
}

SOURCES=$(find src tests bench -name '*.[ch]' | sort)
BENCH_BINS=$(find bench -name 'bench_*.c' | sed 's|^bench/||; s|\.c$||')

# 1. -Werror builds: every library, binary, test, fuzz target and benchmark.
targets() { # build dir
  echo all test-unit test-integration fuzz-targets
  for b in $BENCH_BINS; do echo "$1/bench/$b"; done
}
# shellcheck disable=SC2046
"$MAKE" --no-print-directory -j"$JOBS" $(targets build) >"$OUT/gcc.log" 2>&1
result "gcc -Werror" $? "$OUT/gcc.log"
if command -v clang >/dev/null; then
  # shellcheck disable=SC2046
  "$MAKE" --no-print-directory -j"$JOBS" CC=clang VARIANT=clang $(targets build-clang) \
    >"$OUT/clang.log" 2>&1
  result "clang -Werror" $? "$OUT/clang.log"
else
  echo "clang is missing (scripts/deps.sh installs it)" >"$OUT/clang.log"
  result "clang -Werror" 1 "$OUT/clang.log"
fi

# 2. Formatting: clang-format's verdict on every C file, against the checked-in .clang-format.
# shellcheck disable=SC2086
clang-format --dry-run --Werror $SOURCES >"$OUT/format.log" 2>&1
st=$?
[ "$st" -ne 0 ] && echo "(run \`make format\` to apply .clang-format)" >>"$OUT/format.log"
result "clang-format" $st "$OUT/format.log"

# 3. cppcheck: warnings, portability and performance findings (style is left to review).
# shellcheck disable=SC2086
cppcheck --quiet --std=c11 -j"$JOBS" --enable=warning,performance,portability --inline-suppr \
  --suppressions-list=.cppcheck-suppressions --error-exitcode=1 -D_GNU_SOURCE -Isrc \
  --template='{file}:{line}: {severity}: {message} [{id}]' src tests bench >"$OUT/cppcheck.log" 2>&1
result "cppcheck" $? "$OUT/cppcheck.log"

# 4. The dependency rule (docs/ARCHITECTURE.md): no include that points up, no loop of calls
# between source files (read from the gcc build's objects, made by check 1).
python3 scripts/check-layers.py build >"$OUT/layers.log" 2>&1
result "layers" $? "$OUT/layers.log"

# 5. Shell scripts parse.
st=0
for f in scripts/*.sh bench/*.sh .ci/run; do bash -n "$f" >>"$OUT/shell.log" 2>&1 || st=1; done
result "bash -n" $st "$OUT/shell.log"

exit $failed
