"""Cached listing pages are bounded in count and bytes, whatever the queries; a write hides every page it can
change at once, and leaves the others cached."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.state import READ_STATS
from shared.readmodel import keys, read
from shared.readmodel.client import redis_runner
from shared.settings import Settings
from shared.store import products as prod_repo
from tests.conftest import ADMIN
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


#: Listings of no category whose pages depend on a tag: (query, a product that cannot be in it, a product that is).
TAGGED = {
    "a word": ({"q": "steel"}, {"name": "Copper Kettle"}, {"name": "Steel Rake"}),
    "two words": ({"q": "steel rake"}, {"name": "Copper Rake"}, {"name": "Steel Rake"}),
    "a phrase": ({"q": '"steel spade"'}, {"name": "Iron Spade"}, {"name": "Steel Spade Two"}),
    "a price range": ({"min_price": "10", "max_price": "20"}, {"price": "500.00"}, {"price": "12.50"}),
    "a price floor": ({"min_price": "400"}, {"price": "15.00"}, {"price": "450.00"}),
    "out of stock": ({"in_stock": "false"}, {"stock": 5}, {"stock": 0}),
    "a word, numbered": ({"q": "steel", "page": "1"}, {"name": "Copper Kettle"}, {"name": "Steel Rake"}),
    "either word, in a range": (
        {"q": "steel or copper", "min_price": "10", "max_price": "20"},
        {"price": "500.00"},
        {"price": "12.50"},
    ),
}


def _names(body: dict[str, Any]) -> list[str]:
    return sorted(p["name"] for p in body.get("items", body.get("results", [])))


def _descriptions(body: dict[str, Any]) -> list[str | None]:
    return [p["description"] for p in body.get("items", body.get("results", []))]


@pytest.mark.parametrize("case", list(TAGGED))
async def test_a_write_that_cannot_change_a_listing_of_no_category_leaves_its_pages_cached(
    aiohttp_client, settings: Settings, pg, case: str
) -> None:
    query, unrelated, related = TAGGED[case]
    # Given a cached listing of no category (a page cached whole: PostgreSQL answers it)
    client: TestClient = await aiohttp_client(create_app(settings.model_copy(update={"rate_limit_enabled": False})))
    await category(client)
    await product(client, name="Steel Spade", price="14.00", stock=0)
    await product(client, name="Steel Spade Rake", price="420.00", stock=0)
    first = await (await client.get("/api/products", params=query)).json()
    assert _names(first), first
    # ... and a change behind the API's back, so a page built again from PostgreSQL would show it
    await pg.execute("UPDATE products SET description = 'changed behind'")
    # When a product that cannot be in it is written (created, then changed and deleted without entering it)
    made = await product(client, **{"name": "Copper Pot", "price": "300.00", "stock": 3, **unrelated})
    r = await client.patch(f"/api/products/{made['slug']}", json={"attributes": {"a": 1}}, headers=ADMIN)
    assert r.status == 200, await r.text()
    assert (await client.delete(f"/api/products/{made['slug']}", headers=ADMIN)).status == 204
    # Then the page is still the cached one (no query built it again), and counted as a cache hit
    stats = client.app[READ_STATS]
    hits, misses = stats.hits, stats.misses
    after = await (await client.get("/api/products", params=query)).json()
    assert _descriptions(after) == _descriptions(first), case
    assert "changed behind" not in _descriptions(after), case
    assert (stats.hits, stats.misses) == (hits + 1, misses)
    # And a product that is in it shows at once (a page built again: a cache miss)
    await product(client, **{"name": "Copper Pot Two", "price": "300.00", "stock": 3, **related})
    hits, misses = stats.hits, stats.misses
    shown = await (await client.get("/api/products", params=query)).json()
    assert len(_names(shown)) == len(_names(first)) + 1, (case, _names(shown))
    assert (stats.hits, stats.misses) == (hits, misses + 1)


#: A product of the listing, and a change that takes it out: (query, its fields, the change).
LEAVING = {
    "renamed off the word": ({"q": "steel"}, {"name": "Steel Hoe"}, {"name": "Copper Hoe"}),
    "description off the word": (
        {"q": "zircon"},
        {"name": "Hoe", "description": "zircon tipped"},
        {"description": "plain"},
    ),
    "priced out of the range": ({"min_price": "10", "max_price": "20"}, {"price": "15.00"}, {"price": "900.00"}),
    "restocked": ({"in_stock": "false"}, {"stock": 0}, {"stock": 4}),
    "deactivated": ({"q": "steel"}, {"name": "Steel Hoe"}, {"is_active": False}),
}


@pytest.mark.parametrize("case", list(LEAVING))
async def test_a_product_that_leaves_a_cached_listing_of_no_category_is_gone_from_it_at_once(
    aiohttp_client, settings: Settings, case: str
) -> None:
    query, fields, change = LEAVING[case]
    client: TestClient = await aiohttp_client(create_app(settings.model_copy(update={"rate_limit_enabled": False})))
    await category(client)
    name = fields.get("name", "Steel Spade")
    made = await product(client, **fields)
    assert _names(await (await client.get("/api/products", params=query)).json()) == [name]
    # When it is changed so that it no longer matches
    r = await client.patch(f"/api/products/{made['slug']}", json=change, headers=ADMIN)
    assert r.status == 200, await r.text()
    # Then the listing no longer shows it (its old tags moved the page on)
    assert _names(await (await client.get("/api/products", params=query)).json()) == [], case
    # And a delete of a product in it takes it out at once too
    again = await product(client, **{**fields, "name": name + " Again"})
    assert _names(await (await client.get("/api/products", params=query)).json()) == [name + " Again"]
    assert (await client.delete(f"/api/products/{again['slug']}", headers=ADMIN)).status == 204
    assert _names(await (await client.get("/api/products", params=query)).json()) == [], case


@pytest.mark.parametrize("q", ["steel or copper", "-copper", "steel -copper", "the"])
async def test_a_q_with_or_or_not_depends_on_every_write(aiohttp_client, settings: Settings, pg, q: str) -> None:
    # Given a cached page of a q that a product may match without any one word of it
    client: TestClient = await aiohttp_client(create_app(settings.model_copy(update={"rate_limit_enabled": False})))
    await category(client)
    await product(client, name="Steel Spade")
    first = _names(await (await client.get("/api/products", params={"q": q})).json())
    # When products of other words are written
    await product(client, name="Brass Kettle")
    await product(client, name="Copper Pan")
    # Then the page is what PostgreSQL answers now
    r = await client.get("/api/products", params={"q": q, "sort": "name"})
    rows = await pg.fetch(
        "SELECT name FROM products WHERE deleted_at IS NULL AND search @@ websearch_to_tsquery('english', $1)"
        " ORDER BY name",
        q,
    )
    assert _names(await r.json()) == [row["name"] for row in rows], (q, first)


async def test_a_product_without_tags_makes_its_next_write_move_every_tagged_page_on(
    aiohttp_client, settings: Settings, redis_url: str
) -> None:
    # Given a product that has no tags in Redis (as projected before they existed), in a cached q page
    client: TestClient = await aiohttp_client(create_app(settings.model_copy(update={"rate_limit_enabled": False})))
    await category(client)
    made = await product(client, name="Steel Hoe")
    redis = aioredis.from_url(redis_url)
    try:
        bucket, member = keys.product_tags_bucket(made["id"]), keys.member(made["id"])
        assert await redis.hdel(bucket, member) == 1
        assert _names(await (await client.get("/api/products", params={"q": "steel"})).json()) == ["Steel Hoe"]
        # When it is renamed off the word
        r = await client.patch(f"/api/products/{made['slug']}", json={"name": "Copper Hoe"}, headers=ADMIN)
        assert r.status == 200
        # Then the page no longer shows it, and it has tags again
        assert _names(await (await client.get("/api/products", params={"q": "steel"})).json()) == []
        assert await redis.hget(bucket, member)
    finally:
        await redis.aclose()


async def test_a_page_stored_again_and_again_leaves_room_for_other_pages(redis_url: str) -> None:
    # Given one listing's page stored many times under one generation (64 connections missing it at once each
    # build and store it), more times over than the kind's byte budget holds
    redis = aioredis.from_url(redis_url)
    run = redis_runner(redis)
    page = b"x" * 100_000
    try:
        for _ in range(10):
            await asyncio.gather(*(read.store_page(run, "products", "0", "same", page) for _ in range(20)))
        # Then the byte count is that page's once ...
        assert int(await redis.get(keys.page_bytes("products")) or 0) == len(page)
        # ... and other pages are still cached (a count grown past the budget would drop each as it is stored)
        for n in range(5):
            await read.store_page(run, "products", "0", f"other-{n}", page)
        gen, found = await read.cached_page(run, "products", "other-4")
        assert found == page, gen
        # And a count that drifted before this rule is set right once its index holds one page
        await redis.delete(keys.page_index("products"))
        await redis.set(keys.page_bytes("products"), keys.PAGE_BYTES_PER_KIND * 3)
        await read.store_page(run, "products", "0", "after-drift", page)
        assert int(await redis.get(keys.page_bytes("products")) or 0) == len(page)
    finally:
        await redis.aclose()


async def test_concurrent_misses_of_one_listing_wait_for_one_build(
    aiohttp_client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a listing PostgreSQL answers, whose page a write has just made stale
    client: TestClient = await aiohttp_client(create_app(settings.model_copy(update={"rate_limit_enabled": False})))
    await category(client)
    await product(client, name="Steel Spade")
    assert (await client.get("/api/products", params={"q": "steel"})).status == 200
    await product(client, name="Steel Rake")
    built = 0
    list_page = prod_repo.list_page

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal built
        built += 1
        return await list_page(*args, **kwargs)

    monkeypatch.setattr(prod_repo, "list_page", counted)
    # When 30 clients read it at once
    pages = await asyncio.gather(*(client.get("/api/products", params={"q": "steel"}) for _ in range(30)))
    bodies = [await p.json() for p in pages]
    # Then PostgreSQL built it once, and every one of them got it, with the write
    assert built == 1
    assert all(_names(b) == ["Steel Rake", "Steel Spade"] for b in bodies)


async def test_a_listing_read_counts_once_where_its_page_came_from(
    aiohttp_client, settings: Settings, redis_url: str
) -> None:
    client: TestClient = await aiohttp_client(create_app(settings.model_copy(update={"rate_limit_enabled": False})))
    await category(client)
    await product(client, name="Steel Spade")
    stats = client.app[READ_STATS]
    redis = aioredis.from_url(redis_url)
    try:
        # A listing the sorted sets answer (as after a rebuild): a hit when built from them, and when cached
        await redis.hset(keys.READY, "products", keys.FORMAT)
        for _ in range(2):
            hits, misses = stats.hits, stats.misses
            assert (await client.get("/api/products")).status == 200
            assert (stats.hits, stats.misses) == (hits + 1, misses)
        # When the sorted sets cannot answer (no rebuild has completed), the page is built from PostgreSQL: one miss
        await redis.delete(keys.READY)
        await product(client, name="Steel Rake")
        hits, misses = stats.hits, stats.misses
        assert len((await (await client.get("/api/products")).json())["items"]) == 2
        assert (stats.hits, stats.misses) == (hits, misses + 1)
    finally:
        await redis.aclose()
