"""Read use cases: Redis first (one round trip, the stored bytes unparsed), PostgreSQL on a miss.

A miss is answered from PostgreSQL and the answer is projected into Redis through the same version check the
cache worker uses, so a fill never replaces a newer projection. Redis being down is a miss, never an error.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import asyncpg

from shared import birthdays, cursors, numbers
from shared.cursors import Cursors
from shared.errors import FieldError, NotFound, ServiceUnavailable
from shared.logs import get_logger
from shared.models import Category, Record
from shared.readmodel import keys, read, render
from shared.readmodel.client import REDIS_ERRORS, FastRedis, Runner
from shared.readmodel.debts import Guard
from shared.readmodel.project import project
from shared.readmodel.read import Stats
from shared.store import categories as cat_repo
from shared.store import products as prod_repo
from shared.store import records as rec_repo
from shared.store import users as user_repo
from shared.store.pool import connection

T = TypeVar("T")
E = TypeVar("E", Category, Record)
log = get_logger("api.reads")


@dataclass(frozen=True)
class Reads:
    """What every query needs: PostgreSQL, the read model's Redis connection, and the media URL."""

    pool: asyncpg.Pool
    wait: float
    redis: FastRedis
    media_url: str
    stats: Stats
    #: Makes and checks the listings' cursors (``CURSOR_SECRET``).
    cursors: Cursors
    #: Redis is read only while trusted: after its connection failed, once the read-model debts are repaid.
    guard: Guard


async def _redis(r: Reads, call: Callable[[Runner], Awaitable[T]], *, counted: bool = True) -> T | None:
    """What ``call`` reads from Redis, or None where Redis cannot answer; counted as a hit or a miss unless the
    caller counts it (``counted``: a listing counts where its page came from); a failure is an error either way."""
    if r.redis.suspect and not await r.guard.settle():
        r.stats.errors += 1
        return None
    try:
        result = await call(r.redis.run_script)
    except REDIS_ERRORS as exc:
        r.stats.errors += 1
        log.debug("redis_unavailable", error=type(exc).__name__)
        return None
    if counted:
        if result is None:
            r.stats.misses += 1
        else:
            r.stats.hits += 1
    return result


async def _fill(r: Reads, call: Callable[[Runner], Awaitable[Any]]) -> None:
    try:
        await call(r.redis.run_script)
    except REDIS_ERRORS as exc:
        r.stats.errors += 1
        log.debug("redis_fill_failed", error=type(exc).__name__)


async def _one(
    r: Reads,
    cached: Callable[[Runner], Awaitable[tuple[bytes, str] | None]],
    load: Callable[[asyncpg.Connection], Awaitable[E | None]],
) -> tuple[bytes, str] | E | None:
    """The stored (bytes, ETag) on a hit; else the entity from PostgreSQL (projected on the way), or None."""
    hit = await _redis(r, cached)
    if hit is not None:
        return hit
    async with connection(r.pool, r.wait) as conn:
        entity = await load(conn)
    if entity is not None:
        await _fill(r, lambda run: project(run, entity, r.media_url))
    return entity


def _after_id(r: Reads, kind: str, cursor: str | None) -> int | None:
    if cursor is None:
        return None
    key = r.cursors.decode(kind, cursor)
    if len(key) != 1:
        raise cursors.malformed()
    try:
        return numbers.row_id(key[0])
    except ValueError as exc:
        raise cursors.malformed() from exc


def _page(items: list[Any], next_cursor: str | None) -> bytes:
    return render.dumps({"items": items, "next_cursor": next_cursor})


