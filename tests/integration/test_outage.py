"""PostgreSQL unreachable: writes answer 503 with Retry-After within 2 s, readiness names postgres, and the
process recovers by itself when PostgreSQL is back. A TCP proxy cuts PostgreSQL off; the server keeps running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from api import auth
from api.app import create_app
from api.health import CACHE_SECONDS
from shared.settings import Settings
from shared.store import apikeys
from tests.conftest import ADMIN
from tests.support.api import problem
from tests.support.tcp_proxy import TcpProxy

#: The contract: a write during an outage is answered within this many seconds.
DEADLINE = 2.0


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(database_url)
    p = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
def proxied(settings: Settings, proxy: TcpProxy) -> Settings:
    """The test's settings with PostgreSQL reached through the proxy."""
    return settings.model_copy(update={"database_url": proxy.url_for(settings.database_url)})


async def _timed_write(client, name: str, headers=ADMIN):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    r = await client.post("/api/categories", json={"name": name}, headers=headers)
    return r, time.monotonic() - started


async def test_write_during_outage_is_503_with_retry_after_within_2_s(aiohttp_client, proxied, proxy) -> None:
    # Given a running app that has already written through the proxy
    client = await aiohttp_client(create_app(proxied))
    ok, _ = await _timed_write(client, "Before")
    assert ok.status == 201
    # When PostgreSQL is cut off and a write arrives
    await proxy.cut()
    r, elapsed = await _timed_write(client, "During")
    # Then it is a 503 problem with Retry-After, answered within 2 s
    await problem(r, 503)
    assert int(r.headers["Retry-After"]) > 0
    assert elapsed < DEADLINE


async def test_every_write_during_outage_fails_fast(aiohttp_client, proxied, proxy) -> None:
    # Given an app whose pool holds connections, then an outage
    client = await aiohttp_client(create_app(proxied))
    for i in range(3):
        assert (await _timed_write(client, f"Warm {i}"))[0].status == 201
    await proxy.cut()
    # When several writes of different kinds arrive
    started = time.monotonic()
    statuses = [
        (await client.post("/api/records", json={"a": 1}, headers=ADMIN)).status,
        (await client.put("/api/categories/warm-0", json={"name": "X"}, headers=ADMIN)).status,
        (await client.delete("/api/categories/warm-1", headers=ADMIN)).status,
        (await client.put("/hello/alice", json={"dateOfBirth": "1990-01-01"}, headers=ADMIN)).status,
        (await client.post("/api/records", json={"a": 1}, headers={**ADMIN, "Idempotency-Key": "k"})).status,
    ]
    # Then each is a 503, and none waited long
    assert statuses == [503] * 5
    assert time.monotonic() - started < DEADLINE * 5


async def test_app_recovers_by_itself_when_postgres_returns(aiohttp_client, proxied, proxy, pg) -> None:
    # Given an outage that made a write fail
    client = await aiohttp_client(create_app(proxied))
    assert (await _timed_write(client, "Before"))[0].status == 201
    await proxy.cut()
    assert (await _timed_write(client, "During"))[0].status == 503
    # When PostgreSQL is reachable again
    await proxy.restore()
    r, _ = await _timed_write(client, "After")
    # Then the next write succeeds, and the failed one left no trace
    assert r.status == 201
    names = [row["name"] for row in await pg.fetch("SELECT name FROM categories ORDER BY id")]
    assert names == ["Before", "After"]


async def test_app_starts_while_postgres_is_down_and_serves_once_it_is_up(aiohttp_client, proxied, proxy) -> None:
    # Given PostgreSQL unreachable before the app starts
    await proxy.cut()
    client = await aiohttp_client(create_app(proxied))
    # When a write arrives, then PostgreSQL comes back and another arrives
    down, elapsed = await _timed_write(client, "During")
    live = await client.get("/health/live")
    await proxy.restore()
    up, _ = await _timed_write(client, "After")
    # Then the process stayed up: 503 fast, live throughout, 201 after
    assert (down.status, up.status, live.status) == (503, 201, 200)
    assert elapsed < DEADLINE


