-- GET products that do not exist (100 slugs, asked again and again), from many addresses: every one is a 404.
math.randomseed(os.time())
request = function()
  local client = "10.0." .. math.random(0, 7) .. "." .. math.random(1, 250)
  return wrk.format("GET", "/api/products/missing-" .. math.random(1, 100), {["X-Forwarded-For"] = client})
end
