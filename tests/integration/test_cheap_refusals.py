"""Refusing is cheap: a repeated 404 is answered from Redis, and a flood of 4xx does not write a line each."""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.metrics.access import CLIENT_ERROR_LINES_PER_SECOND
from shared.settings import Settings
from tests.conftest import ADMIN
from tests.support.api import category, problem, product
from tests.support.processes import api_process
from tests.support.tcp_proxy import TcpProxy


async def test_a_repeated_404_for_a_product_asks_postgresql_once(aiohttp_client, settings: Settings) -> None:
    # Given an API reaching PostgreSQL through a proxy, and a product slug that does not exist
    parts = urlsplit(settings.database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    try:
        client: TestClient = await aiohttp_client(
            create_app(settings.model_copy(update={"database_url": proxy.url_for(settings.database_url)}))
        )
        await problem(await client.get("/api/products/ghost"), 404)
        # When PostgreSQL goes away and the same slug is asked for again
        await proxy.cut()
        # Then it is still a 404 (from Redis), not a 503
        for _ in range(3):
            await problem(await client.get("/api/products/ghost"), 404)
    finally:
        await proxy.stop()


async def _garbage_after(client: TestClient, path: str, status: int, times: int = 60) -> int:
    """How many unreachable objects ``times`` requests for ``path`` leave behind for the garbage collector."""
    gc.collect()
    gc.disable()
    try:
        for _ in range(times):
            assert (await client.get(path)).status == status
        return gc.collect()
    finally:
        gc.enable()


async def test_a_repeated_404_leaves_no_more_for_the_garbage_collector_than_a_hit(client: TestClient) -> None:
    # Given a product that exists and a slug remembered as absent, the rate limit on (the defaults)
    await category(client)
    await product(client, name="Kept Spade")
    assert (await client.get("/api/products/kept-spade")).status == 200
    await problem(await client.get("/api/products/ghost-spade"), 404)
    # When each is read again and again
    hits = await _garbage_after(client, "/api/products/kept-spade", 200)
    misses = await _garbage_after(client, "/api/products/ghost-spade", 404)
    # Then the 404s leave no reference cycles of their own (an exception kept in a frame is one: the collector's
    # pauses then cost a flood of 404s more CPU than a flood of hits)
    assert misses <= hits + 30, (misses, hits)


async def test_a_product_created_after_a_404_is_read_at_once(client: TestClient) -> None:
    # Given a slug that was just answered 404 (and remembered as absent)
    await problem(await client.get("/api/products/late-spade"), 404)
    # When that product is created
    await category(client)
    await product(client, name="Late Spade")
    # Then the next read returns it: the write replaced the marker
    r = await client.get("/api/products/late-spade")
    assert r.status == 200
    assert (await r.json())["name"] == "Late Spade"


async def test_a_deleted_product_is_404_and_back_once_restored(client: TestClient) -> None:
    await category(client)
    await product(client, name="Twice Spade")
    assert (await client.delete("/api/products/twice-spade", headers=ADMIN)).status == 204
    await problem(await client.get("/api/products/twice-spade"), 404)
    await problem(await client.get("/api/products/twice-spade"), 404)
    assert (await client.post("/api/products/twice-spade/restore", headers=ADMIN)).status == 200
    assert (await client.get("/api/products/twice-spade")).status == 200


async def test_a_flood_of_404s_writes_a_bounded_number_of_access_lines(settings: Settings, tmp_path: Path) -> None:
    # Given the API at INFO
    async with api_process(settings, tmp_path / "api.log") as api, aiohttp.ClientSession() as session:
        # When 150 requests for missing products arrive within one second or so
        async def miss(n: int) -> int:
            async with session.get(f"{api.url}/api/products/ghost-{n % 5}") as r:
                return r.status

        statuses = await asyncio.gather(*(miss(n) for n in range(150)))
        assert set(statuses) == {404}
        await asyncio.sleep(1.1)
        async with session.get(f"{api.url}/api/products/ghost-0") as r:  # a new second: the summary is written
            assert r.status == 404
        # And every one of them is counted in the metrics
        async with session.get(f"{api.url}/metrics") as r:
            text = await r.text()
    records = [json.loads(x) for x in api.output().splitlines() if x.startswith("{")]
    access = [r for r in records if r.get("event") == "request" and r.get("status") == 404]
    left_out = sum(r["count"] for r in records if r.get("event") == "request_lines_suppressed")
    # Then at most the budget of lines was written per second, and the rest was summed up
    assert len(access) <= 3 * CLIENT_ERROR_LINES_PER_SECOND
    assert len(access) + left_out == 151
    assert 'route="/api/products/{slug}",status="404"} 151.0' in text
