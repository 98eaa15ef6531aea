-- GET BENCH_PATH (a first page), each request from one of many client addresses (see read.lua).
math.randomseed(os.time())
request = function()
  local client = "10.0." .. math.random(0, 7) .. "." .. math.random(1, 250)
  return wrk.format("GET", "BENCH_PATH", {["X-Forwarded-For"] = client})
end