def _by_id(
    r: Reads,
    kind: str,
    list_page: Callable[[asyncpg.Connection, int | None, int], Awaitable[list[Any]]],
    shape: Callable[[Any], dict[str, Any]],
    after: int | None,
    limit: int,
) -> Callable[[], Awaitable[tuple[bytes, bool]]]:
    """How to build a page of a listing in id order from PostgreSQL (its cursor: the last id)."""

    async def build() -> tuple[bytes, bool]:
        async with connection(r.pool, r.wait) as conn:
            rows = await list_page(conn, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = r.cursors.encode(kind, [rows[-1].id]) if more else None
        return _page([shape(row) for row in rows], nxt), False

    return build


#: Builds of a listing page in flight in this process, by (kind, generation, query hash): the concurrent misses of
#: one listing (every connection that reads it right after a write moved its generation on) wait for one build and
#: one store instead of each running the query. Keyed by the generation each read, so none is answered with a page
#: older than what its own read of the counter promised.
_BUILDING: dict[tuple[str, str, str], asyncio.Future[tuple[bytes, bool]]] = {}


async def _cached_listing(
    r: Reads,
    kind: str,
    qhash: str,
    build: Callable[[], Awaitable[tuple[bytes, bool]]],
    category: str | None = None,
    counters: list[str] | None = None,
) -> bytes:
    """A listing page cached under ``kind``'s generation counter (bumped by every write of that kind), or for a
    listing of one ``category`` under that category's, or under the tag ``counters`` it depends on (each bumped
    only by the writes that can change it). ``build`` makes the page: its bytes, and whether it read them from
    Redis (the sorted sets) rather than PostgreSQL."""
    # Counted once, here: a hit when the page (or its build, from the sorted sets) came from Redis, else a miss.
    cached = await _redis(r, lambda run: read.cached_page(run, kind, qhash, category, counters), counted=False)
    if cached is not None and cached[1] is not None:
        r.stats.hits += 1
        return cached[1]
    if cached is None:
        page, from_redis = await build()
    else:
        generation = cached[0]

        async def built() -> tuple[bytes, bool]:
            page, from_redis = await build()
            await _fill(r, lambda run: read.store_page(run, kind, generation, qhash, page))
            return page, from_redis

        key = (kind, generation, qhash)
        flight = _BUILDING.get(key)
        if flight is None:
            flight = _BUILDING[key] = asyncio.ensure_future(built())
            flight.add_done_callback(lambda done: (_BUILDING.pop(key, None), done.cancelled() or done.exception()))
        # A client that leaves does not cancel the build that others wait for.
        page, from_redis = await asyncio.shield(flight)
    if from_redis:
        r.stats.hits += 1
    else:
        r.stats.misses += 1
    return page


# -- categories -----------------------------------------------------------------------------------


async def category(r: Reads, slug: str) -> tuple[bytes, str]:
    c = await _one(r, lambda run: read.category_by_slug(run, slug), lambda conn: cat_repo.get_by_slug(conn, slug))
    if c is None:
        raise NotFound(f"no category {slug!r}")
    return c if isinstance(c, tuple) else (render.dumps(render.category(c)), render.category_etag(c))


async def categories(r: Reads, limit: int, cursor: str | None) -> bytes:
    after = _after_id(r, "categories", cursor)
    build = _by_id(r, "categories", cat_repo.list_page, render.category, after, limit)
    return await _cached_listing(r, "categories", keys.page_hash(limit, after), build)


async def numbered_categories(r: Reads, page: int, size: int) -> Numbered:
    """Page ``page`` (1-based; 0 for the last) of ``size`` categories by id, within :data:`NUMBERED_WINDOW`."""

    async def rows_at(conn: asyncpg.Connection, offset: int, limit: int) -> list[dict[str, Any]]:
        return [render.category(c) for c in await cat_repo.list_at(conn, offset, limit)]

    return await _numbered_window(
        r,
        "categories",
        keys.page_hash("numbered", page, size),
        lambda conn: cat_repo.count_upto(conn, NUMBERED_WINDOW),
        rows_at,
        page,
        size,
    )


# -- products -------------------------------------------------------------------------------------


async def product(r: Reads, slug: str) -> tuple[bytes, str] | None:
    """The product's bytes and ETag, or None when there is no such product.

    Absence is a value here, not a raised NotFound: a flood of reads of slugs that do not exist is answered
    without unwinding an exception through every layer (it must cost no more than a hit, issue 10)."""
    copy = await _redis(r, lambda _: r.redis.execute("GET", keys.product_copy(slug)))
    if copy == keys.ABSENT:  # PostgreSQL had no such product a moment ago (no write since)
        return None
    hit = read.split_copy(copy)
    if hit is not None:
        return hit
    async with connection(r.pool, r.wait) as conn:
        p = await prod_repo.get_by_slug(conn, slug)
    if p is None:
        await _fill(r, lambda run: read.mark_product_absent(run, slug))
        return None
    await _fill(r, lambda run: project(run, p, r.media_url))
    return render.dumps(render.product(p, r.media_url)), render.etag(p.version)


#: ``q`` -> a lexeme every product it matches has (or None), for the last few thousand ``q`` seen: bounded, and
#: the oldest leaves first (never the whole map at once).
_REQUIRED: OrderedDict[str, str | None] = OrderedDict()
_REQUIRED_AT_MOST: Final = 4096


async def _listing_counters(r: Reads, filters: prod_repo.Filters) -> list[str] | None:
    """What a cached page of a listing of no category depends on (:func:`shared.readmodel.keys.listing_counters`);
    for ``q``, PostgreSQL's own parse of it (once per ``q`` and process; if PostgreSQL cannot say, the page
    depends on every write)."""
    if filters.category is not None:
        return None
    lexeme = None
    if filters.q:
        if filters.q in _REQUIRED:
            lexeme = _REQUIRED[filters.q]
        else:
            try:
                async with connection(r.pool, r.wait) as conn:
                    lexeme = _REQUIRED[filters.q] = await prod_repo.required_lexeme(conn, filters.q)
            except (ServiceUnavailable, asyncpg.PostgresError, OSError):
                return None
            if len(_REQUIRED) > _REQUIRED_AT_MOST:
                _REQUIRED.popitem(last=False)
    # A q that names no lexeme every match has leaves the other filters, which every match meets too.
    return keys.listing_counters(lexeme, filters.min_price, filters.max_price, filters.in_stock)


def _indexed(filters: prod_repo.Filters, sort: str) -> bool:
    """Whether the listing is one the sorted sets serve: all products or one category, by date or price."""
    only_category = filters == prod_repo.Filters(category=filters.category, is_active=True)
    return only_category and sort in keys.INDEXED_SORTS


async def _indexed_page(r: Reads, filters: prod_repo.Filters, sort: str, after: Any, limit: int) -> bytes | None:
    """A page from the sorted sets, or None (not counted: :func:`_cached_listing` counts the listing's read)."""
    page = await _redis(r, lambda run: read.product_page(run, sort, filters.category, after, limit + 1), counted=False)
    if page is None:
        return None
    rows = page.rows
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        last_id, last_score, _ = rows[-1]
        nxt = r.cursors.encode(f"products:{sort}", keys.sort_key_from_score(sort, last_id, last_score))
    # The stored bytes of each product go into the page as they are.
    return b'{"items":[' + b",".join(body for _, _, body in rows) + b'],"next_cursor":' + render.dumps(nxt) + b"}"


async def products(r: Reads, filters: prod_repo.Filters, sort: str, limit: int, cursor: str | None) -> bytes:
    kind = f"products:{sort}"
    after = None
    if cursor is not None:
        try:
            after = prod_repo.parse_sort_key(sort, r.cursors.decode(kind, cursor))
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise cursors.malformed() from exc
    indexed = _indexed(filters, sort)

    async def build() -> tuple[bytes, bool]:
        # The common listings come from the sorted sets; the rest (and a Redis that cannot answer) from PostgreSQL.
        if indexed:
            page = await _indexed_page(r, filters, sort, after, limit)
            if page is not None:
                return page, True
        async with connection(r.pool, r.wait) as conn:
            rows = await prod_repo.list_page(conn, filters, sort, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = r.cursors.encode(kind, prod_repo.sort_key(rows[-1], sort)) if more else None
        return _page([render.product(p, r.media_url) for p in rows], nxt), False

    qhash = keys.page_hash(filters, sort, limit, cursor)
    counters = None if indexed else await _listing_counters(r, filters)
    return await _cached_listing(r, "products", qhash, build, filters.category, counters)


#: A numbered page (Django REST framework's ``page``) that PostgreSQL answers (full-text search, price or stock
#: filters, inactive products, ``name`` order, or a Redis that cannot answer) counts at most this many products
#: and reaches no further than them: the count stops at the window's end and no OFFSET goes past it, at any page
#: number (a filter that matches few products may still read more rows to find them; its index decides). The
#: sorted sets answer their listings at any depth, with the exact count.
NUMBERED_WINDOW: Final = 10_000


@dataclass(frozen=True)
class Numbered:
    """A numbered page: how many products the listing holds (at most :data:`NUMBERED_WINDOW` where PostgreSQL
    counts), which page this is, the last page's number, and the page's products as a JSON array."""

    count: int
    page: int
    last: int
    results: bytes


def _numbered(count: int, page: int, size: int, results: bytes) -> Numbered:
    """The page, or 404 "Invalid page." (as Django REST framework answers) when it lies past the last."""
    last = max(1, -(-count // size))
    if page > last:
        raise NotFound("Invalid page.", errors=[FieldError(loc=["query", "page"], msg=f"the last page is {last}")])
    return Numbered(count, page, last, results)


async def numbered_products(r: Reads, filters: prod_repo.Filters, sort: str, page: int, size: int) -> Numbered:
    """Page ``page`` (1-based; 0 for the last) of ``size`` products: by rank from the sorted sets where they serve
    the listing, else from PostgreSQL within :data:`NUMBERED_WINDOW` (cached under the listing's generation)."""
    if _indexed(filters, sort):
        hit = await _redis(r, lambda run: read.product_rank_page(run, sort, filters.category, page, size))
        if hit is not None:
            return _numbered(hit.count, hit.page, size, b"[" + b",".join(hit.bodies) + b"]")

    async def rows_at(conn: asyncpg.Connection, offset: int, limit: int) -> list[dict[str, Any]]:
        return [render.product(p, r.media_url) for p in await prod_repo.list_at(conn, filters, sort, offset, limit)]

    return await _numbered_window(
        r,
        "products",
        keys.page_hash("numbered", filters, sort, page, size),
        lambda conn: prod_repo.count_upto(conn, filters, NUMBERED_WINDOW),
        rows_at,
        page,
        size,
        filters.category,
        await _listing_counters(r, filters),
    )


async def _numbered_window(
    r: Reads,
    kind: str,
    qhash: str,
    count_upto: Callable[[asyncpg.Connection], Awaitable[int]],
    rows_at: Callable[[asyncpg.Connection, int, int], Awaitable[list[dict[str, Any]]]],
    page: int,
    size: int,
    category: str | None = None,
    counters: list[str] | None = None,
) -> Numbered:
    """A numbered page from PostgreSQL: counted (at most :data:`NUMBERED_WINDOW`) and cut by offset within that
    window, cached as :func:`_cached_listing` caches (``category``, ``counters``: what the page depends on)."""

    async def build() -> tuple[bytes, bool]:
        async with connection(r.pool, r.wait) as conn:
            count = await count_upto(conn)
            number = page or max(1, -(-count // size))
            offset = (number - 1) * size
            # Never past the window: its last page ends where the count stops.
            rows = [] if offset >= count else await rows_at(conn, offset, min(size, count - offset))
        # Cached as one value: the count and the page number, a newline, the page's items.
        return f"{count} {number}\n".encode() + render.dumps(rows), False

    head, _, results = (await _cached_listing(r, kind, qhash, build, category, counters)).partition(b"\n")
    count, number = (int(n) for n in head.split())
    return _numbered(count, number, size, results)


# -- records --------------------------------------------------------------------------------------


async def record(r: Reads, record_id: int) -> tuple[bytes, str]:
    rec = await _one(r, lambda run: read.record_by_id(run, record_id), lambda conn: rec_repo.get(conn, record_id))
    if rec is None:
        raise NotFound(f"no record {record_id}")
    return rec if isinstance(rec, tuple) else (render.dumps(render.record(rec)), render.etag(rec.version))


async def legacy_record(r: Reads, collection: str, record_id: int) -> tuple[Record, str]:
    """A live record of an older service's own collection, from PostgreSQL (the read model keeps no
    collection), and its ETag."""
    async with connection(r.pool, r.wait) as conn:
        rec = await rec_repo.get_in(conn, collection, record_id)
    if rec is None:
        raise NotFound(f"no record {record_id}")
    return rec, render.etag(rec.version)


async def records(r: Reads, limit: int, cursor: str | None) -> bytes:
    after = _after_id(r, "records", cursor)
    build = _by_id(r, "records", rec_repo.list_page, render.record, after, limit)
    return await _cached_listing(r, "records", keys.page_hash("api", limit, after), build)


#: The legacy list routes (``GET /data``, ``GET /picus/list``) answer at most this many records at once ...
LEGACY_MAX_ITEMS = 100
#: ... and at most this many bytes of documents (always at least one record); a ``Link: rel="next"`` says where
#: the rest is.
LEGACY_MAX_BYTES = 2 * 1024 * 1024


async def legacy_records(
    r: Reads, shape: Callable[[list[Record]], Any], limit: int, cursor: str | None, collection: str | None = None
) -> tuple[bytes, str | None]:
    """A bounded page of live records (of ``collection``) shaped by ``shape`` (a bare JSON array, as the older
    services answered), and the cursor of the next page (None on the last)."""
    after = _after_id(r, "records:legacy", cursor)

    async def build() -> tuple[bytes, bool]:
        async with connection(r.pool, r.wait) as conn:
            rows, more = await rec_repo.list_bounded(conn, after, limit, LEGACY_MAX_BYTES, collection)
        nxt = r.cursors.encode("records:legacy", [rows[-1].id]) if more and rows else ""
        # Cached as one value: the next cursor (or nothing), a newline, the page.
        return nxt.encode() + b"\n" + render.dumps(shape(rows)), False

    cached = await _cached_listing(
        r, "records", keys.page_hash("legacy", collection, shape.__name__, limit, after), build
    )
    cut = cached.index(b"\n")
    return cached[cut + 1 :], cached[:cut].decode() or None


# -- birthdays ------------------------------------------------------------------------------------


async def greeting(r: Reads, username: str, today: dt.date) -> bytes:
    hit = await _redis(r, lambda run: read.user(run, username))
    if hit is not None:
        born = hit[1]
    else:
        async with connection(r.pool, r.wait) as conn:
            u = await user_repo.get(conn, username)
        if u is None:
            raise NotFound(f"no user {username!r}")
        await _fill(r, lambda run: project(run, u, r.media_url))
        born = u.date_of_birth
    return render.dumps({"message": birthdays.greeting(username, born, today)})


async def birthdays_today(r: Reads, today: dt.date) -> bytes:
    month, days = birthdays.birth_days_celebrated_on(today)
    names = await _redis(r, lambda run: read.birthdays(run, [(month, d) for d in days]))
    if names is None:
        async with connection(r.pool, r.wait) as conn:
            users = await user_repo.born_on(conn, month, days)
        names = [u.name for u in users]
    return render.dumps({"date": today.isoformat(), "usernames": names})
