#!/usr/bin/env bash
# Measures the leak verdict's noise floor: healthy runs of `gatehouse load` against fresh nodes,
# each printing the Theil–Sen slope of RSS after the warm-up with the upper end of its 95%
# interval, the band RSS wanders in around that line, the fit window and the default threshold
# for it. GH_LOAD_NOISE_BAND and GH_LOAD_NOISE_FLOOR (src/load/load.h) were chosen from this
# table; docs/BENCHMARKS.md records a run and how the choice was made.
# Usage: bench/noise_floor.sh [BUILD] [RUN...], a RUN being SCENARIO:DURATION[:RATE[:FLAGS]] with
# FLAGS extra `serve` flags joined by '+' (e.g. churn:60s::--hash-memory=19MiB+--hash-ops=2).
# Without RUNs: a set that takes about 20 minutes.
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build}; shift || true
BIN=$BUILD/gatehouse
. scripts/load-node.sh
trap node_stop EXIT
RUNS=("$@")
[ ${#RUNS[@]} -eq 0 ] && RUNS=(churn:60s churn:60s churn:60s soak:60s:3000 soak:60s:3000
  soak:60s:3000 mixed:60s mixed:60s validate:60s churn:300s soak:300s:1000
  churn:60s::--hash-memory=19MiB+--hash-ops=2 churn:60s::--hash-memory=19MiB+--hash-ops=2)
field() { sed -nE "s/^ +\"$1\": ([^,]+),?$/\1/p" "$2" | head -1; }
ci_high() { awk '/"slope_ci95_bytes_per_s"/ {getline; getline; print $1; exit}' "$1"; }
printf '%-9s %6s %5s %-5s %6s %8s %10s %10s %10s %10s %s\n' scenario time rate hash window \
  cycles/s slope_B/s ci_high band_B limit_B/s verdict
for run in "${RUNS[@]}"; do
  IFS=: read -r scen dur rate flags <<<"$run"
  serve=()
  [ -n "${flags:-}" ] && IFS=+ read -r -a serve <<<"$flags"
  node_start "$BIN" "${serve[@]}" || exit 2
  json="$BUILD/noise-$scen-$dur.json"
  args=(--url "$NODE_URL" --scenario "$scen" --duration "$dur" --json "$json")
  [ -n "${rate:-}" ] && args+=(--rate "$rate")
  "$BIN" load "${args[@]}" >/dev/null 2>&1
  node_stop
  [ -s "$json" ] || { echo "run $run failed" >&2; continue; }
  printf '%-9s %6s %5s %-5s %6.0f %8.1f %10.1f %10.1f %10.0f %10.0f %s\n' "$scen" "$dur" \
    "${rate:--}" "$([ -n "${flags:-}" ] && echo real || echo min)" \
    "$(field fit_window_s "$json")" "$(field cycles_per_s "$json")" \
    "$(field slope_bytes_per_s "$json")" "$(ci_high "$json")" "$(field rss_band_bytes "$json")" \
    "$(awk '/"max_leak"/ {getline; print $2; exit}' "$json" | tr -d ,)" \
    "$(field verdict "$json" | tr -d '"')"
done
