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

from shared.readmodel import keys, render

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

#: One product's compare-and-set (layout of :mod:`shared.readmodel.keys`): a = {bucket, member, version, lsn,
#: etag, packed body ('' = deleted), slug, category member, created score, price score, owner prefix, active
#: ('1' | '0'), tags (:func:`shared.readmodel.keys.product_tags`)}; the owner prefix is what a stored copy of
#: this product begins with after its etag line. A live product keeps its copy, its bucket entry and its tags
#: (``pt:``, :func:`shared.readmodel.keys.product_tags_bucket`) whether active or not, but only a live, *active*
#: one is in the sorted sets (what public listings show). Returns the categories whose product count or listing
#: it changed (nil when the projection is not newer): its category, and the old one if it moved; and adds to
#: ``bumps`` the tags whose counters the change must bump: those of the state it replaces and of the new one, or
#: ``?`` (:data:`shared.readmodel.keys.UNKNOWN_TAGS`) when one of them is unknown: a product projected before
#: tags, or read without its lexemes, or a version skipped (a state Redis never saw may have been in a page).
#:
#: With ``reindex`` (the rebuild's), a projection of the very version stored puts the product in or out of the
#: sorted sets as that version's projection does: sets built by an older format may hold inactive products, and
#: the rebuild may read a product at the position it was projected at, which is not newer; a product without
#: tags gets them.
_PRODUCT = (
    """
local function index(p, m, cat, on, created, price)
  local ci = p .. 'ix:c:' .. cat
  if on then
    redis.call('ZADD', p .. 'ix:p:created', created, m)
    redis.call('ZADD', p .. 'ix:p:price', price, m)
    redis.call('ZADD', ci .. ':created', created, m)
    redis.call('ZADD', ci .. ':price', price, m)
  else
    redis.call('ZREM', p .. 'ix:p:created', m)
    redis.call('ZREM', p .. 'ix:p:price', m)
    redis.call('ZREM', ci .. ':created', m)
    redis.call('ZREM', ci .. ':price', m)
  end
end
local function tagged(t, bumps)
  local pb, st, words = string.match(t, '^(%d+)%.(%d)%.(.*)$')
  if not pb then bumps['?'] = true return end
  bumps['p' .. pb] = true
  bumps['P' .. math.floor(tonumber(pb) / """
    + str(keys.PRICE_GROUP)
    + """)] = true
  bumps['s' .. st] = true
  for i = 1, #words, 2 do bumps['w' .. string.sub(words, i, i + 1)] = true end
end
local function product(p, a, reindex, bumps)
  local bucket, m = a[1], a[2]
  local v, l = tonumber(a[3]), tonumber(a[4])
  local live, slug, cat = a[6] ~= '', a[7], a[8]
  local listed = live and a[12] == '1'
  local tags = p .. 'pt:' .. string.sub(m, 1, -3)
  local cur = redis.call('HGET', bucket, m)
  local oc, os_
  local cv = 0
  if cur then
    local cl, c, s
    cv, cl, c, s = string.match(cur, '^([^:]*):([^:]*):([^:]*):(.*)$')
    cv, cl = tonumber(cv), tonumber(cl)
    if not (v > cv or (v == cv and l > cl)) then
      if reindex and v == cv then
        index(p, m, cat, listed, a[9], a[10])
        if a[13] ~= '' and not redis.call('HGET', tags, m) then redis.call('HSET', tags, m, a[13]) end
      end
      return nil
    end
    oc, os_ = c, s
    tagged(redis.call('HGET', tags, m) or '', bumps)
  end
  if v > cv + 1 then bumps['?'] = true end
  tagged(a[13], bumps)
  redis.call('HSET', tags, m, a[13])
  if oc and (oc ~= cat or not live) then
    redis.call('ZREM', p .. 'ix:c:' .. oc .. ':created', m)
    redis.call('ZREM', p .. 'ix:c:' .. oc .. ':price', m)
  end
  if os_ and (os_ ~= slug or not live) then
    local copy = redis.call('GET', p .. 'pk:' .. os_)
    if copy and string.find(copy, a[11], 1, true) then redis.call('DEL', p .. 'pk:' .. os_) end
  end
  redis.call('HSET', bucket, m, a[3] .. ':' .. a[4] .. ':' .. cat .. ':' .. slug)
  if live then redis.call('SET', p .. 'pk:' .. slug, a[5] .. '\\n' .. a[6]) end
  index(p, m, cat, listed, a[9], a[10])
  if oc and oc ~= cat then return {cat, oc} end
  return {cat}
end
-- Cached product pages: those of every product (no category) and of the categories it is in or left; a page of
-- another category is unchanged by this product, so it stays cached (GET_PAGE).
local function changed(p, c, f)
  fence(p .. 'c:' .. c, f)
  redis.call('INCR', p .. 'gen:products:c:' .. c)
end
-- And those that depend on a tag it had or has.
local function bump(p, bumps)
  for t in pairs(bumps) do redis.call('INCR', p .. 'gen:products:t:' .. t) end
end
"""
)
#: How many ARGV one product takes in :data:`PROJECT_PRODUCT` and :data:`PROJECT_PRODUCTS`, after the prefix
#: (:func:`shared.readmodel.project.product_values`).
PRODUCT_ARGS: Final = 13

