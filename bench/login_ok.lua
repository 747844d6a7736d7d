-- login_ok.lua — wrk script for bench/bench_login.sh: successful logins (POST /v1/sessions with
-- the right password) as fast as the node answers them, so every request costs one argon2id
-- verification plus everything else a real login does (JSON, session create written through to
-- sessions.db, the cookie). Usage: wrk ... -s login_ok.lua URL -- USERNAME PASSWORD
-- When wrk ends it prints "login statuses: 201=N ..." so the script can count only the logins
-- that succeeded (503 = queue full, which the benchmark's concurrency must never reach).
local body

init = function(args)
  body = string.format('{"username":"%s","password":"%s"}', args[1], args[2])
end

request = function()
  return wrk.format("POST", "/v1/sessions", {["Content-Type"] = "application/json"}, body)
end

local threads = {}
statuses = {}

setup = function(thread)
  table.insert(threads, thread)
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for status, count in pairs(t:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
  end
  io.write("login statuses:")
  for status, count in pairs(total) do
    io.write(string.format(" %d=%d", status, count))
  end
  io.write("\n")
end
