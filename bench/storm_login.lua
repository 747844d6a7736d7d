-- storm_login.lua — wrk script for bench/bench_storm.sh: correct logins (POST /v1/sessions with
-- the right password) as fast as the node answers them, spread over N users named PREFIX0 ..
-- PREFIX(N-1), so no account has enough attempts in flight to reach its back-off threshold and
-- every login goes to the password pool (at the default hash cost). Usage:
--   wrk ... -s storm_login.lua URL -- PREFIX N PASSWORD
-- When wrk ends it prints "storm statuses: 201=N ..." (503 = the password queue was full).
local prefix, count, password
local n = 0

init = function(args)
  prefix, count, password = args[1], tonumber(args[2]), args[3]
end

request = function()
  n = n + 1
  local body = string.format('{"username":"%s%d","password":"%s"}', prefix, n % count, password)
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
    for status, c in pairs(t:get("statuses")) do
      total[status] = (total[status] or 0) + c
    end
  end
  io.write("storm statuses:")
  for status, c in pairs(total) do
    io.write(string.format(" %d=%d", status, c))
  end
  io.write("\n")
end
