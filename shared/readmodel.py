"""The Redis read model: keys, the Lua compare-and-set scripts, and the functions both sides use.

A projection is the exact JSON bytes of a resource's API representation, kept in a hash with its version
(``v``), the PostgreSQL WAL position it was read at (``l``) and its ETag (``e``). A projection replaces the
stored one only if it is newer: a higher version, or the same version read later (category product counts
 without a version bump). A deleted resource leaves a tombstone (empty body) at its version, so a late,
older message cannot bring it back. A fence (``f``, a WAL position) marks a projection stale if it was read
before that position (two reads with no write between them share one position, so the test is strict).

Slugs map to ids (``ps:{slug}``); sorted sets index live products for the common listings; generation counters
key the cached pages of every other listing, so a write makes them unreachable at once.

The scripts touch keys derived inside Lua (a slug's id, a product's category): fine on one Redis and its
replicas; a Redis Cluster would need hash tags, which this project does not use.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from shared import views
from shared.models import Category, Product, Record, User

#: Every key starts with this.
PREFIX: Final = "sr:"
#: Cached listing pages live this long (a write makes them unreachable sooner, through the generation).
PAGE_TTL_SECONDS: Final = 60
#: Width of the zero-padded ids used as sorted-set members, so their byte order is their numeric order.
_PAD: Final = 19

#: (script, keys, args) -> result: redis-py's ``register_script`` objects and the fast client both fit.
Runner = Callable[[str, Sequence[str], Sequence[Any]], Awaitable[Any]]

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
#: created score, price score, fence for the categories whose product count it changes.
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
redis.call('INCR', p .. 'gen:products')
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

#: A page of a product index in keyset order. KEYS: the index, or a category's slug mapping when ARGV[2] names
#: the category index ('created' | 'price'). ARGV: prefix, category index, start score, cursor member or '',
#: reverse '1'|'0', how many. -> flat {member, score, body, ...}, or nil when Redis cannot answer it whole.
LIST_PAGE: Final = """
local p = ARGV[1]
if redis.call('HGET', p .. 'ready', 'products') ~= '1' then return false end
local key = KEYS[1]
if ARGV[2] ~= '' then
  local cid = redis.call('GET', KEYS[1])
  if not cid then return false end
  key = p .. 'idx:c:' .. cid .. ':' .. ARGV[2]
end
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

