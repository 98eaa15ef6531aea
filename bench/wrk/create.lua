-- POST a new product (names unique per run, so every slug is new); BENCH_PATH and BENCH_KEY are substituted.
math.randomseed(os.time())
local run = tostring(os.time()) .. "x" .. tostring(math.random(1, 1000000))
local n = 0
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer BENCH_KEY"}
request = function()
  n = n + 1
  local body = '{"name":"Bench ' .. run .. ' ' .. n .. '","price":"9.99","category":"category-1","stock":5}'
  return wrk.format("POST", "BENCH_PATH", headers, body)
end
