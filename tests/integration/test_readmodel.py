"""The Redis read model: version checks, tombstones, Redis-first reads, read-your-writes, Redis outages."""

from __future__ import annotations

import dataclasses
import time

import redis.asyncio as aioredis

from api.app import create_app
from shared.readmodel import keys
from shared.readmodel import project as projection
from shared.readmodel.client import redis_runner
from shared.store import products as prod_repo
from shared.store.pool import create_pool
from tests.conftest import ADMIN
from tests.support.tcp_proxy import TcpProxy
from worker.readmodel.rebuild import rebuild
from worker.readmodel.refresh import Resources, project_product


async def _seed(client, n: int = 0) -> list[str]:
    r = await client.post("/api/categories", json={"name": "Tools", "slug": "tools"}, headers=ADMIN)
    assert r.status == 201
    slugs = []
    for i in range(n):
        r = await client.post(
            "/api/products", json={"name": f"Item {i}", "price": f"{i % 7}.50", "category": "tools"}, headers=ADMIN
        )
        assert r.status == 201
        slugs.append((await r.json())["slug"])
    return slugs


async def _redis(settings):
    client = aioredis.from_url(settings.redis_url)
    return client, redis_runner(client)


async def test_an_older_or_duplicate_projection_never_replaces_a_newer_one(client, settings, pg) -> None:
    # Given a product at version 2 in Redis
    await _seed(client)
    r = await client.post("/api/products", json={"name": "Saw", "price": "9", "category": "tools"}, headers=ADMIN)
    await client.patch("/api/products/saw", json={"stock": 5}, headers=ADMIN)
    redis_client, run = await _redis(settings)
    v2 = await prod_repo.get_by_slug(pg, "saw")
    assert v2 is not None
    assert v2.version == 2
    # When a late message projects the version-1 state, and a duplicate read earlier projects version 2 again
    v1 = dataclasses.replace(v2, version=1, stock=0, lsn=v2.lsn + 10_000)
    assert await projection.project_product(run, v1, settings.media_url) is False
    assert await projection.project_product(run, dataclasses.replace(v2, lsn=0), settings.media_url) is False
    # Then readers still see version 2
    r = await client.get("/api/products/saw")
    assert (await r.json())["version"] == 2
    assert r.headers["ETag"] == '"2"'
    await redis_client.aclose()


async def test_a_tombstone_keeps_a_late_message_from_resurrecting_a_deleted_product(client, settings, pg) -> None:
    # Given a product that was deleted (its tombstone is at version 2)
    await _seed(client)
    await client.post("/api/products", json={"name": "Saw", "price": "9", "category": "tools"}, headers=ADMIN)
    live = await prod_repo.get_by_slug(pg, "saw")
    assert (await client.delete("/api/products/saw", headers=ADMIN)).status == 204
    redis_client, run = await _redis(settings)
    # When the version-1 state arrives late
    assert live is not None
    assert await projection.project_product(run, live, settings.media_url) is False
    # Then the product stays gone for readers
    assert (await client.get("/api/products/saw")).status == 404
    await redis_client.aclose()


async def test_a_read_is_served_from_redis_without_postgresql(client, settings, pg) -> None:
    # Given a product read once (so it is projected)
    await _seed(client, 1)
    first = await client.get("/api/products/item-0")
    assert first.status == 200
    # When PostgreSQL no longer has the row at all (removed behind the API's back)
    await pg.execute("DELETE FROM outbox; DELETE FROM products")
    # Then the read is answered from Redis with the same bytes and ETag
    again = await client.get("/api/products/item-0")
    assert again.status == 200
    assert await again.read() == await first.read()
    assert again.headers["ETag"] == first.headers["ETag"]


async def test_reads_your_writes_without_any_worker_running(client) -> None:
    # Given a product read into the cache at version 1 (no relay and no worker run in this test)
    await _seed(client, 1)
    assert (await (await client.get("/api/products/item-0")).json())["version"] == 1
    # When the client updates it
    r = await client.patch("/api/products/item-0", json={"name": "Renamed"}, headers=ADMIN)
    assert r.status == 200
    # Then its next read shows the new version, and so does the category's product count after a delete
    body = await (await client.get("/api/products/item-0")).json()
    assert (body["version"], body["name"]) == (2, "Renamed")
    assert (await (await client.get("/api/categories/tools")).json())["product_count"] == 1
    assert (await client.delete("/api/products/item-0", headers=ADMIN)).status == 204
    assert (await (await client.get("/api/categories/tools")).json())["product_count"] == 0


async def test_indexed_listings_from_redis_match_postgresql_page_by_page(client, settings) -> None:
    # Given 23 products and a completed rebuild (so listings come from the sorted sets)
    await _seed(client, 23)
    counts = await rebuild(settings, progress=False)
    assert counts["products"] == 23
    redis_client, _ = await _redis(settings)
    for sort in ("-created_at", "created_at", "price", "-price"):
        for extra in ({}, {"category": "tools"}):
            # When every page is walked with Redis, then again with Redis emptied (PostgreSQL answers)
            walks = []
            for flush in (False, True):
                if flush:
                    await redis_client.flushdb()
                seen, cursor = [], None
                while True:
                    params = {"sort": sort, "limit": "5", **extra} | ({"cursor": cursor} if cursor else {})
                    page = await (await client.get("/api/products", params=params)).json()
                    seen += [p["slug"] for p in page["items"]]
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
                walks.append(seen)
            await rebuild(settings, progress=False)
            # Then both walks list every product once, in the same order
            assert walks[0] == walks[1]
            assert len(walks[0]) == 23 == len(set(walks[0]))
    await redis_client.aclose()