#: KEYS: generation counter. ARGV: page key prefix, query hash. -> {generation, page or nil}.
GET_PAGE: Final = """
local g = redis.call('GET', KEYS[1]) or '0'
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

#: Cached pages of one listing kind, over all its generations: at most this many ...
PAGES_PER_KIND: Final = 1_000
#: ... and at most this many bytes of pages (the oldest are dropped first), whatever the queries.
PAGE_BYTES_PER_KIND: Final = 8 * 1024 * 1024
#: A page larger than this is not cached at all (answered from PostgreSQL each time).
PAGE_MAX_BYTES: Final = 512 * 1024

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

SCRIPTS: Final = (
    PROJECT_PRODUCT,
    PROJECT_CATEGORY,
    PROJECT_RECORD,
    PROJECT_USER,
    GET_BY_SLUG,
    GET_HASH,
    LIST_PAGE,
    GET_PAGE,
    BIRTHDAYS,
    GET_USER,
    SET_PAGE,
    MARK_ABSENT,
)


def member(entity_id: int) -> str:
    """A sorted-set member (and key part) for an id: zero-padded so byte order is numeric order."""
    return str(entity_id).zfill(_PAD)


def created_score(at: dt.datetime) -> int:
    """Microseconds since the epoch: exact in a Redis score (a double) for the next few centuries."""
    delta = at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def created_from_score(score: float) -> dt.datetime:
    us = int(score)
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)


def price_score(price: Decimal) -> int:
    return int(price * 100)


def price_from_score(score: float) -> str:
    cents = int(score)
    return f"{cents // 100}.{cents % 100:02d}"


def key(*parts: str) -> str:
    return PREFIX + ":".join(parts)


# -- projecting -----------------------------------------------------------------------------------


async def project_product(
    run: Runner, p: Product, media_url: str, deleted: bool = False, from_write: bool = False
) -> bool:
    """Project ``p``. Its category's projection becomes stale if it was read before ``p``'s state existed:
    a read's position already includes ``p`` (fence at it), a write's position does not yet (fence past it)."""
    m = member(p.id)
    body = b"" if deleted else views.dumps(views.product(p, media_url))
    cat = member(p.category_id)
    args = [PREFIX, m, p.version, p.lsn, views.etag(p.version), body, p.slug, cat]
    args += [created_score(p.created_at), price_score(p.price), p.lsn + 1 if from_write else p.lsn]
    return bool(await run(PROJECT_PRODUCT, [PREFIX + "p:" + m], args))


async def project_category(run: Runner, c: Category, deleted: bool = False) -> bool:
    m = member(c.id)
    body = b"" if deleted else views.dumps(views.category(c))
    args = [PREFIX, m, c.version, c.lsn, views.category_etag(c), body, c.slug]
    return bool(await run(PROJECT_CATEGORY, [PREFIX + "c:" + m], args))


async def project_record(run: Runner, r: Record, deleted: bool = False) -> bool:
    body = b"" if deleted else views.dumps(views.record(r))
    args = [PREFIX, r.version, r.lsn, views.etag(r.version), body]
    return bool(await run(PROJECT_RECORD, [PREFIX + "r:" + member(r.id)], args))


async def project_user(run: Runner, u: User) -> bool:
    born = u.date_of_birth
    args = [PREFIX, u.version, u.lsn, u.name, born.isoformat(), f"{born.month:02d}-{born.day:02d}"]
    return bool(await run(PROJECT_USER, [PREFIX + "u:" + u.username], args))


# -- reading --------------------------------------------------------------------------------------


def _pair(found: Any) -> tuple[bytes, str] | None:
    if not found:
        return None
    body, etag = found
    return bytes(body), etag.decode() if isinstance(etag, bytes) else str(etag)


def product_copy_key(slug: str) -> str:
    """The slug-keyed copy of a live product's projection (``<etag>\\n<body>``), kept by PROJECT_PRODUCT in the
    same compare-and-set: a read by slug is then one plain GET, no script (products are never fenced)."""
    return PREFIX + "pj:" + slug


#: The value of a product's slug copy (:func:`product_copy_key`) that says PostgreSQL had no live product of that
#: slug a moment ago, so a repeated 404 costs one GET, as a hit does. Set only where no copy is (``NX``), for
#: :data:`ABSENT_TTL_SECONDS`; a projection of that slug replaces it (a plain SET), so a write is never hidden.
ABSENT: Final = b"!"
ABSENT_TTL_SECONDS: Final = 5


async def mark_product_absent(run: Runner, slug: str) -> None:
    await run(MARK_ABSENT, [product_copy_key(slug)], [ABSENT_TTL_SECONDS])


def split_copy(value: bytes | None) -> tuple[bytes, str] | None:
    if not value:
        return None
    cut = value.index(b"\n")
    return value[cut + 1 :], value[:cut].decode()


async def product_by_slug(run: Runner, slug: str) -> tuple[bytes, str] | None:
    return _pair(await run(GET_BY_SLUG, [PREFIX + "ps:" + slug], [PREFIX, "p:", slug]))


async def category_by_slug(run: Runner, slug: str) -> tuple[bytes, str] | None:
    return _pair(await run(GET_BY_SLUG, [PREFIX + "cs:" + slug], [PREFIX, "c:", slug]))


async def record_by_id(run: Runner, record_id: int) -> tuple[bytes, str] | None:
    return _pair(await run(GET_HASH, [PREFIX + "r:" + member(record_id)], []))


@dataclass(frozen=True)
class IndexPage:
    """Products of one page from a sorted set: (id, score, body bytes) each."""

    rows: list[tuple[int, float, bytes]]


#: sort -> (index name, reverse).
INDEXED_SORTS: Final = {
    "-created_at": ("created", True),
    "created_at": ("created", False),
    "price": ("price", False),
    "-price": ("price", True),
}


async def product_page(
    run: Runner, sort: str, category_slug: str | None, after: tuple[Any, int] | None, count: int
) -> IndexPage | None:
    """``count`` products after the keyset position ``after`` (as the PostgreSQL listing takes it), or None."""
    index, rev = INDEXED_SORTS[sort]
    if after is None:
        start, cursor_member = ("+inf" if rev else "-inf"), ""
    else:
        first, last_id = after
        score = created_score(first) if index == "created" else price_score(first)
        start, cursor_member = str(score), member(last_id)
    if category_slug is None:
        keys, cat_index = [PREFIX + "idx:p:" + index], ""
    else:
        keys, cat_index = [PREFIX + "cs:" + category_slug], index
    flat = await run(LIST_PAGE, keys, [PREFIX, cat_index, start, cursor_member, "1" if rev else "0", count])
    if flat is None or flat is False:
        return None
    rows = [(int(flat[i]), float(flat[i + 1]), bytes(flat[i + 2])) for i in range(0, len(flat), 3)]
    return IndexPage(rows)


def sort_key_from_score(sort: str, product_id: int, score: float) -> list[Any]:
    """The cursor key of a product at ``score`` in ``sort`` order, exactly as the PostgreSQL path makes it."""
    if sort.endswith("created_at"):
        return [created_from_score(score).isoformat(), product_id]
    return [price_from_score(score), product_id]


def page_hash(*parts: object) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()


async def cached_page(run: Runner, kind: str, qhash: str) -> tuple[str, bytes | None]:
    """(generation, cached page or None) for a listing of ``kind``."""
    gen, page = await run(GET_PAGE, [PREFIX + "gen:" + kind], [PREFIX + "q:" + kind + ":", qhash])
    g = gen.decode() if isinstance(gen, bytes) else str(gen)
    return g, (bytes(page) if page else None)


def page_key(kind: str, generation: str, qhash: str) -> str:
    return f"{PREFIX}q:{kind}:{generation}:{qhash}"


async def birthdays(run: Runner, month_days: list[tuple[int, int]]) -> list[str] | None:
    """Names whose birthday is on any of ``month_days``, or None if the user projection is not complete."""
    keys = [PREFIX + "ready"] + [f"{PREFIX}bday:{m:02d}-{d:02d}" for m, d in month_days]
    out = await run(BIRTHDAYS, keys, [])
    flag = out[0].decode() if isinstance(out[0], bytes) else str(out[0])
    if flag != "1":
        return None
    return sorted({n.decode() if isinstance(n, bytes) else str(n) for n in out[1:]})


async def user(run: Runner, username: str) -> tuple[str, dt.date] | None:
    """(name, date of birth) of a projected user, or None."""
    found = await run(GET_USER, [PREFIX + "u:" + username.lower()], [])
    if not found:
        return None
    name, born = (x.decode() if isinstance(x, bytes) else str(x) for x in found)
    return name, dt.date.fromisoformat(born)


async def store_page(run: Runner, kind: str, generation: str, qhash: str, page: bytes) -> None:
    """Cache ``page`` under the generation it was read at, within the kind's bounds (none when it is too big)."""
    if len(page) > PAGE_MAX_BYTES:
        return
    keys = [page_key(kind, generation, qhash), f"{PREFIX}qi:{kind}", f"{PREFIX}qb:{kind}"]
    await run(SET_PAGE, keys, [page, PAGE_TTL_SECONDS, PAGES_PER_KIND, PAGE_BYTES_PER_KIND])


def redis_runner(client: Any) -> Runner:
    """A :data:`Runner` over a redis-py (asyncio) client; scripts are loaded once and run by SHA."""
    scripts: dict[str, Any] = {}

    async def run(script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        s = scripts.get(script)
        if s is None:
            s = scripts[script] = client.register_script(script)
        return await s(keys=list(keys), args=list(args))

    return run
