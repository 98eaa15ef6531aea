"""Overload is reported as overload: a pool wait that times out while every connection of the pool is in use is a
503 saying the service is overloaded (with Retry-After, within 2 s), counted in its own series, and readiness keeps
PostgreSQL up. A refused connection stays "PostgreSQL is unavailable"."""

from __future__ import annotations

import asyncio
import time

from yarl import URL

from api.app import create_app
from api.health import CACHE_SECONDS
from api.state import PG_POOL
from shared.settings import Settings
from tests.conftest import ADMIN
from tests.support.api import category, problem

#: The contract: a refused write is answered within this many seconds.
DEADLINE = 2.0


def _overloads(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('stockroom_overload_total{reason="pg_pool"}'):
            return float(line.split()[-1])
    raise AssertionError('no stockroom_overload_total{reason="pg_pool"} series')


async def test_write_while_the_pool_is_held_is_503_overloaded_and_readiness_stays_up(aiohttp_client, settings) -> None:
    # Given an app whose pool holds one connection, and that connection busy with a slow statement
    client = await aiohttp_client(create_app(settings.model_copy(update={"pg_pool_max": 1})))
    await category(client, "Before")
    before = _overloads(await (await client.get("/metrics")).text())
    pool = client.app[PG_POOL]
    held = asyncio.Event()

    async def slow() -> None:
        async with pool.acquire() as conn:
            held.set()
            await conn.execute("SELECT pg_sleep(4)")

    sleeper = asyncio.create_task(slow())
    await held.wait()
    try:
        await asyncio.sleep(CACHE_SECONDS)  # readiness probes afresh
        # When a write arrives
        started = time.monotonic()
        r = await client.post("/api/categories", json={"name": "During"}, headers=ADMIN)
        elapsed = time.monotonic() - started
        # Then it is a 503 problem that says overloaded (not that PostgreSQL is down), with Retry-After, within 2 s
        body = await problem(r, 503)
        assert "overloaded" in body["detail"]
        assert "unavailable" not in body["detail"]
        assert int(r.headers["Retry-After"]) > 0
        assert elapsed < DEADLINE
        # And it is counted as overload
        assert _overloads(await (await client.get("/metrics")).text()) == before + 1
        # And readiness does not call PostgreSQL down for it
        ready = await client.get("/health/ready")
        assert ready.status == 200, await ready.text()
        assert (await ready.json())["checks"]["postgres"] == "ok"
    finally:
        await sleeper
    # And once the statement is done, writes go through again
    assert (await client.post("/api/categories", json={"name": "After"}, headers=ADMIN)).status == 201


async def test_refused_connection_stays_unavailable_and_is_no_overload(aiohttp_client, settings: Settings) -> None:
    # Given an app whose PostgreSQL refuses connections (nothing listens on the port)
    refused = str(URL(settings.database_url).with_port(1))
    client = await aiohttp_client(create_app(settings.model_copy(update={"database_url": refused})))
    # When a write arrives
    r = await client.post("/api/categories", json={"name": "Nowhere"}, headers=ADMIN)
    # Then it says PostgreSQL is unavailable, and counts no overload
    body = await problem(r, 503)
    assert "PostgreSQL is unavailable" in body["detail"]
    assert _overloads(await (await client.get("/metrics")).text()) == 0
    ready = await client.get("/health/ready")
    assert ready.status == 503
    assert (await ready.json())["checks"]["postgres"].startswith("down")
