"""``cache rebuild`` of many products: the same reads as PostgreSQL gives, idempotent, correct while it runs, a
Redis in the older layout converted, and under 1 KB of Redis per product."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from bench.seed import seed
from shared.readmodel import keys
from shared.readmodel.client import FastRedis
from shared.settings import Settings
from shared.store.pool import create_pool
from tests.conftest import ADMIN
from tests.support.api import category, product
from worker.readmodel import rebuild as rebuild_module
from worker.readmodel.rebuild import rebuild

#: Every listing the sorted sets serve, as query parameters (limit 7 makes several pages).
LISTINGS = [
    {"sort": sort, "limit": "7", **extra}
    for sort in ("-created_at", "created_at", "price", "-price")
    for extra in ({}, {"category": "kitchen"})
]


async def _catalog(client: TestClient, settings: Settings, pg: asyncpg.Connection) -> list[str]:
    """60 seeded products, plus API-made ones: renamed, deleted, moved to another category. Their slugs."""
    await seed(settings.database_url, 60, 2, progress=False, random_seed=7)
    await category(client, "Kitchen")
    for name in ("Kettle", "Pan", "Pot"):
        await product(client, name=name, category="kitchen")
    assert (await client.patch("/api/products/pan", json={"slug": "frying-pan"}, headers=ADMIN)).status == 200
    assert (await client.delete("/api/products/pot", headers=ADMIN)).status == 204
    other = await pg.fetchval("SELECT slug FROM categories WHERE slug <> 'kitchen' ORDER BY id LIMIT 1")
    assert (await client.patch("/api/products/kettle", json={"category": other}, headers=ADMIN)).status == 200
    return [r["slug"] for r in await pg.fetch("SELECT slug FROM products ORDER BY id")]


async def _walk(client: TestClient, params: dict[str, str]) -> list[bytes]:
    """Every page of a listing, as the bytes the API answered."""
    pages, cursor = [], None
    while True:
        resp = await client.get("/api/products", params=params | ({"cursor": cursor} if cursor else {}))
        assert resp.status == 200
        pages.append(await resp.read())
        cursor = (await resp.json())["next_cursor"]
        if cursor is None:
            return pages


async def _answers(client: TestClient, slugs: list[str]) -> dict[str, object]:
    """What readers get: each slug's status, ETag and bytes, and every listing page by page."""
    out: dict[str, object] = {}
    for slug in [*slugs, "pot", "pan"]:
        resp = await client.get(f"/api/products/{slug}")
        out[slug] = (resp.status, resp.headers.get("ETag"), await resp.read())
    for params in LISTINGS:
        out[repr(params)] = await _walk(client, params)
    return out


async def _redis_state(settings: Settings) -> dict[bytes, object]:
    """Every key of the read model and its value (the generation counters and cached pages aside; the rate
    limiter's state is not the read model, and expires on its own)."""
    client = aioredis.from_url(settings.redis_url)
    state: dict[bytes, object] = {}
    async for key in client.scan_iter(count=1000):
        if key.startswith((b"sr:gen:", b"sr:q", b"sr:rl:")):
            continue
        kind = await client.type(key)
        if kind == b"string":
            state[key] = await client.get(key)
        elif kind == b"hash" and key.startswith(b"sr:pm:"):
            # <version>:<lsn>:<category>:<slug>: the position read at differs from one rebuild to the next
            meta = await client.hgetall(key)
            state[key] = {k: v.split(b":", 2)[0] + v.split(b":", 2)[2] for k, v in meta.items()}
        elif kind == b"hash":
            state[key] = {k: v for k, v in (await client.hgetall(key)).items() if k not in (b"l", b"f")}
        elif kind == b"zset":
            state[key] = await client.zrange(key, 0, -1, withscores=True)
    await client.aclose()
    return state


async def _flush(settings: Settings) -> None:
    client = aioredis.from_url(settings.redis_url)
    await client.flushdb()
    await client.aclose()


async def _from_postgresql(
    client: TestClient, settings: Settings, pg: asyncpg.Connection
) -> tuple[list[str], dict[str, object]]:
    """The catalog's slugs and what readers get from PostgreSQL alone; Redis left empty."""
    slugs = await _catalog(client, settings, pg)
    await _flush(settings)
    expected = await _answers(client, slugs)
    await _flush(settings)
    return slugs, expected