#: KEYS: the product's bucket hash. ARGV: prefix, the product's 13 values (see ``_PRODUCT``), then the fence for
#: the categories whose product count it changes.
PROJECT_PRODUCT: Final = (
    _NEWER
    + _PRODUCT
    + f"""
local p = ARGV[1]
local a = {{}}
for i = 1, {PRODUCT_ARGS} do a[i] = ARGV[i + 1] end
local bumps = {{}}
local cats = product(p, a, false, bumps)
if not cats then return 0 end
for _, c in ipairs(cats) do changed(p, c, tonumber(ARGV[{PRODUCT_ARGS + 2}])) end
bump(p, bumps)
redis.call('INCR', p .. 'gen:products')
redis.call('INCR', p .. 'gen:categories')
return 1
"""
)

#: The rebuild's: any number of products in one call. ARGV: prefix, the fence (every product was read at or
#: before it), then 13 values per product. Each category is fenced and its generation bumped once, each tag's
#: counter and the kinds' generations once. -> how many changed.
PROJECT_PRODUCTS: Final = (
    _NEWER
    + _PRODUCT
    + f"""
local p, f = ARGV[1], tonumber(ARGV[2])
local n, cats, bumps = 0, {{}}, {{}}
for i = 3, #ARGV, {PRODUCT_ARGS} do
  local moved = product(p, {{unpack(ARGV, i, i + {PRODUCT_ARGS - 1})}}, true, bumps)
  if moved then
    n = n + 1
    for _, c in ipairs(moved) do cats[c] = true end
  end
end
for c in pairs(cats) do changed(p, c, f) end
if n > 0 then
  bump(p, bumps)
  redis.call('INCR', p .. 'gen:products')
  redis.call('INCR', p .. 'gen:categories')
end
return n
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
if old and (old ~= ARGV[7] or ARGV[6] == '') and redis.call('GET', p .. 'cm:' .. old) == m then
  redis.call('DEL', p .. 'cm:' .. old)
end
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'l', ARGV[4], 'e', ARGV[5], 'b', ARGV[6], 's', ARGV[7])
if ARGV[6] ~= '' then redis.call('SET', p .. 'cm:' .. ARGV[7], m) end
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

#: KEYS: a category's slug -> member key. ARGV: prefix, 'c:', slug. -> {body, etag} or nil.
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

#: The sorted set a listing script reads (``key``), and ``body(m)``: the packed bytes of its member ``m``'s stored
#: copy, or nil. KEYS[1] is the index, or a category's slug mapping when ARGV[2] names the category index
#: ('created' | 'price'). Nil unless a rebuild has completed in the current layout (READY ``products``:
#: :data:`shared.readmodel.keys.FORMAT`) and the category exists.
_INDEX = (
    f"local OWNER_ID, OWNER_SLUG = '\\{render.PACKED_ID[0]}', '\\{render.PACKED_SLUG[0]}'"
    + """
local p = ARGV[1]
if redis.call('HGET', p .. 'ready', 'products') ~= '"""
    + keys.FORMAT
    + """' then return false end
local key = KEYS[1]
if ARGV[2] ~= '' then
  local cid = redis.call('GET', KEYS[1])
  if not cid then return false end
  key = p .. 'ix:c:' .. cid .. ':' .. ARGV[2]
end
local function body(m)
  local h = redis.call('HGET', p .. 'pm:' .. string.sub(m, 1, -3), m)
  if not h then return nil end
  local copy = redis.call('GET', p .. 'pk:' .. string.match(h, '^[^:]*:[^:]*:[^:]*:(.*)$'))
  if not copy then return nil end
  local cut = string.find(copy, '\\n', 1, true)
  -- the copy under that slug must be this product's (a rename may not have reached Redis in order)
  if not cut or string.sub(copy, cut + 1, cut + #m + 1) ~= OWNER_ID .. string.sub(m, 2) .. OWNER_SLUG then
    return nil
  end
  return string.sub(copy, cut + 1)
end
"""
)

