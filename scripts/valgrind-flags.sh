#!/usr/bin/env bash
# The memcheck flags of the leak gate, in one place (scripts/run-tests.sh, valgrind-wrap.sh):
# full leak check; definitely and indirectly lost blocks count as errors; any error exits 99.
echo "--leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --num-callers=30"
