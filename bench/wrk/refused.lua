-- The same reads as read.lua, all from one client address: past its burst every one is a 429.
math.randomseed(os.time())
local headers = {["X-Forwarded-For"] = "203.0.113.9"}
request = function()
  return wrk.format("GET", "/api/products/product-" .. math.random(1, 10000), headers)
end
