"""``python -m worker cache rebuild [--if-missing]``: re-project every entity from PostgreSQL into Redis.

For an empty Redis (after a flush, or on a new machine) or a new projection format. Listings are served from
the sorted sets only once a rebuild has completed (the ``ready`` flags it sets last).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from shared.logs import configure_logging, get_logger
from shared.readmodel import keys
from shared.readmodel.client import redis_runner
from shared.settings import Settings
from shared.store import categories as cat_repo
from shared.store import products as prod_repo
from shared.store import records as rec_repo
from shared.store import users as user_repo
from shared.store.pool import connection, create_pool
from worker.progress import progress_bar
from worker.readmodel.refresh import Resources, project_category, project_product, project_record, project_user

BATCH = 500
#: The ``ready`` flags a completed rebuild sets, and their values (see :data:`shared.readmodel.keys.PRODUCTS_READY`).
READY_FIELDS: dict[Any, str] = {"products": keys.PRODUCTS_READY, "users": "1"}


async def _each(
    res: Resources,
    name: str,
    total_sql: str,
    page: Callable[[Any, Any, int], Awaitable[list[Any]]],
    first: Any,
    project: Callable[[Resources, Any], Awaitable[bool]],
    progress: bool,
) -> int:
    async with connection(res.pool, res.wait) as conn:
        total = await conn.fetchval(total_sql)
    done = 0
    with progress_bar(total=total, desc=name, unit="", disable=not progress) as bar:
        after = first
        while True:
            async with connection(res.pool, res.wait) as conn:
                ids = await page(conn, after, BATCH)
            if not ids:
                break
            await asyncio.gather(*(project(res, i) for i in ids))
            done += len(ids)
            bar.update(len(ids))
            after = ids[-1]
    return done


async def _drop_product_indexes(client: aioredis.Redis) -> None:
    """Drop the product sorted sets and projections of an older format: its sets may hold what the current one
    leaves out (inactive products), and re-projecting a product at the same version and position would change
    nothing. The rebuild then projects every product afresh; until it is done no listing reads the sets, and a
    product's read misses to PostgreSQL (its slug copy, the current bytes, still answers)."""
    for pattern in ("idx:*", "p:*"):
        batch: list[bytes] = []
        async for key in client.scan_iter(match=keys.PREFIX + pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)


async def rebuild(settings: Settings, *, if_missing: bool = False, progress: bool = True) -> dict[str, int]:
    """Project everything; returns how many of each kind. With ``if_missing``, only if not done before."""
    client = aioredis.from_url(settings.redis_url, socket_timeout=10)
    pool = await create_pool(settings, max_size=4)
    try:
        ready = await client.hmget(keys.READY, list(READY_FIELDS))
        if if_missing and ready == [v.encode() for v in READY_FIELDS.values()]:
            return {}
        if ready[0] != keys.PRODUCTS_READY.encode():
            await _drop_product_indexes(client)
        res = Resources(pool, redis_runner(client), settings.media_url)
        counts = {
            "categories": await _each(
                res, "categories", "SELECT count(*) FROM categories", cat_repo.ids_after, 0, project_category, progress
            ),
            "products": await _each(
                res, "products", "SELECT count(*) FROM products", prod_repo.ids_after, 0, project_product, progress
            ),
            "records": await _each(
                res, "records", "SELECT count(*) FROM records", rec_repo.ids_after, 0, project_record, progress
            ),
            "users": await _each(
                res, "users", "SELECT count(*) FROM users", user_repo.usernames_after, "", project_user, progress
            ),
        }
        await client.hset(keys.READY, mapping=READY_FIELDS)
        return counts
    finally:
        await pool.close()
        await client.aclose()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker cache rebuild", description=__doc__)
    parser.add_argument("--if-missing", action="store_true", help="do nothing if a rebuild has completed before")
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings, "cache-rebuild")
    counts = asyncio.run(rebuild(settings, if_missing=args.if_missing))
    get_logger("worker.rebuild").info("rebuilt" if counts else "rebuild_skipped", **counts)
    return 0
