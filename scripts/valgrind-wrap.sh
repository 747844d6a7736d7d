#!/usr/bin/env bash
# Writes OUT, a script that runs BIN under valgrind memcheck with the gate's settings, for the
# integration harness (GATEHOUSE_BIN=OUT): the server's valgrind report lands in its server.log,
# which the harness checks when the server stops. A definitely or indirectly lost block, or any
# error, makes the server exit 99 and puts "ERROR SUMMARY: N" (N > 0) in the log.
# The wrapper names absolute paths of this checkout, so it is generated, never checked in.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 BIN OUT" >&2; exit 2; }
cd "$(dirname "$0")/.."
bin=$(realpath "$1")
mkdir -p "$(dirname "$2")"
{
  echo '#!/bin/sh'
  printf 'exec valgrind %s --suppressions=%q %q "$@"\n' "$(bash scripts/valgrind-flags.sh)" \
    "$PWD/tests/valgrind.supp" "$bin"
} >"$2"
chmod +x "$2"