#: A page of a product index in keyset order. KEYS and ARGV[1..2] as for ``_INDEX``; ARGV: start score, cursor
#: member or '', reverse '1'|'0', how many. -> flat {member, score, packed body, ...}, or nil when Redis cannot
#: answer it whole.
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
      local b = body(m)
      if not b then return false end
      out[#out + 1] = m
      out[#out + 1] = sc
      out[#out + 1] = b
      n = n + 1
    end
  end
  offset = offset + #chunk / 2
end
return out
"""
)

#: A numbered page of a product index (Django REST framework's ``page``), by rank: the count is the index's size
#: (ZCARD), the page one ZRANGE by rank, so any page costs the same. KEYS and ARGV[1..2] as for ``_INDEX``;
#: ARGV[3]: reverse '1'|'0', ARGV[4]: the page (1-based; 0 for the last), ARGV[5]: its size. -> {count, page
#: number, member, packed body, ...} (no rows when the page is past the last), or nil when Redis cannot answer it
#: whole.
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
  local b = body(m)
  if not b then return false end
  out[#out + 1] = m
  out[#out + 1] = b
end
return out
"""
)

#: KEYS: the kind's generation counter, and for a listing of one category its slug mapping (``cm:``). ARGV: page
#: key prefix, query hash, key prefix, then the counters the listing depends on, if any. -> {generation, page or
#: nil}. A category's listing is keyed by that category's own counter (``gen:products:c:<member>``, bumped by the
#: writes of its products and of itself), so writes elsewhere leave it cached; a slug that maps to no category
#: falls back to the kind's counter, which every product write bumps. A listing of no category that names
#: counters (the tags a product must have to be in it, :func:`shared.readmodel.keys.listing_counters`) is keyed
#: by their sum: it moves on when any of them does (they only grow), and only the writes of a product that had or
#: has one of those tags bump them. The generation names its counter, so a page stored under one is never read
#: under another.
GET_PAGE: Final = """
local g
if KEYS[2] then
  local m = redis.call('GET', KEYS[2])
  if m then g = 'c' .. m .. '.' .. (redis.call('GET', ARGV[3] .. 'gen:products:c:' .. m) or '0') end
elseif #ARGV > 3 then
  local n = 0
  for i = 4, #ARGV do n = n + tonumber(redis.call('GET', ARGV[i]) or '0') end
  g = 't' .. string.format('%d', n)
end
if not g then g = redis.call('GET', KEYS[1]) or '0' end
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
-- The count holds the sizes of the index's entries, each once: the same page stored again (concurrent misses of
-- one listing each build it) only renews its entry; a count from before this rule (or any drift) is set right
-- once the index holds nothing else.
local bytes
if redis.call('ZADD', idx, now, size .. ':' .. KEYS[1]) == 0 then
  bytes = tonumber(redis.call('GET', total) or '0')
elseif redis.call('ZCARD', idx) == 1 then
  bytes = size
  redis.call('SET', total, size)
else
  bytes = redis.call('INCRBY', total, size)
end
while redis.call('ZCARD', idx) > most or bytes > budget do
  local oldest = redis.call('ZRANGE', idx, 0, 0)[1]
  if not oldest then break end
  bytes = bytes - tonumber(string.sub(oldest, 1, string.find(oldest, ':', 1, true) - 1))
  redis.call('DEL', drop(oldest))
end
return 1
"""

#: KEYS: a product's slug copy key. -> its value, or nil (the API's own read is a plain GET).
GET_COPY: Final = "return redis.call('GET', KEYS[1])"

#: KEYS: a slug copy key. ARGV: seconds. Marks the slug absent unless something is stored there.
MARK_ABSENT: Final = "return redis.call('SET', KEYS[1], '!', 'NX', 'EX', ARGV[1])"