async def test_key_lookup_during_outage_is_503_not_401(aiohttp_client, proxied, proxy, pg) -> None:
    # Given a stored write key the app has never seen, then an outage
    _, key = await apikeys.create(pg, "writer", "write")
    client = await aiohttp_client(create_app(proxied))
    await proxy.cut()
    # When the key is used
    r, elapsed = await _timed_write(client, "X", headers={"Authorization": f"Bearer {key}"})
    # Then the client is told to retry, not that its key is bad
    await problem(r, 503)
    assert "Retry-After" in r.headers
    assert elapsed < DEADLINE


async def test_readiness_names_postgres_when_it_is_cut_off(aiohttp_client, proxied, proxy) -> None:
    # Given a running app, then an outage
    client = await aiohttp_client(create_app(proxied))
    await proxy.cut()
    # When readiness is asked
    r = await client.get("/health/ready")
    # Then it is 503 and names postgres as the failed dependency, the others fine
    assert r.status == 503
    body = await r.json()
    assert body["failed"] == ["postgres"]
    assert body["checks"]["postgres"] != "ok"
    assert (body["checks"]["redis"], body["checks"]["rabbitmq"]) == ("ok", "ok")
    # And liveness stays 200
    assert (await client.get("/health/live")).status == 200


async def test_readiness_recovers_when_postgres_returns(aiohttp_client, proxied, proxy) -> None:
    # Given readiness that saw the outage
    client = await aiohttp_client(create_app(proxied))
    await proxy.cut()
    assert (await client.get("/health/ready")).status == 503
    # When PostgreSQL is back (and the probe's short cache has expired)
    await proxy.restore()
    await asyncio.sleep(CACHE_SECONDS + 0.1)
    r = await client.get("/health/ready")
    # Then readiness is ok again
    assert r.status == 200


async def test_write_to_a_hung_postgres_is_503_within_2_s_and_recovers(aiohttp_client, proxied, proxy, pg) -> None:
    # Given a running app whose pooled connections to PostgreSQL are open
    client = await aiohttp_client(create_app(proxied))
    ok, _ = await _timed_write(client, "Before")
    assert ok.status == 201
    # When PostgreSQL stops answering without closing anything (a hung server, not a refused one)
    proxy.stall(True)
    r, elapsed = await _timed_write(client, "During")
    # Then the write is a 503 with Retry-After within 2 s, never a hang
    await problem(r, 503)
    assert "Retry-After" in r.headers
    assert elapsed < DEADLINE
    # And once PostgreSQL answers again, writes succeed
    proxy.stall(False)
    after, _ = await _timed_write(client, "After")
    assert after.status == 201
    assert await pg.fetchval("SELECT count(*) FROM categories WHERE name = 'After'") == 1


async def test_a_rejected_key_is_refused_again_without_asking_postgresql(aiohttp_client, proxied, proxy) -> None:
    # Given a key PostgreSQL does not know, refused once
    client = await aiohttp_client(create_app(proxied))
    bad = {"Authorization": "Bearer not-a-key"}
    first, _ = await _timed_write(client, "X", headers=bad)
    await problem(first, 401)
    # When PostgreSQL is cut off and the same key comes again
    await proxy.cut()
    again, _ = await _timed_write(client, "X", headers=bad)
    # Then it is refused from memory (401 at once, not a 503 from a failed lookup)
    await problem(again, 401)
    # While a key it has not seen still needs PostgreSQL: 503
    other, _ = await _timed_write(client, "X", headers={"Authorization": "Bearer another-key"})
    await problem(other, 503)


async def test_a_rejection_is_forgotten_after_its_interval(aiohttp_client, proxied, proxy, monkeypatch) -> None:
    # Given rejections remembered for a moment only, and a key refused once
    monkeypatch.setattr(auth, "REJECTED_TTL_SECONDS", 0.2)
    client = await aiohttp_client(create_app(proxied))
    bad = {"Authorization": "Bearer not-a-key"}
    await problem((await _timed_write(client, "X", headers=bad))[0], 401)
    # When the moment has passed and PostgreSQL is cut off
    await asyncio.sleep(0.3)
    await proxy.cut()
    # Then the key is looked up again (and the lookup fails: 503)
    await problem((await _timed_write(client, "X", headers=bad))[0], 503)
