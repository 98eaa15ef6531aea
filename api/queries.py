"""Read use cases: Redis first (one round trip, the stored bytes unparsed), PostgreSQL on a miss.

A miss is answered from PostgreSQL and the answer is projected into Redis through the same version check the
cache worker uses, so a fill never replaces a newer projection. Redis being down is a miss, never an error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg
from redis.exceptions import RedisError

from shared import birthdays, cursors, numbers, readmodel, views
from shared.cursors import Cursors
from shared.db import connection
from shared.errors import BadRequest, FieldError, NotFound
from shared.logs import get_logger
from shared.models import Category, Product, Record, User, Written
from shared.repo import categories as cat_repo
from shared.repo import products as prod_repo
from shared.repo import records as rec_repo
from shared.repo import users as user_repo

T = TypeVar("T")
log = get_logger("api.reads")

#: What a Redis call may raise when Redis is slow or gone: each is a miss (or a skipped fill), never a 5xx.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


@dataclass
class Stats:
    """Cache outcomes, counted per process (exported as metrics)."""

    hits: int = 0
    misses: int = 0
    errors: int = 0


@dataclass(frozen=True)
class Reads:
    """What every query needs: PostgreSQL, the Redis script runner (None without Redis), and the media URL."""

    pool: asyncpg.Pool
    wait: float
    run: readmodel.Runner | None
    media_url: str
    stats: Stats
    #: Makes and checks the listings' cursors (``CURSOR_SECRET``).
    cursors: Cursors
    #: A plain GET over the same connection (None without Redis): the read by slug needs no script.
    get: Callable[[str], Awaitable[bytes | None]] | None = None


async def _redis(r: Reads, call: Callable[[readmodel.Runner], Awaitable[T]]) -> T | None:
    if r.run is None:
        return None
    try:
        result = await call(r.run)
    except REDIS_ERRORS as exc:
        r.stats.errors += 1
        log.debug("redis_unavailable", error=type(exc).__name__)
        return None
    if result is None:
        r.stats.misses += 1
    else:
        r.stats.hits += 1
    return result


async def _fill(r: Reads, call: Callable[[readmodel.Runner], Awaitable[Any]]) -> None:
    if r.run is None:
        return
    try:
        await call(r.run)
    except REDIS_ERRORS as exc:
        r.stats.errors += 1
        log.debug("redis_fill_failed", error=type(exc).__name__)


async def project(r: Reads, written: Written) -> None:
    """Write-through after a committed write: the client's next read sees at least this version."""
    e = written.entity
    if isinstance(e, Product):
        await _fill(r, lambda run: readmodel.project_product(run, e, r.media_url, written.deleted, from_write=True))
    elif isinstance(e, Category):
        await _fill(r, lambda run: readmodel.project_category(run, e, written.deleted))
    elif isinstance(e, Record):
        await _fill(r, lambda run: readmodel.project_record(run, e, written.deleted))
    elif isinstance(e, User):
        await _fill(r, lambda run: readmodel.project_user(run, e))


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
    return views.dumps({"items": items, "next_cursor": next_cursor})


async def _cached_listing(r: Reads, kind: str, qhash: str, build: Callable[[], Awaitable[bytes]]) -> bytes:
    """A listing page cached under ``kind``'s generation counter (bumped by every write of that kind)."""
    cached = await _redis(r, lambda run: readmodel.cached_page(run, kind, qhash))
    if cached is not None and cached[1] is not None:
        return cached[1]
    page = await build()
    if cached is not None:
        generation = cached[0]
        await _fill(r, lambda run: readmodel.store_page(run, kind, generation, qhash, page))
    return page


# -- categories -----------------------------------------------------------------------------------


