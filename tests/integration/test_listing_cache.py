"""Cached listing pages are bounded in count and bytes, whatever the queries; writes still invalidate them."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from api.app import create_app
from shared.readmodel import keys
from shared.settings import Settings
from tests.support.api import category, product

#: Distinct anonymous listing queries the test sends.
QUERIES = 10_000
#: What they may add to Redis, at most.
BUDGET = 50 * 1024 * 1024


async def _db_bytes(redis: aioredis.Redis) -> int:
    """Bytes held by every key of this session's Redis database (other sessions share the server)."""
    total = 0
    async for key in redis.scan_iter(count=1000):
        total += await redis.memory_usage(key) or 0
    return total


@pytest.mark.timeout(240)
async def test_ten_thousand_distinct_listing_queries_grow_redis_by_less_than_50_mb(
    aiohttp_client, settings: Settings, redis_url: str
) -> None:
    # Given products with large attributes (a page of them is about 160 KB), and reads not rate limited
    client: TestClient = await aiohttp_client(
        create_app(settings.model_copy(update={"rate_limit_reads_per_second": 1e6, "rate_limit_reads_burst": 10**6}))
    )
    await category(client)
    for i in range(10):
        await product(client, name=f"Spade {i}", price=f"{10 + i}.00", attributes={"blob": "x" * 15_000})
    redis = aioredis.from_url(redis_url)
    try:
        before = await _db_bytes(redis)
        # When 10,000 anonymous listings arrive, each with a query string of its own
        started = time.monotonic()
        for batch in range(0, QUERIES, 100):

            async def one(n: int) -> int:
                price = f"{n // 100}.{n % 100:02d}"  # 10,000 distinct prices a filter accepts
                query = {"min_price": price, "q": "spade"} if n % 2 else {"min_price": price}
                r = await client.get("/api/products", params=query)
                return r.status

            statuses = await asyncio.gather(*(one(n) for n in range(batch, batch + 100)))
            assert set(statuses) == {200}
        elapsed = time.monotonic() - started
        # Then Redis grew by less than 50 MB, and the cached pages are within their bounds
        grown = await _db_bytes(redis) - before
        pages = [k async for k in redis.scan_iter(match="sr:q:products:*", count=1000)]
        total = int(await redis.get("sr:qb:products") or 0)
    finally:
        await redis.aclose()
    assert grown < BUDGET, f"Redis grew by {grown / 2**20:.1f} MiB for {QUERIES} queries in {elapsed:.0f} s"
    assert 0 < len(pages) <= keys.PAGES_PER_KIND
    assert 0 < total <= keys.PAGE_BYTES_PER_KIND


async def test_a_write_still_hides_every_cached_page_after_evictions(aiohttp_client, settings: Settings) -> None:
    # Given a listing cached, then pushed around by many other cached queries
    client: TestClient = await aiohttp_client(create_app(settings.model_copy(update={"rate_limit_enabled": False})))
    await category(client)
    await product(client, name="Old Spade", attributes={"blob": "x" * 15_000})
    first = await (await client.get("/api/products", params={"q": "spade"})).json()
    for n in range(120):
        assert (await client.get("/api/products", params={"min_price": f"{n // 100}.{n % 100:02d}"})).status == 200
    # When a product is written
    await product(client, name="New Spade")
    # Then the same listing shows it at once (the generation moved on; no stale page is served)
    after = await (await client.get("/api/products", params={"q": "spade"})).json()
    assert [p["name"] for p in first["items"]] == ["Old Spade"]
    assert sorted(p["name"] for p in after["items"]) == ["New Spade", "Old Spade"]


async def test_a_page_too_large_to_cache_is_still_answered_in_full(aiohttp_client, settings: Settings) -> None:
    client: TestClient = await aiohttp_client(create_app(settings))
    await category(client)
    for i in range(40):
        await product(client, name=f"Big {i}", attributes={"blob": "y" * 15_000})
    for _ in range(2):
        r = await client.get("/api/products", params={"limit": "40", "q": "big"})
        assert r.status == 200
        assert len((await r.json())["items"]) == 40


async def test_a_write_in_one_category_leaves_another_categorys_cached_pages_cached(
    aiohttp_client, settings: Settings, pg
) -> None:
    # Given cached listings of two categories (by name and by a word: pages cached whole, not the sorted sets)
    client: TestClient = await aiohttp_client(create_app(settings.model_copy(update={"rate_limit_enabled": False})))
    await category(client, "Garden")
    await category(client, "Kitchen")
    await product(client, name="Steel Spade", category="garden")
    await product(client, name="Steel Kettle", category="kitchen")
    queries = [{"sort": "name"}, {"q": "steel"}]
    for query in queries:
        for slug in ("garden", "kitchen"):
            assert (await client.get("/api/products", params={"category": slug, **query})).status == 200
    # ... and a change behind the API's back, so a page built again from PostgreSQL would show it
    await pg.execute("UPDATE products SET description = 'changed behind' WHERE slug = 'steel-kettle'")
    # When a product of the other category is written, through the API
    await product(client, name="Steel Rake", category="garden")
    for query in queries:
        kitchen = await (await client.get("/api/products", params={"category": "kitchen", **query})).json()
        garden = await (await client.get("/api/products", params={"category": "garden", **query})).json()
        # Then the kitchen's pages are still the cached ones (no query built them again) ...
        assert [p["description"] for p in kitchen["items"]] == [None], query
        # ... and the garden's show the write at once
        assert sorted(p["name"] for p in garden["items"]) == ["Steel Rake", "Steel Spade"], query
    # And a write in the kitchen changes the kitchen's pages at once
    await product(client, name="Steel Pan", category="kitchen")
    for query in queries:
        kitchen = await (await client.get("/api/products", params={"category": "kitchen", **query})).json()
        assert sorted(p["name"] for p in kitchen["items"]) == ["Steel Kettle", "Steel Pan"], query