async def test_a_created_product_is_listed_at_once_from_the_sorted_sets(client, settings) -> None:
    # Given listings served from Redis
    await _seed(client, 2)
    await rebuild(settings, progress=False)
    # When a product is created
    await client.post("/api/products", json={"name": "Newest", "price": "1", "category": "tools"}, headers=ADMIN)
    # Then the newest-first listing shows it on top straight away
    page = await (await client.get("/api/products", params={"limit": "2"})).json()
    assert page["items"][0]["slug"] == "newest"


async def test_the_worker_projection_reads_postgresql_not_the_event(client, settings, pg) -> None:
    # Given a product changed in PostgreSQL directly (no write-through happened)
    await _seed(client, 1)
    await pg.execute("UPDATE products SET stock = 42, version = version + 1 WHERE slug = 'item-0'")
    product_id = await pg.fetchval("SELECT id FROM products WHERE slug = 'item-0'")
    pool = await create_pool(settings)
    redis_client, run = await _redis(settings)
    # When the worker projects the product
    assert await project_product(Resources(pool, run, settings.media_url), product_id) is True
    # Then readers see the state PostgreSQL holds
    body = await (await client.get("/api/products/item-0")).json()
    assert (body["stock"], body["version"]) == (42, 2)
    await pool.close()
    await redis_client.aclose()


async def test_redis_down_reads_come_from_postgresql_without_stalling(aiohttp_client, settings) -> None:
    # Given an API whose Redis is cut off
    proxy = TcpProxy("127.0.0.1", 6379)
    await proxy.start()
    cut_settings = settings.model_copy(update={"redis_url": proxy.url_for(settings.redis_url)})
    client = await aiohttp_client(create_app(cut_settings))
    await _seed(client, 3)
    await proxy.cut()
    # When products are written and read
    t0 = time.monotonic()
    r = await client.post("/api/products", json={"name": "Late", "price": "1", "category": "tools"}, headers=ADMIN)
    assert r.status == 201
    for slug in ("item-0", "late"):
        assert (await client.get(f"/api/products/{slug}")).status == 200
    listing = await (await client.get("/api/products")).json()
    elapsed = time.monotonic() - t0
    # Then every answer is right, and quick
    assert len(listing["items"]) == 4
    assert elapsed < 2.0
    ready = await client.get("/health/ready")
    assert ready.status == 503
    assert (await ready.json())["checks"]["redis"].startswith("down")
    await proxy.stop()


async def test_a_renamed_product_is_404_under_its_old_slug_and_read_from_redis_under_its_new(client, pg) -> None:
    # Given a product read once (so its projection and slug copy are in Redis)
    await _seed(client, 1)
    assert (await client.get("/api/products/item-0")).status == 200
    # When its slug changes
    r = await client.patch("/api/products/item-0", json={"slug": "renamed"}, headers=ADMIN)
    assert r.status == 200
    # Then the old slug is gone at once, and the new one is answered from Redis (even with PostgreSQL emptied)
    assert (await client.get("/api/products/item-0")).status == 404
    await pg.execute("DELETE FROM outbox; DELETE FROM products")
    body = await (await client.get("/api/products/renamed")).json()
    assert (body["slug"], body["version"]) == ("renamed", 2)


async def test_a_projection_that_skips_a_version_moves_every_tagged_page_on(client, settings, pg) -> None:
    # Given a product projected at version 1 (write-through), then changed twice in PostgreSQL
    await _seed(client)
    r = await client.post("/api/products", json={"name": "Lamp", "price": "9", "category": "tools"}, headers=ADMIN)
    assert r.status == 201
    redis_client, run = await _redis(settings)
    unknown = int(await redis_client.get(keys.UNKNOWN_TAGS) or 0)
    await pg.execute("UPDATE products SET version = 3, name = 'Lamp Shade' WHERE slug = 'lamp'")
    # When only version 3 is projected (version 2, which Redis never saw, may have been in a cached page)
    v3 = await prod_repo.get_by_slug(pg, "lamp")
    assert v3 is not None
    assert v3.lexemes is not None
    assert await projection.project_product(run, v3, settings.media_url) is True
    # Then the counter of unknown tags moved on (every page that depends on tags reads it) ...
    assert int(await redis_client.get(keys.UNKNOWN_TAGS) or 0) == unknown + 1
    # ... and the next version, in order, moves only its own tags' counters
    await pg.execute("UPDATE products SET version = 4, stock = 2 WHERE slug = 'lamp'")
    v4 = await prod_repo.get_by_slug(pg, "lamp")
    assert v4 is not None
    word = keys.tag_counter("w" + keys.word_code("lamp"))
    before = int(await redis_client.get(word) or 0)
    assert await projection.project_product(run, v4, settings.media_url) is True
    assert int(await redis_client.get(keys.UNKNOWN_TAGS) or 0) == unknown + 1
    assert int(await redis_client.get(word) or 0) == before + 1
    await redis_client.aclose()
