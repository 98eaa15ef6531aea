"""``python -m bench seed``: realistic products loaded with COPY, every invariant of the schema kept."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient

from bench.seed import seed
from shared.settings import Settings
from tests.support.api import category, outbox, product
from tests.support.processes import run_module


async def _indexes(pg: asyncpg.Connection) -> set[str]:
    rows = await pg.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = 'products'")
    return {r["indexdef"] for r in rows}


async def _seed_command(settings: Settings, *args: str) -> tuple[int, str, str]:
    return await run_module(settings, "-m", "bench", *args, seconds=120)


async def test_seed_command_loads_products_the_api_then_serves(
    client: TestClient, settings: Settings, pg: asyncpg.Connection
) -> None:
    # Given a catalog with one category and one product made through the API
    await category(client, "Kitchen")
    await product(client, name="Kettle", category="kitchen")
    events_before = len(await outbox(pg))
    # When 300 products in 3 categories are seeded by the command
    code, out, err = await _seed_command(settings, "seed", "--products", "300", "--categories", "3")
    assert code == 0, err
    assert "300 products in 3 categories" in out
    # Then the table has them, with unique slugs and names of words, and no events were written
    assert await pg.fetchval("SELECT count(*) FROM products WHERE deleted_at IS NULL") == 301
    assert await pg.fetchval("SELECT count(DISTINCT slug) FROM products") == 301
    assert len(await outbox(pg)) == events_before
    # And the new categories took slugs beside the API's (kitchen-2), with product counts that add up
    seeded = await pg.fetch("SELECT slug FROM categories WHERE description LIKE 'Seeded: %' ORDER BY id")
    assert [r["slug"] for r in seeded] == ["kitchen-2", "garden", "office"]
    total = 0
    for r in seeded:
        resp = await client.get(f"/api/categories/{r['slug']}")
        assert resp.status == 200
        body = await resp.json()
        counted = await pg.fetchval(
            "SELECT count(*) FROM products p JOIN categories c ON c.id = p.category_id"
            " WHERE c.slug = $1 AND p.deleted_at IS NULL",
            r["slug"],
        )
        assert body["product_count"] == counted
        total += counted
    assert total == 300
    # And a seeded product is read from the rebuilt read model, found by a word of its name and by its category
    row = await pg.fetchrow(
        "SELECT p.slug, p.name, c.slug AS category FROM products p JOIN categories c ON c.id = p.category_id"
        " WHERE c.slug = 'garden' AND p.is_active ORDER BY p.id LIMIT 1"
    )
    resp = await client.get(f"/api/products/{row['slug']}")
    assert resp.status == 200
    assert (await resp.json())["image"]["status"] == "none"
    word = row["name"].split()[-1]
    resp = await client.get("/api/products", params={"q": word, "category": "garden", "limit": "100"})
    found = [p["slug"] for p in (await resp.json())["items"]]
    assert row["slug"] in found
    # And the counters' trigger still runs for the API's writes after the seed
    resp = await client.get("/api/categories/kitchen-2")
    before = (await resp.json())["product_count"]
    await product(client, name="Second kettle", category="kitchen-2")
    resp = await client.get("/api/categories/kitchen-2")
    assert (await resp.json())["product_count"] == before + 1


async def test_a_large_seed_rebuilds_every_index_and_keeps_slugs_unique(
    settings: Settings, pg: asyncpg.Connection
) -> None:
    # Given the migrated schema's indexes
    indexes = await _indexes(pg)
    # When a seed large against the table builds the indexes after its load, and a second one grows them
    await seed(settings.database_url, 400, 2, progress=False, bulk_min=1)
    await seed(settings.database_url, 100, 1, progress=False, bulk_min=1)
    # Then every index is back as it was, valid, and the live slugs unique
    assert await _indexes(pg) == indexes
    assert await pg.fetchval("SELECT bool_and(indisvalid) FROM pg_index WHERE indrelid = 'products'::regclass")
    assert await pg.fetchval("SELECT count(DISTINCT slug) FROM products") == 500
    # And the counters hold every product, the search vectors are filled
    assert await pg.fetchval("SELECT sum(n) FROM category_product_counts") == 500
    assert await pg.fetchval("SELECT count(*) FROM products WHERE search = ''::tsvector") == 0


async def test_bench_refuses_arguments_it_does_not_know(settings: Settings, pg: asyncpg.Connection) -> None:
    # When the benchmark is given seed's arguments without the seed command, or seed an unknown one
    for args in (("--products", "5"), ("seed", "--products", "5", "--colour", "red"), ("seed",)):
        code, _, err = await _seed_command(settings, *args)
        # Then it stops with a usage error, having run and changed nothing
        assert code == 2, (args, err)
        assert "usage: python -m bench" in err
    assert await pg.fetchval("SELECT count(*) FROM products") == 0
