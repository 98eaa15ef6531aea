-- GET one product by slug; the seed made product-1 .. product-10000.
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/api/products/product-" .. math.random(1, 10000))
end
