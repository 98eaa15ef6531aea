"""The read model's Lua scripts: each compare-and-set, read and bounded store that runs inside Redis.

A projection replaces the stored one only if it is newer: a higher version, or the same version read later
(category product counts change without a version bump). A deleted resource leaves a tombstone (empty body) at
its version, so a late, older message cannot bring it back. A fence (``f``, a WAL position) marks a projection
stale if it was read before that position (two reads with no write between them share one position, so the
test is strict). The key layout they use is :mod:`shared.readmodel.keys`.

The scripts touch keys derived inside Lua (a slug's id, a product's category): fine on one Redis and its
replicas; a Redis Cluster would need hash tags, which this project does not use.
"""

from __future__ import annotations

from typing import Final

_NEWER = """
local function newer(key, v, l)
  local cur = redis.call('HMGET', key, 'v', 'l')
  if not cur[1] then return true end
  local cv, cl = tonumber(cur[1]), tonumber(cur[2] or '-1')
  return v > cv or (v == cv and l > cl)
end
local function fence(key, l)
  local f = tonumber(redis.call('HGET', key, 'f') or '-1')
  if l > f then redis.call('HSET', key, 'f', l) end
end
"""

#: KEYS: product hash. ARGV: prefix, member, version, lsn, etag, body ('' = deleted), slug, category member,
#: created score, price score, fence for the categories whose product count it changes, active ('1' | '0'; only
#: a live, active product is in the sorted sets: what public listings show).
PROJECT_PRODUCT: Final = (
    _NEWER
    + """
local p, m = ARGV[1], ARGV[2]
local v, l = tonumber(ARGV[3]), tonumber(ARGV[4])
if not newer(KEYS[1], v, l) then return 0 end
local live = ARGV[6] ~= ''
local old = redis.call('HMGET', KEYS[1], 's', 'c')
if old[2] and (old[2] ~= ARGV[8] or not live) then
  redis.call('ZREM', p .. 'idx:c:' .. old[2] .. ':created', m)
  redis.call('ZREM', p .. 'idx:c:' .. old[2] .. ':price', m)
  fence(p .. 'c:' .. old[2], tonumber(ARGV[11]))
  redis.call('INCR', p .. 'gen:products:c:' .. old[2])
end
if old[1] and (old[1] ~= ARGV[7] or not live) and redis.call('GET', p .. 'ps:' .. old[1]) == m then
  redis.call('DEL', p .. 'ps:' .. old[1])
  redis.call('DEL', p .. 'pj:' .. old[1])
end
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'l', ARGV[4], 'e', ARGV[5], 'b', ARGV[6], 's', ARGV[7], 'c', ARGV[8])
local cat = p .. 'idx:c:' .. ARGV[8]
if live then
  redis.call('SET', p .. 'ps:' .. ARGV[7], m)
  redis.call('SET', p .. 'pj:' .. ARGV[7], ARGV[5] .. '\\n' .. ARGV[6])
end
if live and ARGV[12] ~= '0' then
  redis.call('ZADD', p .. 'idx:p:created', ARGV[9], m)
  redis.call('ZADD', p .. 'idx:p:price', ARGV[10], m)
  redis.call('ZADD', cat .. ':created', ARGV[9], m)
  redis.call('ZADD', cat .. ':price', ARGV[10], m)
else
  redis.call('ZREM', p .. 'idx:p:created', m)
  redis.call('ZREM', p .. 'idx:p:price', m)
  redis.call('ZREM', cat .. ':created', m)
  redis.call('ZREM', cat .. ':price', m)
end
fence(p .. 'c:' .. ARGV[8], tonumber(ARGV[11]))
-- Cached product pages: those of every product (no category) and of the categories it is in or left; a page of
-- another category is unchanged by this product, so it stays cached (GET_PAGE).
redis.call('INCR', p .. 'gen:products')
redis.call('INCR', p .. 'gen:products:c:' .. ARGV[8])
redis.call('INCR', p .. 'gen:categories')
return 1
"""
)

#: KEYS: category hash. ARGV: prefix, member, version, lsn, etag, body ('' = deleted), slug.
PROJECT_CATEGORY: Final = (
    _NEWER
    + """
local p, m = ARGV[1], ARGV[2]
local v, l = tonumber(ARGV[3]), tonumber(ARGV[4])
if not newer(KEYS[1], v, l) then return 0 end
local old = redis.call('HGET', KEYS[1], 's')
if old and (old ~= ARGV[7] or ARGV[6] == '') and redis.call('GET', p .. 'cs:' .. old) == m then
  redis.call('DEL', p .. 'cs:' .. old)
end
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'l', ARGV[4], 'e', ARGV[5], 'b', ARGV[6], 's', ARGV[7])
if ARGV[6] ~= '' then redis.call('SET', p .. 'cs:' .. ARGV[7], m) end
redis.call('INCR', p .. 'gen:categories')
-- Its product pages are asked for by slug, which this write may have moved or freed.
redis.call('INCR', p .. 'gen:products:c:' .. m)
return 1
"""
)

