#!/usr/bin/env bash
# Measures the leak verdict's noise floor: healthy runs of `gatehouse load` against fresh nodes,
# each printing the Theil–Sen slope of RSS after the warm-up, the band RSS wanders in around that
# line, and the fit window. The default --max-leak (src/load/load.h, GH_LOAD_NOISE_BAND and
# GH_LOAD_NOISE_FLOOR) was chosen from this table; docs/BENCHMARKS.md records a run.
# Usage: bench/noise_floor.sh [BUILD] [RUNS...] where a run is SCENARIO:DURATION[:RATE]
# (default: a set taking about 25 minutes).
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build}; shift || true
BIN=$BUILD/gatehouse
. scripts/load-node.sh
trap node_stop EXIT
RUNS=("$@")
[ ${#RUNS[@]} -eq 0 ] && RUNS=(churn:60s churn:60s churn:60s soak:60s:3000 soak:60s:3000 soak:60s:3000
  mixed:60s mixed:60s validate:60s churn:300s soak:600s:1000)
field() { sed -nE "s/^ +\"$1\": ([^,]+),?$/\1/p" "$2" | head -1; }
printf '%-10s %8s %6s %8s %10s %12s %12s %12s %s\n' scenario duration rate window_s cycles/s \
  slope_B/s band_B B/1k_cycles verdict
for run in "${RUNS[@]}"; do
  IFS=: read -r scen dur rate <<<"$run"
  node_start "$BIN" || exit 2
  json="$BUILD/noise-$scen-$dur.json"
  args=(--url "$NODE_URL" --scenario "$scen" --duration "$dur" --json "$json" --max-leak 1GiB/s)
  [ -n "${rate:-}" ] && args+=(--rate "$rate")
  "$BIN" load "${args[@]}" >/dev/null || { echo "run $run failed" >&2; node_stop; continue; }
  node_stop
  printf '%-10s %8s %6s %8.1f %10.1f %12.1f %12.0f %12s %s\n' "$scen" "$dur" "${rate:--}" \
    "$(field fit_window_s "$json")" "$(field cycles_per_s "$json")" \
    "$(field slope_bytes_per_s "$json")" "$(field rss_band_bytes "$json")" \
    "$(field bytes_per_1k_cycles "$json")" "$(field verdict "$json" | tr -d '"')"
done
