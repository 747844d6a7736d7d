#!/usr/bin/env bash
# Fails when code outside src/mem calls the C allocator directly: every long-lived byte must be
# charged to a component through gh_mem_*, or the accounting (and the leak watchdog) lies.
set -u
cd "$(dirname "$0")/.."
hits=$(grep -rnE '(^|[^_a-zA-Z.>])(malloc|calloc|realloc|strdup|strndup|free)\(' src --include='*.c' --include='*.h' \
  | grep -v '^src/mem/' | grep -vE '^\S+:[0-9]+:\s*(\*|//)' | grep -vE 'gh_mem_|sodium_|json_|sqlite3_|curl_|MHD_')
if [ -n "$hits" ]; then
  echo "check-alloc: allocation outside src/mem (use gh_mem_*):"
  echo "$hits"
  exit 1
fi
echo "check-alloc: ok"