#: KEYS: record hash. ARGV: prefix, version, lsn, etag, body ('' = deleted).
PROJECT_RECORD: Final = (
    _NEWER
    + """
local v, l = tonumber(ARGV[2]), tonumber(ARGV[3])
if not newer(KEYS[1], v, l) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'l', ARGV[3], 'e', ARGV[4], 'b', ARGV[5])
redis.call('INCR', ARGV[1] .. 'gen:records')
return 1
"""
)

#: KEYS: user hash. ARGV: prefix, version, lsn, name, date of birth, MM-DD.
PROJECT_USER: Final = (
    _NEWER
    + """
local p = ARGV[1]
local v, l = tonumber(ARGV[2]), tonumber(ARGV[3])
if not newer(KEYS[1], v, l) then return 0 end
local old = redis.call('HMGET', KEYS[1], 'n', 'md')
if old[1] then redis.call('SREM', p .. 'bday:' .. old[2], old[1]) end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'l', ARGV[3], 'n', ARGV[4], 'd', ARGV[5], 'md', ARGV[6])
redis.call('SADD', p .. 'bday:' .. ARGV[6], ARGV[4])
return 1
"""
)

#: KEYS: slug -> member key. ARGV: prefix, entity kind ('p:' or 'c:'), slug. -> {body, etag} or nil.
GET_BY_SLUG: Final = """
local m = redis.call('GET', KEYS[1])
if not m then return false end
local h = redis.call('HMGET', ARGV[1] .. ARGV[2] .. m, 'b', 'e', 'l', 'f', 's')
if not h[1] or h[1] == '' or h[5] ~= ARGV[3] then return false end
if h[4] and tonumber(h[4]) > tonumber(h[3]) then return false end
return {h[1], h[2]}
"""

#: KEYS: hash. -> {body, etag} or nil (missing, deleted or fenced).
GET_HASH: Final = """
local h = redis.call('HMGET', KEYS[1], 'b', 'e', 'l', 'f')
if not h[1] or h[1] == '' then return false end
if h[4] and tonumber(h[4]) > tonumber(h[3]) then return false end
return {h[1], h[2]}
"""

#: The sorted set a listing script reads (``key``): KEYS[1] is the index, or a category's slug mapping when ARGV[2]
#: names the category index. Nil unless a rebuild has completed in the sets' current format (READY ``products``:
#: :data:`shared.readmodel.keys.PRODUCTS_READY`) and the category exists.
_INDEX = """
local p = ARGV[1]
if redis.call('HGET', p .. 'ready', 'products') ~= '2' then return false end
local key = KEYS[1]
if ARGV[2] ~= '' then
  local cid = redis.call('GET', KEYS[1])
  if not cid then return false end
  key = p .. 'idx:c:' .. cid .. ':' .. ARGV[2]
end
"""

#: A page of a product index in keyset order. KEYS: the index, or a category's slug mapping when ARGV[2] names
#: the category index ('created' | 'price'). ARGV: prefix, category index, start score, cursor member or '',
#: reverse '1'|'0', how many. -> flat {member, score, body, ...}, or nil when Redis cannot answer it whole.
LIST_PAGE: Final = (
    _INDEX
    + """
local s, cm, rev, want = ARGV[3], ARGV[4], ARGV[5] == '1', tonumber(ARGV[6])
local out, offset, n = {}, 0, 0
while n < want do
  local chunk
  if rev then
    chunk = redis.call('ZRANGE', key, s, '-inf', 'BYSCORE', 'REV', 'LIMIT', offset, want + 1, 'WITHSCORES')
  else
    chunk = redis.call('ZRANGE', key, s, '+inf', 'BYSCORE', 'LIMIT', offset, want + 1, 'WITHSCORES')
  end
  if #chunk == 0 then break end
  for i = 1, #chunk, 2 do
    local m, sc = chunk[i], chunk[i + 1]
    local skip = false
    if cm ~= '' and tonumber(sc) == tonumber(s) then
      if rev then skip = m >= cm else skip = m <= cm end
    end
    if not skip and n < want then
      local h = redis.call('HMGET', p .. 'p:' .. m, 'b', 'l', 'f')
      if not h[1] or h[1] == '' then return false end
      if h[3] and tonumber(h[3]) > tonumber(h[2]) then return false end
      out[#out + 1] = m
      out[#out + 1] = sc
      out[#out + 1] = h[1]
      n = n + 1
    end
  end
  offset = offset + #chunk / 2
end
return out
"""
)

