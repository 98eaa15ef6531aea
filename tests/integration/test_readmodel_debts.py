"""Read-model debts: a failed write-through is recorded in PostgreSQL before the write is answered, a process repays
it before it reads Redis again, and the cache worker's sweep repays what it finds (so debts never pile up)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg

from api.app import create_app
from shared.readmodel.client import FastRedis
from shared.readmodel.debts import Guard
from shared.store.pool import create_pool
from tests.conftest import ADMIN
from tests.support.api import category, product
from tests.support.tcp_proxy import TcpProxy


async def _debts(pg: asyncpg.Connection) -> list[tuple[str, str, int]]:
    rows = await pg.fetch("SELECT aggregate, aggregate_id, version FROM readmodel_debts ORDER BY aggregate")
    return [(r["aggregate"], r["aggregate_id"], r["version"]) for r in rows]


async def test_a_failed_write_through_is_a_debt_until_the_next_read_repays_it(aiohttp_client, settings, pg) -> None:
    # Given an app whose Redis is behind a proxy, and a product read from Redis at version 1
    parts = urlsplit(settings.redis_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    await proxy.start()
    try:
        proxied = settings.model_copy(update={"redis_url": proxy.url_for(settings.redis_url)})
        client = await aiohttp_client(create_app(proxied))
        await category(client, "Tools")
        made = await product(client, "Saw", category="tools")
        assert (await (await client.get("/api/products/saw")).json())["version"] == 1
        # When Redis is cut off and the product is updated
        await proxy.cut()
        r = await client.patch("/api/products/saw", json={"stock": 3}, headers=ADMIN)
        assert r.status == 200
        # Then the debt is in PostgreSQL by the time the write is answered
        assert await _debts(pg) == [("product", str(made["id"]), 2)]
        # And once Redis is back (and the process's pause after a failed connect is over), the next read repays
        # it: version 2, and the row is gone
        await proxy.restore()
        await asyncio.sleep(1.1)
        assert (await (await client.get("/api/products/saw")).json())["version"] == 2
        assert await _debts(pg) == []
    finally:
        await proxy.stop()


async def test_the_cache_workers_sweep_repays_a_debt_it_finds(client, settings, pg) -> None:
    # Given a product read from Redis at version 1, then changed in PostgreSQL with its debt recorded (as an API
    # whose write-through failed leaves it)
    await category(client, "Tools")
    made = await product(client, "Saw", category="tools")
    assert (await (await client.get("/api/products/saw")).json())["version"] == 1
    await pg.execute("UPDATE products SET stock = 42, version = version + 1 WHERE slug = 'saw'")
    await pg.execute(
        "INSERT INTO readmodel_debts (aggregate, aggregate_id, version) VALUES ('product', $1, 2)", str(made["id"])
    )
    assert (await (await client.get("/api/products/saw")).json())["version"] == 1
    # When the cache worker's guard sweeps (its first sweep, as after its start)
    pool = await create_pool(settings)
    redis = FastRedis(settings.redis_url, timeout=5.0)
    try:
        await Guard(redis, pool, 1.5, settings.media_url).sweep()
    finally:
        redis.close()
        await pool.close()
    # Then the projection is PostgreSQL's, and the debt is gone
    body = await (await client.get("/api/products/saw")).json()
    assert (body["version"], body["stock"]) == (2, 42)
    assert await _debts(pg) == []
