-- GET one product by slug; the seed made product-1 .. product-10000. Each request comes "from" one of 2,000
-- clients (X-Forwarded-For, as nginx sends it; the API trusts 127.0.0.1 as its proxy), at random: each sends
-- a few to a few tens of reads a second, so no client reaches the default rate limit (200/s) and every request is a
-- Redis hit under its limit, and each client's reads come back to the API as a real client's do.
math.randomseed(os.time())
request = function()
  local client = "10.0." .. math.random(0, 7) .. "." .. math.random(1, 250)
  return wrk.format("GET", "/api/products/product-" .. math.random(1, 10000), {["X-Forwarded-For"] = client})
end