#: A numbered page of a product index (Django REST framework's ``page``), by rank: the count is the index's size
#: (ZCARD), the page one ZRANGE by rank, so any page costs the same. KEYS and ARGV[1..3] as for LIST_PAGE (no
#: start score); ARGV[4]: the page (1-based; 0 for the last), ARGV[5]: its size. -> {count, page number, member,
#: body, ...} (no rows when the page is past the last), or nil when Redis cannot answer it whole.
LIST_RANK: Final = (
    _INDEX
    + """
local count, page, size = redis.call('ZCARD', key), tonumber(ARGV[4]), tonumber(ARGV[5])
local last = math.max(1, math.ceil(count / size))
if page == 0 then page = last end
local out = {count, page}
if page > last then return out end
local first = (page - 1) * size
local members
if ARGV[3] == '1' then
  members = redis.call('ZRANGE', key, first, first + size - 1, 'REV')
else
  members = redis.call('ZRANGE', key, first, first + size - 1)
end
for _, m in ipairs(members) do
  local h = redis.call('HMGET', p .. 'p:' .. m, 'b', 'l', 'f')
  if not h[1] or h[1] == '' then return false end
  if h[3] and tonumber(h[3]) > tonumber(h[2]) then return false end
  out[#out + 1] = m
  out[#out + 1] = h[1]
end
return out
"""
)

#: KEYS: the kind's generation counter, and for a listing of one category its slug mapping (``cs:``). ARGV: page
#: key prefix, query hash, key prefix. -> {generation, page or nil}. A category's listing is keyed by that
#: category's own counter (``gen:products:c:<member>``, bumped by the writes of its products and of itself), so
#: writes elsewhere leave it cached; a slug that maps to no category falls back to the kind's counter, which every
#: product write bumps. The generation names its counter, so a page stored under one is never read under the other.
GET_PAGE: Final = """
local gen = KEYS[1]
local tag = ''
if KEYS[2] then
  local m = redis.call('GET', KEYS[2])
  if m then
    gen = ARGV[3] .. 'gen:products:c:' .. m
    tag = 'c' .. m .. '.'
  end
end
local g = tag .. (redis.call('GET', gen) or '0')
return {g, redis.call('GET', ARGV[1] .. g .. ':' .. ARGV[2])}
"""

#: KEYS: ready hash, birthday set(s). -> {ready flag, members...}.
BIRTHDAYS: Final = """
local out = {redis.call('HGET', KEYS[1], 'users') or ''}
for i = 2, #KEYS do
  for _, n in ipairs(redis.call('SMEMBERS', KEYS[i])) do out[#out + 1] = n end
end
return out
"""

GET_USER: Final = """
local h = redis.call('HMGET', KEYS[1], 'n', 'd')
if not h[1] then return false end
return h
"""

#: KEYS: page key, the kind's page index (a sorted set of '<bytes>:<page key>' by the time stored), the kind's
#: byte count. ARGV: page, seconds to live, pages at most, bytes at most. Pages whose time is up leave the index
#: first, then the oldest until both bounds hold: cached pages are bounded in count and bytes however many
#: distinct queries arrive (each its own page key), and never touch the projections.
SET_PAGE: Final = """
local idx, total = KEYS[2], KEYS[3]
local ttl, most, budget = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function drop(entry)
  local cut = string.find(entry, ':', 1, true)
  redis.call('ZREM', idx, entry)
  redis.call('DECRBY', total, tonumber(string.sub(entry, 1, cut - 1)))
  return string.sub(entry, cut + 1)
end
for _, entry in ipairs(redis.call('ZRANGE', idx, '-inf', now - ttl * 1000, 'BYSCORE', 'LIMIT', 0, 64)) do
  drop(entry)
end
local size = #ARGV[1]
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
redis.call('ZADD', idx, now, size .. ':' .. KEYS[1])
local bytes = redis.call('INCRBY', total, size)
while redis.call('ZCARD', idx) > most or bytes > budget do
  local oldest = redis.call('ZRANGE', idx, 0, 0)[1]
  if not oldest then break end
  bytes = bytes - tonumber(string.sub(oldest, 1, string.find(oldest, ':', 1, true) - 1))
  redis.call('DEL', drop(oldest))
end
return 1
"""

#: KEYS: a slug copy key. ARGV: seconds. Marks the slug absent unless something is stored there.
MARK_ABSENT: Final = "return redis.call('SET', KEYS[1], '!', 'NX', 'EX', ARGV[1])"
