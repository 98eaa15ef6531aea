-- POST a new product (names unique per run, so every slug is new); BENCH_PATH and BENCH_KEYS are substituted.
-- Each request uses one of the bench's API keys at random, so no key reaches the default write limit (50/s);
-- each key is one client, with an address of its own (X-Forwarded-For, as behind nginx).
math.randomseed(os.time())
local run = tostring(os.time()) .. "x" .. tostring(math.random(1, 1000000))
local n = 0
local keys = {BENCH_KEYS}
request = function()
  n = n + 1
  local i = math.random(#keys)
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. keys[i],
                   ["X-Forwarded-For"] = "10.250." .. math.floor(i / 250) .. "." .. (i % 250 + 1)}
  local body = '{"name":"Bench ' .. run .. ' ' .. n .. '","price":"9.99","category":"category-1","stock":5}'
  return wrk.format("POST", "BENCH_PATH", headers, body)
end
