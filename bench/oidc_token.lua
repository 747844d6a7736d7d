-- oidc_token.lua — wrk script for bench/bench_oidc.sh: the OpenID provider's endpoints as fast as
-- the node answers them. Usage: wrk ... -s oidc_token.lua URL -- MODE ARGS...
--
--   authorize COOKIE QUERY OUT   GET /oidc/authorize?QUERY with the session cookie; every code
--                                of a 302 is kept and written to OUT (one a line) when wrk ends
--   code BASIC REDIRECT VERIFIER CODES
--                                POST /oidc/token grant_type=authorization_code, one code of the
--                                file CODES per request (each code once), client_secret_basic
--   refresh BASIC TOKENS         POST /oidc/token grant_type=refresh_token: a pool of refresh
--                                tokens (file TOKENS, more than the connections); each answer's
--                                new refresh token goes back to the pool, so every request
--                                rotates a live family, as a client that refreshes does
--
-- When wrk ends it prints "oidc statuses: 200=N ..." (302=N for authorize), so the script counts
-- only the requests that succeeded. A code or pool that runs dry stops the thread early.
local mode, cookie, path, basic, redirect, verifier
codes_file = nil -- a global: done() reads it from the thread
local pool = {}
codes = {}
statuses = {}

local function lines(file)
  local t = {}
  for line in io.lines(file) do
    if #line > 0 then table.insert(t, line) end
  end
  return t
end

init = function(args)
  mode = args[1]
  if mode == "authorize" then
    cookie, path, codes_file = args[2], "/oidc/authorize?" .. args[3], args[4]
  elseif mode == "code" then
    basic, redirect, verifier = args[2], args[3], args[4]
    pool = lines(args[5])
  else
    basic = args[2]
    pool = lines(args[3])
  end
end

local form = {["Content-Type"] = "application/x-www-form-urlencoded"}

request = function()
  if mode == "authorize" then
    return wrk.format("GET", path, {["Cookie"] = "gatehouse_session=" .. cookie})
  end
  local t = table.remove(pool)
  if not t then
    wrk.thread:stop()
    t = "spent"
  end
  form["Authorization"] = "Basic " .. basic
  if mode == "code" then
    return wrk.format("POST", "/oidc/token", form, "grant_type=authorization_code&code=" .. t ..
      "&redirect_uri=" .. redirect .. "&code_verifier=" .. verifier)
  end
  return wrk.format("POST", "/oidc/token", form, "grant_type=refresh_token&refresh_token=" .. t)
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if mode == "authorize" then
    local c = string.match(headers["Location"] or headers["location"] or "", "[?&]code=([^&]+)")
    if c then table.insert(codes, c) end
  elseif mode == "refresh" and status == 200 then
    table.insert(pool, string.match(body, '"refresh_token"%s*:%s*"([^"]+)"'))
  end
end

local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end

done = function(summary, latency, requests)
  local total = {}
  local f = nil
  for _, t in ipairs(threads) do
    for status, count in pairs(t:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
    local kept = t:get("codes")
    if kept and #kept > 0 then
      f = f or assert(io.open(t:get("codes_file"), "w"))
      for _, c in ipairs(kept) do f:write(c, "\n") end
    end
  end
  if f then f:close() end
  io.write("oidc statuses:")
  for status, count in pairs(total) do
    io.write(string.format(" %d=%d", status, count))
  end
  io.write("\n")
end
