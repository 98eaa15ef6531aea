-- GET BENCH_PATH (a first page), each request from one of many client addresses (see read.lua).
math.randomseed(os.time())
request = function()
  local client = "10." .. math.random(0, 255) .. "." .. math.random(0, 233) .. "." .. math.random(1, 254)
  return wrk.format("GET", "BENCH_PATH", {["X-Forwarded-For"] = client})
end
