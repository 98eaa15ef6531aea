-- GET one product by slug; the seed made product-1 .. product-10000. Each request comes "from" one of 60,000
-- client addresses (X-Forwarded-For, as nginx sends it; the API trusts 127.0.0.1 as its proxy), so no client
-- reaches the default rate limit and every request is a Redis hit under its limit.
math.randomseed(os.time())
request = function()
  local client = "10." .. math.random(0, 255) .. "." .. math.random(0, 233) .. "." .. math.random(1, 254)
  return wrk.format("GET", "/api/products/product-" .. math.random(1, 10000), {["X-Forwarded-For"] = client})
end
