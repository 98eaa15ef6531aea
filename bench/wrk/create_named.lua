-- POST a product into the category bench/scale.py names, under the fixed name it names (one the catalog holds
-- already, so every slug collides and the API looks for a free suffix) or, when that is "", a name unique per
-- request. Keys and client addresses as in create.lua.
math.randomseed(os.time())
local run = tostring(os.time()) .. "x" .. tostring(math.random(1, 1000000))
local n = 0
local keys = {BENCH_KEYS}
local fixed = BENCH_NAME
request = function()
  n = n + 1
  local i = math.random(#keys)
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. keys[i],
                   ["X-Forwarded-For"] = "10.250." .. math.floor(i / 250) .. "." .. (i % 250 + 1)}
  local name = fixed
  if name == "" then name = "Bench " .. run .. " " .. n end
  local body = '{"name":"' .. name .. '","price":"9.99","category":"BENCH_CATEGORY","stock":5}'
  return wrk.format("POST", "/api/products", headers, body)
end
