-- GET one of BENCH_PATHS (substituted by bench/scale.py) at random, each request from one of many client
-- addresses (X-Forwarded-For, as nginx sends it; see read.lua), so no client reaches the read limit.
math.randomseed(os.time())
local paths = {BENCH_PATHS}
request = function()
  local client = "10." .. math.random(0, 255) .. "." .. math.random(0, 233) .. "." .. math.random(1, 254)
  return wrk.format("GET", paths[math.random(#paths)], {["X-Forwarded-For"] = client})
end
