"""``python -m worker cache rebuild [--if-missing] [--processes N]``: re-project every entity from PostgreSQL into
Redis.

For an empty Redis (after a flush, or on a new machine), a new projection layout, or rows loaded behind the
pipeline's back (``python -m bench seed``). Products, which may be millions, are read in keyset pages of the
primary key (:data:`PAGE` rows a query, in id order) and projected :data:`CALL` to a script call
(:data:`shared.readmodel.scripts.PROJECT_PRODUCTS`, the same compare-and-set as every other projection, so the
API's and the cache worker's newer projections made meanwhile stand), the calls pipelined on one connection while
the next page is read; ``--processes`` splits the id range between processes. Listings are served from
PostgreSQL from the start of a rebuild until it has completed (the ``ready`` flags: cleared first, set last);
reads by slug keep being served from Redis where it holds them. A Redis in an older layout
(:data:`shared.readmodel.keys.OLD_PATTERNS`) has those keys deleted first; sorted sets of this layout built by an
older format (which held inactive products) are put right product by product, even where the stored projection
is of the very version read (see :data:`shared.readmodel.scripts.PROJECT_PRODUCTS`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg
import redis.asyncio as aioredis

from shared.logs import configure_logging, get_logger
from shared.readmodel import keys, scripts
from shared.readmodel.client import FastRedis, redis_runner
from shared.readmodel.project import product_values
from shared.settings import Settings
from shared.store import categories as cat_repo
from shared.store import products as prod_repo
from shared.store import records as rec_repo
from shared.store import users as user_repo
from shared.store.pool import connection, create_pool
from worker.progress import progress_bar
from worker.readmodel.refresh import Resources, project_category, project_record, project_user

#: Rows of one keyset query: a few milliseconds of PostgreSQL, few enough round trips to not matter.
PAGE: Final = 5_000
#: Products per script call: Redis runs one call at a time, so this bounds what an API read may wait behind it
#: (about 2 ms); large enough that the call's own cost is spread thin.
CALL: Final = 200
#: Categories, records and users are re-projected one by one, this many at once.
BATCH: Final = 500
#: The ``ready`` flags a completed rebuild sets, and their values (see :data:`shared.readmodel.keys.FORMAT`).
READY_FIELDS: Final[dict[Any, str]] = {"products": keys.FORMAT, "users": "1"}


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


async def project_products(
    conn: asyncpg.Connection, fast: FastRedis, media_url: str, first: int, last: int, tick: Callable[[int], None]
) -> int:
    """Project every product with ``first < id <= last``; how many. ``tick(n)`` after each page."""
    await fast.execute("SCRIPT", "LOAD", scripts.PROJECT_PRODUCTS)
    done, after = 0, first
    sent: list[asyncio.Future[Any]] = []
    while after < last:
        rows = [r for r in await prod_repo.any_after(conn, after, PAGE) if r[0].id <= last]
        if not rows:
            break
        # Every row of the page was read at the same position: it fences the categories they count in.
        fence = max(p.lsn for p, _ in rows)
        calls = []
        for start in range(0, len(rows), CALL):
            args: list[Any] = [keys.PREFIX, fence]
            for p, deleted in rows[start : start + CALL]:
                args += product_values(p, media_url, deleted)
            calls.append(args)
        # The previous page's calls ran in Redis while this page was read and rendered.
        for fut in sent:
            await fut
        sent = []
        for args in calls:
            call = fast.submit_script(scripts.PROJECT_PRODUCTS, [], args)
            if call is None:
                raise ConnectionError("Redis connection lost during the rebuild")
            sent.append(call)
        done += len(rows)
        tick(len(rows))
        after = rows[-1][0].id
    for fut in sent:
        await fut
    return done


async def _products_range(settings: Settings, first: int, last: int, tick: Callable[[int], None]) -> int:
    fast = FastRedis(settings.redis_url, timeout=60)
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        async with connection(pool, 10) as conn:
            return await project_products(conn, fast, settings.media_url, first, last, tick)
    finally:
        await pool.close()
        fast.close()


def _process(settings: Settings, first: int, last: int, counter: Any) -> None:
    """One rebuild process: products in ``(first, last]``, counted into the shared ``counter``."""

    def tick(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    asyncio.run(_products_range(settings, first, last, tick))


async def _products(res: Resources, settings: Settings, processes: int, progress: bool) -> int:
    async with connection(res.pool, res.wait) as conn:
        row = await conn.fetchrow("SELECT count(*) AS total, coalesce(max(id), 0) AS top FROM products")
    total, top = (0, 0) if row is None else (int(row["total"]), int(row["top"]))
    with progress_bar(total=total, desc="products", unit="", disable=not progress) as bar:

        def update(n: int) -> None:
            bar.update(n)

        if processes <= 1 or total < PAGE * processes:  # a page each at least, or one process is quicker
            async with connection(res.pool, res.wait) as conn:
                fast = FastRedis(settings.redis_url, timeout=60)
                try:
                    return await project_products(conn, fast, res.media_url, 0, top, update)
                finally:
                    fast.close()
        return await _in_processes(settings, processes, top, update)


async def _in_processes(settings: Settings, processes: int, top: int, update: Callable[[int], None]) -> int:
    """Products split by id range over ``processes`` processes (ids are dense enough for equal shares)."""
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("q", 0)
    bounds = [top * i // processes for i in range(processes + 1)]
    procs = [
        ctx.Process(target=_process, args=(settings, lo, hi, counter), daemon=True)
        for lo, hi in itertools.pairwise(bounds)
    ]
    for p in procs:
        p.start()
    shown = 0
    while any(p.is_alive() for p in procs):
        await asyncio.sleep(0.2)
        now = counter.value
        update(now - shown)
        shown = now
    update(counter.value - shown)
    if failed := [p.exitcode for p in procs if p.exitcode != 0]:
        raise RuntimeError(f"rebuild processes failed with exit codes {failed}")
    return int(counter.value)


async def _clean_old_layout(client: aioredis.Redis) -> None:
    """Delete the keys of an older layout (see :data:`shared.readmodel.keys.OLD_PATTERNS`)."""
    for pattern in keys.OLD_PATTERNS:
        batch: list[Any] = []
        async for key in client.scan_iter(match=pattern, count=5_000):
            batch.append(key)
            if len(batch) >= 5_000:
                await client.unlink(*batch)
                batch = []
        if batch:
            await client.unlink(*batch)


async def rebuild(
    settings: Settings, *, if_missing: bool = False, progress: bool = True, processes: int = 1
) -> dict[str, int]:
    """Project everything; returns how many of each kind. With ``if_missing``, only if not done before."""
    client = aioredis.from_url(settings.redis_url, socket_timeout=10)
    pool = await create_pool(settings, max_size=4)
    try:
        ready = await client.hmget(keys.READY, list(READY_FIELDS))
        if if_missing and ready == [v.encode() for v in READY_FIELDS.values()]:
            return {}
        # Listings from PostgreSQL until every product is in its indexes again.
        await client.hdel(keys.READY, *READY_FIELDS)
        if ready[0] != keys.FORMAT.encode():
            await _clean_old_layout(client)
        res = Resources(pool, redis_runner(client), settings.media_url)
        counts = {"products": await _products(res, settings, processes, progress)}
        # After the products: their projections fenced the categories read before them.
        counts["categories"] = await _each(
            res, "categories", "SELECT count(*) FROM categories", cat_repo.ids_after, 0, project_category, progress
        )
        counts["records"] = await _each(
            res, "records", "SELECT count(*) FROM records", rec_repo.ids_after, 0, project_record, progress
        )
        counts["users"] = await _each(
            res, "users", "SELECT count(*) FROM users", user_repo.usernames_after, "", project_user, progress
        )
        await client.hset(keys.READY, mapping=READY_FIELDS)
        return counts
    finally:
        await pool.close()
        await client.aclose()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker cache rebuild", description=__doc__.split("\n\n")[0])
    parser.add_argument("--if-missing", action="store_true", help="do nothing if a rebuild has completed before")
    parser.add_argument(
        "--processes",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes that project products, each a share of the ids (default: 2, or 1 on one CPU)",
    )
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings, "cache-rebuild")
    counts = asyncio.run(rebuild(settings, if_missing=args.if_missing, processes=max(1, args.processes)))
    get_logger("worker.rebuild").info("rebuilt" if counts else "rebuild_skipped", **counts)
    return 0
