-- Writes with a key the API does not know, from many addresses: every one is a 401.
math.randomseed(os.time())
local body = '{"name":"Nope","price":"1.00","category":"category-1"}'
request = function()
  local client = "10." .. math.random(0, 255) .. "." .. math.random(0, 233) .. "." .. math.random(1, 254)
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer sr_not-a-key-of-this-bench",
                   ["X-Forwarded-For"] = client}
  return wrk.format("POST", "/api/products", headers, body)
end
