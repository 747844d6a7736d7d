-- flood_login.lua — wrk script for bench/bench_flood.sh: failed logins as fast as wrk can send
-- them, each for a username never seen before (an unknown user is verified against the dummy
-- hash, so every accepted request costs a full argon2id run, and no account ever reaches its
-- back-off threshold). Run the server with --throttle-ip 0, or the per-IP throttle answers 429
-- without hashing and the pool is never saturated.
local n = 0
local prefix

init = function(args)
  -- tid is set per thread by setup(), so threads never share a username
  prefix = string.format("flood%d_%d", tid or 0, os.time())
end

request = function()
  n = n + 1
  local body = string.format('{"username":"%s_%d","password":"not the password"}', prefix, n)
  return wrk.format("POST", "/v1/sessions", {["Content-Type"] = "application/json"}, body)
end

-- Counts statuses per thread and prints the mix when wrk ends, so the run shows whether the pool
-- was really saturated (401 = hashed, 503 = refused at once because the queue was full).
local threads = {}
statuses = {}

setup = function(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
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
  io.write("flood statuses:")
  for status, count in pairs(total) do
    io.write(string.format(" %d=%d", status, count))
  end
  io.write("\n")
end
