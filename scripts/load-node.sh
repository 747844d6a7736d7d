#!/usr/bin/env bash
# Helpers for the scripts that drive `gatehouse load` against a fresh node (make soak, make bench-engine,
# bench/noise_floor.sh). Source it; then `node_start BIN [serve flags...]` starts
# `BIN serve` on a free 127.0.0.1 port in a new temp dir with cheap password hashing, no per-IP
# throttle and warnings-only logging, waits for /healthz and sets NODE_URL, NODE_PID, NODE_DIR;
# `node_stop` stops it (SIGTERM, then SIGKILL after 10 s) and removes the dir.
NODE_PID="" NODE_DIR="" NODE_URL=""

node_start() {
  local bin=$1; shift
  NODE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-node-XXXXXX") || return 1
  # The request log at info level would be hundreds of MB under load, and the "listening" line
  # that names a port picked by the kernel is info too: so pick a free port here (retrying when
  # the node cannot bind it) and wait for /healthz instead.
  local try i port
  for try in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    "$bin" serve --listen "127.0.0.1:$port" --data-dir "$NODE_DIR" --hash-memory 8KiB \
      --hash-ops 1 --throttle-ip 0 --log-level warn "$@" 2>"$NODE_DIR/server.log" &
    NODE_PID=$!
    for i in $(seq 1 100); do
      if curl -sf -o /dev/null --noproxy '*' "http://127.0.0.1:$port/healthz"; then
        NODE_URL="http://127.0.0.1:$port"
        return 0
      fi
      kill -0 "$NODE_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$NODE_PID" 2>/dev/null
    wait "$NODE_PID" 2>/dev/null
  done
  echo "node: gatehouse serve did not start; its log:" >&2
  cat "$NODE_DIR/server.log" >&2
  node_stop
  return 1
}

node_stop() {
  if [ -n "$NODE_PID" ] && kill -0 "$NODE_PID" 2>/dev/null; then
    kill -TERM "$NODE_PID" 2>/dev/null
    local i
    for i in $(seq 1 100); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NODE_PID" 2>/dev/null
    wait "$NODE_PID" 2>/dev/null
  fi
  [ -n "$NODE_DIR" ] && rm -rf "$NODE_DIR"
  NODE_PID="" NODE_DIR="" NODE_URL=""
}
