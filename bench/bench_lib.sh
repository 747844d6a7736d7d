#!/usr/bin/env bash
# bench_lib.sh — what the benchmarks against the ceilings share (bench_ceiling.sh, bench_login.sh,
# bench_rss.sh). Source it. Unlike scripts/load-node.sh, whose nodes hash cheaply and log only
# warnings, a node started here runs with the DEFAULT serve settings plus only the flags the
# caller passes, because these benchmarks measure what a deployment gets.
#
#   bench_machine NAME              one line: cores, CPU model, kernel, load average
#   bench_quiet_check NAME          warns when other work keeps the cores busy
#   median                          median of the numbers on stdin, one a line
#   bench_free_port                 a loopback port nothing listens on (racy; callers retry)
#   node_up VAR BIN DIR [flags...]  starts `BIN serve` on a free 127.0.0.1 port with data dir
#                                   DIR (log in DIR.log), waits for /healthz; sets VAR_PID,
#                                   VAR_URL and VAR_START_MS (process start to the first
#                                   /healthz answer, in ms). Returns 1 if it cannot start, 2 if
#                                   it did not answer within NODE_UP_TIMEOUT s (default 60;
#                                   then it is killed).
#   node_down PID                   SIGTERM, then SIGKILL after 30 s; waits for it
#   wrk_rps FILE                    requests/s from wrk output; wrk_p LABEL FILE: a percentile in ms

bench_machine() {
  local model
  model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  printf '%s: machine %s cores, %s, Linux %s, load average %s\n' "$1" "$(nproc)" \
    "${model:-unknown CPU}" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# How busy the cores are right now, over one second (the load average would still count the
# previous benchmark of the same `make bench` for a minute).
bench_quiet_check() {
  local a b
  a=$(head -1 /proc/stat) && sleep 1 && b=$(head -1 /proc/stat) || return 0
  awk -v a="$a" -v b="$b" -v who="$1" 'BEGIN {
    n = split(a, x); split(b, y); total = 0
    for (i = 2; i <= n; i++) total += y[i] - x[i]
    idle = (y[5] - x[5]) + (y[6] - x[6])
    busy = total > 0 ? 100 * (1 - idle / total) : 0
    if (busy > 15)
      printf "%s: WARNING: the cores were %.0f%% busy before the run: other work shares them;" \
        " rerun at a quiet moment before recording figures\n", who, busy
  }'
}

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

# Below the kernel's ephemeral range: wrk's client sockets (ours or anyone's) take ports from that
# range, and a listener cannot bind a port an open connection uses.
bench_free_port() {
  local port low=32768
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null
  [ "$low" -gt 11000 ] || low=61000
  while :; do
    port=$((10000 + RANDOM % (low - 10000)))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

node_up() {
  local var=$1 bin=$2 dir=$3; shift 3
  local port pid t0 t1 seen limit=$((${NODE_UP_TIMEOUT:-60} * 1000))
  mkdir -p "$dir" && touch "$dir.log" || return 1
  for _ in 1 2 3 4 5; do
    port=$(bench_free_port)
    seen=$(wc -l <"$dir.log")
    t0=$(now_ms)
    "$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir" "$@" 2>>"$dir.log" &
    pid=$!
    # 10 ms between polls: the start-up time is a figure (bench_rss.sh), and a poll is ~5 ms.
    while kill -0 "$pid" 2>/dev/null; do
      if curl -sf -o /dev/null --noproxy '*' --max-time 2 "http://127.0.0.1:$port/healthz"; then
        t1=$(now_ms)
        printf -v "${var}_PID" '%s' "$pid"
        printf -v "${var}_URL" '%s' "http://127.0.0.1:$port"
        printf -v "${var}_START_MS" '%s' "$((t1 - t0))"
        return 0
      fi
      if [ $(($(now_ms) - t0)) -gt "$limit" ]; then
        # SIGKILL: a node still starting has not set up its signal handling yet.
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        echo "node: gatehouse serve did not answer /healthz within ${NODE_UP_TIMEOUT:-60} s" >&2
        return 2
      fi
      sleep 0.01
    done
    wait "$pid" 2>/dev/null
    # Exited: another process may have taken the port in between; anything else is fatal.
    tail -n +$((seen + 1)) "$dir.log" | grep -q '"cannot listen"' || break
  done
  echo "node: gatehouse serve did not start; the end of its log:" >&2
  tail -5 "$dir.log" >&2
  return 1
}

node_down() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

wrk_rps() { awk '/^Requests\/sec:/ {print $2}' "$1"; }

# A percentile line of wrk --latency ("  99%    1.23ms") in milliseconds.
wrk_p() {
  awk -v want="$1" '$1 == want {
      v = $2; unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
      printf "%.3f\n", (unit == "us") ? v / 1000 : (unit == "s") ? v * 1000 : (unit == "m") ? v * 60000 : v
    }' "$2"
}