async def category(r: Reads, slug: str) -> tuple[bytes, str]:
    hit = await _redis(r, lambda run: readmodel.category_by_slug(run, slug))
    if hit is not None:
        return hit
    async with connection(r.pool, r.wait) as conn:
        c = await cat_repo.get_by_slug(conn, slug)
    if c is None:
        raise NotFound(f"no category {slug!r}")
    await _fill(r, lambda run: readmodel.project_category(run, c))
    return views.dumps(views.category(c)), views.category_etag(c)


async def categories(r: Reads, limit: int, cursor: str | None) -> bytes:
    after = _after_id(r, "categories", cursor)

    async def build() -> bytes:
        async with connection(r.pool, r.wait) as conn:
            rows = await cat_repo.list_page(conn, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = r.cursors.encode("categories", [rows[-1].id]) if more else None
        return _page([views.category(c) for c in rows], nxt)

    return await _cached_listing(r, "categories", readmodel.page_hash(limit, after), build)


# -- products -------------------------------------------------------------------------------------


async def product(r: Reads, slug: str) -> tuple[bytes, str]:
    get = r.get
    if get is not None:
        copy = await _redis(r, lambda _: get(readmodel.product_copy_key(slug)))
        if copy == readmodel.ABSENT:  # PostgreSQL had no such product a moment ago (no write since)
            # Raised here, at the query's own level, not from inside the Redis call: fewer frames to unwind.
            raise NotFound(f"no product {slug!r}")
        hit = readmodel.split_copy(copy)
    else:
        hit = await _redis(r, lambda run: readmodel.product_by_slug(run, slug))
    if hit is not None:
        return hit
    async with connection(r.pool, r.wait) as conn:
        p = await prod_repo.get_by_slug(conn, slug)
    if p is None:
        await _fill(r, lambda run: readmodel.mark_product_absent(run, slug))
        raise NotFound(f"no product {slug!r}")
    await _fill(r, lambda run: readmodel.project_product(run, p, r.media_url))
    return views.dumps(views.product(p, r.media_url)), views.etag(p.version)


def _indexed(filters: prod_repo.Filters, sort: str) -> bool:
    """Whether the listing is one the sorted sets serve: all products or one category, by date or price."""
    only_category = filters == prod_repo.Filters(category=filters.category)
    return only_category and sort in readmodel.INDEXED_SORTS


async def _indexed_page(r: Reads, filters: prod_repo.Filters, sort: str, after: Any, limit: int) -> bytes | None:
    page = await _redis(r, lambda run: readmodel.product_page(run, sort, filters.category, after, limit + 1))
    if page is None:
        return None
    rows = page.rows
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        last_id, last_score, _ = rows[-1]
        nxt = r.cursors.encode(f"products:{sort}", readmodel.sort_key_from_score(sort, last_id, last_score))
    # The stored bytes of each product go into the page as they are.
    return b'{"items":[' + b",".join(body for _, _, body in rows) + b'],"next_cursor":' + views.dumps(nxt) + b"}"


async def products(r: Reads, filters: prod_repo.Filters, sort: str, limit: int, cursor: str | None) -> bytes:
    kind = f"products:{sort}"
    after = None
    if cursor is not None:
        try:
            after = prod_repo.parse_sort_key(sort, r.cursors.decode(kind, cursor))
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise cursors.malformed() from exc
    indexed = _indexed(filters, sort)

    async def build() -> bytes:
        # The common listings come from the sorted sets; the rest (and a Redis that cannot answer) from PostgreSQL.
        if indexed:
            page = await _indexed_page(r, filters, sort, after, limit)
            if page is not None:
                return page
        async with connection(r.pool, r.wait) as conn:
            rows = await prod_repo.list_page(conn, filters, sort, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = r.cursors.encode(kind, prod_repo.sort_key(rows[-1], sort)) if more else None
        return _page([views.product(p, r.media_url) for p in rows], nxt)

    qhash = readmodel.page_hash(filters, sort, limit, cursor)
    return await _cached_listing(r, "products", qhash, build)


# -- records --------------------------------------------------------------------------------------


async def record(r: Reads, record_id: int) -> tuple[bytes, str]:
    hit = await _redis(r, lambda run: readmodel.record_by_id(run, record_id))
    if hit is not None:
        return hit
    async with connection(r.pool, r.wait) as conn:
        rec = await rec_repo.get(conn, record_id)
    if rec is None:
        raise NotFound(f"no record {record_id}")
    await _fill(r, lambda run: readmodel.project_record(run, rec))
    return views.dumps(views.record(rec)), views.etag(rec.version)


async def records(r: Reads, limit: int, cursor: str | None) -> bytes:
    after = _after_id(r, "records", cursor)

    async def build() -> bytes:
        async with connection(r.pool, r.wait) as conn:
            rows = await rec_repo.list_page(conn, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = r.cursors.encode("records", [rows[-1].id]) if more else None
        return _page([views.record(x) for x in rows], nxt)

    return await _cached_listing(r, "records", readmodel.page_hash("api", limit, after), build)


#: The legacy list routes (``GET /data``, ``GET /picus/list``) answer at most this many records at once ...
LEGACY_MAX_ITEMS = 100
#: ... and at most this many bytes of documents (always at least one record); a ``Link: rel="next"`` says where
#: the rest is.
LEGACY_MAX_BYTES = 2 * 1024 * 1024


async def legacy_records(
    r: Reads, shape: Callable[[list[Record]], Any], limit: int, cursor: str | None
) -> tuple[bytes, str | None]:
    """A bounded page of live records shaped by ``shape`` (a bare JSON array, as the older services answered),
    and the cursor of the next page (None on the last)."""
    after = _after_id(r, "records:legacy", cursor)

    async def build() -> bytes:
        async with connection(r.pool, r.wait) as conn:
            rows, more = await rec_repo.list_bounded(conn, after, limit, LEGACY_MAX_BYTES)
        nxt = r.cursors.encode("records:legacy", [rows[-1].id]) if more and rows else ""
        # Cached as one value: the next cursor (or nothing), a newline, the page.
        return nxt.encode() + b"\n" + views.dumps(shape(rows))

    cached = await _cached_listing(r, "records", readmodel.page_hash("legacy", shape.__name__, limit, after), build)
    cut = cached.index(b"\n")
    return cached[cut + 1 :], cached[:cut].decode() or None


# -- birthdays ------------------------------------------------------------------------------------


async def greeting(r: Reads, username: str, today: dt.date) -> bytes:
    hit = await _redis(r, lambda run: readmodel.user(run, username))
    if hit is not None:
        born = hit[1]
    else:
        async with connection(r.pool, r.wait) as conn:
            u = await user_repo.get(conn, username)
        if u is None:
            raise NotFound(f"no user {username!r}")
        await _fill(r, lambda run: readmodel.project_user(run, u))
        born = u.date_of_birth
    return views.dumps({"message": birthdays.greeting(username, born, today)})


async def birthdays_today(r: Reads, today: dt.date) -> bytes:
    month, days = birthdays.birth_days_celebrated_on(today)
    names = await _redis(r, lambda run: readmodel.birthdays(run, [(month, d) for d in days]))
    if names is None:
        async with connection(r.pool, r.wait) as conn:
            users = await user_repo.born_on(conn, month, days)
        names = [u.name for u in users]
    return views.dumps({"date": today.isoformat(), "usernames": names})


def parse_price(raw: str | None, name: str) -> Decimal | None:
    """A price filter, by the same rule as a body's ``price`` (:func:`shared.numbers.price`); 400 otherwise."""
    if raw is None:
        return None
    try:
        return numbers.price(raw)
    except ValueError as exc:
        msg = f"must be a price (a decimal number >= 0 with at most 2 places): {exc}"
        raise BadRequest(f"{name} {msg}", errors=[FieldError(loc=["query", name], msg=msg)]) from exc
