"""Read-your-writes across a Redis outage: a write acknowledged while the write-through failed is never followed by
an older read, from the process that took the write or from another one, once Redis is back (and no cache worker
runs to repair it). Two real ``python -m api`` processes reach Redis through one TCP proxy, which the test cuts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from shared.settings import Settings
from tests.conftest import ADMIN
from tests.support.processes import Process, api_process
from tests.support.tcp_proxy import TcpProxy

#: How long both processes are read after Redis returns: past their reconnect pause (1 s after a failed connect).
READ_FOR = 2.5


@pytest.fixture
async def redis_proxy(settings: Settings) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(settings.redis_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
async def apis(settings: Settings, redis_proxy: TcpProxy, tmp_path: Path) -> AsyncIterator[tuple[Process, Process]]:
    """Two API processes, both reaching Redis through the proxy; no relay and no cache worker."""
    redis_url = redis_proxy.url_for(settings.redis_url)
    async with (
        api_process(settings, tmp_path / "a.log", REDIS_URL=redis_url, CURSOR_SECRET="s" * 32) as a,
        api_process(settings, tmp_path / "b.log", REDIS_URL=redis_url, CURSOR_SECRET="s" * 32) as b,
    ):
        yield a, b


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as r:
        return r.status, (await r.json(content_type=None))


async def _listed(session: aiohttp.ClientSession, api: Process, slug: str) -> list[int]:
    """The versions of ``slug`` in the first page of the product listing (empty: not listed)."""
    status, page = await _get(session, f"{api.url}/api/products?limit=100")
    assert status == 200, page
    return [p["version"] for p in page["items"] if p["slug"] == slug]


async def _hits(session: aiohttp.ClientSession, api: Process) -> float:
    async with session.get(f"{api.url}/metrics") as r:
        text = await r.text()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("stockroom_cache_hits"))


async def _seed(session: aiohttp.ClientSession, a: Process, b: Process) -> None:
    """A category and a product at version 1, read (and listed) from Redis by both processes."""
    async with session.post(f"{a.url}/api/categories", json={"name": "Tools", "slug": "tools"}, headers=ADMIN) as r:
        assert r.status == 201, await r.text()
    body = {"name": "Saw", "slug": "saw", "price": "9.00", "category": "tools"}
    async with session.post(f"{a.url}/api/products", json=body, headers=ADMIN) as r:
        assert r.status == 201, await r.text()
    for api in (a, b):
        for _ in range(2):
            status, product = await _get(session, f"{api.url}/api/products/saw")
            assert (status, product["version"]) == (200, 1)
            assert await _listed(session, api, "saw") == [1]
        assert await _hits(session, api) > 0


async def _read_for(seconds: float, session: aiohttp.ClientSession, apis: tuple[Process, Process]) -> list[Any]:
    """Every (process, product answer, listed versions) seen while reading both processes for ``seconds``."""
    seen: list[Any] = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for name, api in zip("ab", apis, strict=True):
            status, product = await _get(session, f"{api.url}/api/products/saw")
            version = product.get("version") if status == 200 else status
            seen.append((name, version, await _listed(session, api, "saw")))
        await asyncio.sleep(0.05)
    return seen


async def test_an_update_acknowledged_during_a_redis_outage_is_read_by_every_process_after_it(
    apis: tuple[Process, Process], redis_proxy: TcpProxy
) -> None:
    a, b = apis
    async with aiohttp.ClientSession() as session:
        # Given a product at version 1, projected into Redis and read from it by both processes
        await _seed(session, a, b)
        hits = await _hits(session, b)
        # When Redis is cut off, the product is updated through process A (acknowledged although the
        # write-through fails), and Redis comes back
        await redis_proxy.cut()
        async with session.patch(f"{a.url}/api/products/saw", json={"stock": 7}, headers=ADMIN) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["version"] == 2
        await redis_proxy.restore()
        # Then every read from either process, at once and after both reconnected, shows version 2, listed too
        seen = await _read_for(READ_FOR, session, apis)
        assert {(v, tuple(listed)) for _, v, listed in seen} == {(2, (2,))}, seen
        # And the reads were answered from Redis again (it came back, repaid)
        assert await _hits(session, b) > hits


async def test_a_delete_acknowledged_during_a_redis_outage_is_gone_for_every_process_after_it(
    apis: tuple[Process, Process], redis_proxy: TcpProxy
) -> None:
    a, b = apis
    async with aiohttp.ClientSession() as session:
        # Given a product at version 1, projected into Redis and read from it by both processes
        await _seed(session, a, b)
        # When Redis is cut off, the product is deleted through process B, and Redis comes back
        await redis_proxy.cut()
        async with session.delete(f"{b.url}/api/products/saw", headers=ADMIN) as r:
            assert r.status == 204, await r.text()
        await redis_proxy.restore()
        # Then no read from either process returns it, nor lists it
        seen = await _read_for(READ_FOR, session, apis)
        assert {(v, tuple(listed)) for _, v, listed in seen} == {(404, ())}, seen
        # And the category's product count says so too
        for api in (a, b):
            status, cat = await _get(session, f"{api.url}/api/categories/tools")
            assert (status, cat["product_count"]) == (200, 0)
