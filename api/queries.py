"""Read use cases: each returns the exact response bytes (and the ETag for single resources)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import asyncpg

from shared import birthdays, cursors, views
from shared.db import connection
from shared.errors import BadRequest, NotFound
from shared.repo import categories as cat_repo
from shared.repo import products as prod_repo
from shared.repo import records as rec_repo
from shared.repo import users as user_repo


def _after_id(kind: str, cursor: str | None) -> int | None:
    if cursor is None:
        return None
    key = cursors.decode(kind, cursor)
    if len(key) != 1 or not isinstance(key[0], int) or isinstance(key[0], bool):
        raise BadRequest("cursor is malformed")
    return int(key[0])


def _page(items: list[Any], next_cursor: str | None) -> bytes:
    return views.dumps({"items": items, "next_cursor": next_cursor})


async def category(pool: asyncpg.Pool, wait: float, slug: str) -> tuple[bytes, str]:
    async with connection(pool, wait) as conn:
        c = await cat_repo.get_by_slug(conn, slug)
    if c is None:
        raise NotFound(f"no category {slug!r}")
    return views.dumps(views.category(c)), views.category_etag(c)


async def categories(pool: asyncpg.Pool, wait: float, limit: int, cursor: str | None) -> bytes:
    after = _after_id("categories", cursor)
    async with connection(pool, wait) as conn:
        rows = await cat_repo.list_page(conn, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = cursors.encode("categories", [rows[-1].id]) if more else None
    return _page([views.category(c) for c in rows], nxt)


async def product(pool: asyncpg.Pool, wait: float, media_url: str, slug: str) -> tuple[bytes, str]:
    async with connection(pool, wait) as conn:
        p = await prod_repo.get_by_slug(conn, slug)
    if p is None:
        raise NotFound(f"no product {slug!r}")
    return views.dumps(views.product(p, media_url)), views.etag(p.version)


async def products(
    pool: asyncpg.Pool,
    wait: float,
    media_url: str,
    filters: prod_repo.Filters,
    sort: str,
    limit: int,
    cursor: str | None,
) -> bytes:
    kind = f"products:{sort}"
    after = None
    if cursor is not None:
        try:
            after = prod_repo.parse_sort_key(sort, cursors.decode(kind, cursor))
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise BadRequest("cursor is malformed") from exc
    async with connection(pool, wait) as conn:
        rows = await prod_repo.list_page(conn, filters, sort, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = cursors.encode(kind, prod_repo.sort_key(rows[-1], sort)) if more else None
    return _page([views.product(p, media_url) for p in rows], nxt)


async def record(pool: asyncpg.Pool, wait: float, record_id: int) -> tuple[bytes, str, Any]:
    """The record's representation, its ETag, and the stored document itself (for the legacy routes)."""
    async with connection(pool, wait) as conn:
        r = await rec_repo.get(conn, record_id)
    if r is None:
        raise NotFound(f"no record {record_id}")
    return views.dumps(views.record(r)), views.etag(r.version), r.data


async def records(pool: asyncpg.Pool, wait: float, limit: int, cursor: str | None) -> bytes:
    after = _after_id("records", cursor)
    async with connection(pool, wait) as conn:
        rows = await rec_repo.list_page(conn, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = cursors.encode("records", [rows[-1].id]) if more else None
    return _page([views.record(r) for r in rows], nxt)


async def all_records(pool: asyncpg.Pool, wait: float) -> list[tuple[int, Any]]:
    """Every live record as (id, document), for the legacy list routes that have no paging."""
    async with connection(pool, wait) as conn:
        rows = await rec_repo.list_page(conn, None, None)
    return [(r.id, r.data) for r in rows]


async def greeting(pool: asyncpg.Pool, wait: float, username: str, today: dt.date) -> bytes:
    async with connection(pool, wait) as conn:
        user = await user_repo.get(conn, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    return views.dumps({"message": birthdays.greeting(username, user.date_of_birth, today)})


async def birthdays_today(pool: asyncpg.Pool, wait: float, today: dt.date) -> bytes:
    month, days = birthdays.birth_days_celebrated_on(today)
    async with connection(pool, wait) as conn:
        users = await user_repo.born_on(conn, month, days)
    return views.dumps({"date": today.isoformat(), "usernames": [u.name for u in users]})


def parse_price(raw: str | None, name: str) -> Decimal | None:
    if raw is None:
        return None
    try:
        value = Decimal(raw)
    except ArithmeticError as exc:
        raise BadRequest(f"{name} must be a decimal number") from exc
    if not value.is_finite() or value < 0:
        raise BadRequest(f"{name} must be a decimal number >= 0")
    return value