async def test_a_rebuild_serves_every_read_exactly_as_postgresql_does(
    client: TestClient, settings: Settings, pg: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a catalog, and what readers get from PostgreSQL alone (Redis empty, listings not indexed)
    slugs, from_pg = await _from_postgresql(client, settings, pg)
    # When the read model is rebuilt in two processes (which it does from two pages' worth of products), with
    # settings that hold a secret (which reaches the processes whole, not masked)
    monkeypatch.setattr(rebuild_module, "PAGE", 10)
    secret = settings.model_copy(update={"cursor_secret": SecretStr("a-cursor-secret-of-the-test")})
    counts = await rebuild(secret, progress=False, processes=2)
    # Then every product was projected, and every read and listing page is byte for byte what PostgreSQL gave
    assert counts["products"] == len(slugs)
    assert await _answers(client, slugs) == from_pg
    # And the listings and reads by slug came from Redis: they still answer with PostgreSQL's products gone
    await pg.execute("DELETE FROM outbox; DELETE FROM products")
    assert await _answers(client, slugs) == from_pg


async def test_a_second_rebuild_changes_nothing(
    client: TestClient, settings: Settings, pg: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a rebuilt read model
    slugs = await _catalog(client, settings, pg)
    await rebuild(settings, progress=False)
    before = await _redis_state(settings)
    # When it is rebuilt again, in one process and in two
    await rebuild(settings, progress=False)
    monkeypatch.setattr(rebuild_module, "PAGE", 10)
    await rebuild(settings, progress=False, processes=2)
    # Then Redis holds the same projections and indexes, and readers the same answers
    assert await _redis_state(settings) == before
    assert len([k for k in before if k.startswith(b"sr:pk:")]) == len(slugs) - 1  # the deleted one has none


async def test_listings_stay_correct_while_a_rebuild_is_half_done(
    client: TestClient, settings: Settings, pg: asyncpg.Connection
) -> None:
    # Given a catalog and what readers get from PostgreSQL
    slugs, expected = await _from_postgresql(client, settings, pg)
    # When a rebuild has projected only the first half of the products (its ready flag not set)
    pool = await create_pool(settings)
    fast = FastRedis(settings.redis_url, timeout=10)
    top = await pg.fetchval("SELECT max(id) FROM products")
    async with pool.acquire() as conn:
        await rebuild_module.project_products(conn, fast, settings.media_url, 0, top // 2, lambda n: None)
    fast.close()
    await pool.close()
    # Then every listing is still whole and in order (from PostgreSQL), every read right
    assert await _answers(client, slugs) == expected


async def test_reads_during_a_running_rebuild_are_right(
    client: TestClient, settings: Settings, pg: asyncpg.Connection
) -> None:
    # Given a catalog (the rebuild's page made small, so that it takes many steps) and PostgreSQL's answers
    slugs, expected = await _from_postgresql(client, settings, pg)
    rebuild_module.PAGE, rebuild_module.CALL = 3, 2  # type: ignore[misc]
    try:
        # When readers read while the rebuild runs
        running = asyncio.ensure_future(rebuild(settings, progress=False))
        during = []
        while not running.done():
            during.append(await _answers(client, slugs))
        await running
    finally:
        rebuild_module.PAGE, rebuild_module.CALL = 5_000, 200  # type: ignore[misc]
    # Then each of their reads was what PostgreSQL gives, and so are the ones after it
    assert during
    wrong = [(k, a[k], expected[k]) for a in during for k in a if a[k] != expected[k]]
    assert wrong == []
    assert await _answers(client, slugs) == expected


async def test_a_redis_in_the_older_layout_is_converted(
    client: TestClient, settings: Settings, pg: asyncpg.Connection
) -> None:
    # Given a Redis holding layout 1's keys (zero-padded members, a product hash, slug keys) marked complete
    slugs, expected = await _from_postgresql(client, settings, pg)
    redis = aioredis.from_url(settings.redis_url)
    old = "0" * 18 + "1"
    await redis.hset(f"sr:p:{old}", mapping={"v": 9, "l": 0, "b": b'{"stale":1}', "s": slugs[0], "c": old})
    await redis.set(f"sr:ps:{slugs[0]}", old)
    await redis.zadd("sr:idx:p:created", {old: 1})
    await redis.hset(keys.READY, mapping={"products": "1", "users": "1"})
    # When the read model is rebuilt, as `make run` does (only if missing)
    assert await rebuild(settings, progress=False, if_missing=True)
    # Then no key of the older layout is left, and readers get PostgreSQL's answers
    left = [k async for k in redis.scan_iter(match="sr:p:*")] + [k async for k in redis.scan_iter(match="sr:ps:*")]
    assert left == []
    assert await redis.exists("sr:idx:p:created") == 0
    assert await _answers(client, slugs) == expected
    # And a second `--if-missing` does nothing
    assert await rebuild(settings, progress=False, if_missing=True) == {}
    await redis.aclose()


async def test_the_read_model_holds_a_product_in_under_1_kb(settings: Settings) -> None:
    # Given 2,000 realistic seeded products
    await seed(settings.database_url, 2_000, 20, progress=False, random_seed=3)
    await _flush(settings)
    # When they are rebuilt into Redis
    await rebuild(settings, progress=False)
    # Then the read model's keys take under 1 KB per product (Redis's own count of each key's bytes)
    redis = aioredis.from_url(settings.redis_url)
    sizes = [await redis.memory_usage(k, samples=0) async for k in redis.scan_iter(count=1000)]
    await redis.aclose()
    assert sum(s or 0 for s in sizes) / 2_000 < 1024
