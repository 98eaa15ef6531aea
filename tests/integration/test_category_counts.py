"""A category's ``product_count`` is kept by a trigger (migration 0002), not counted on each read: it must stay
equal to a real count through every way a product enters or leaves a category's live set."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg

from migrations.runner import MIGRATIONS_DIR, migrate
from tests.conftest import ADMIN
from tests.integration.test_migrations import fresh_dsn  # noqa: F401  (fixture)
from tests.support.api import category, product

REAL_COUNTS = """
SELECT c.slug, count(p.id) FILTER (WHERE p.deleted_at IS NULL) AS n
FROM categories c LEFT JOIN products p ON p.category_id = c.id GROUP BY c.slug ORDER BY c.slug"""


async def _served(client, slugs: list[str]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    out = {}
    for slug in slugs:
        r = await client.get(f"/api/categories/{slug}")
        assert r.status == 200
        out[slug] = (await r.json())["product_count"]
    return out


async def test_product_count_follows_create_delete_restore_and_moves(client, pg) -> None:
    # Given two categories
    await category(client, "Tools")
    await category(client, "Garden")
    # When products are created, moved by PUT and by PATCH, deleted, restored, and edited without a move
    for name in ("Spade", "Rake", "Hoe", "Shears"):
        await product(client, name, category="tools")
    await product(client, "Hose", category="garden")
    r = await client.patch(
        "/api/products/rake",
        json={"category": "garden"},
        headers={**ADMIN, "Content-Type": "application/merge-patch+json"},
    )
    assert r.status == 200, await r.text()
    r = await client.put(
        "/api/products/hoe", json={"name": "Hoe", "category": "garden", "price": "5.00"}, headers=ADMIN
    )
    assert r.status == 200, await r.text()
    assert (await client.delete("/api/products/spade", headers=ADMIN)).status == 204
    assert (await client.delete("/api/products/hose", headers=ADMIN)).status == 204
    assert (await client.post("/api/products/hose/restore", headers=ADMIN)).status == 200
    r = await client.patch(
        "/api/products/shears",
        json={"price": "7.00"},
        headers={**ADMIN, "Content-Type": "application/merge-patch+json"},
    )
    assert r.status == 200, await r.text()
    # Then the API's counts are the real ones: tools {shears}, garden {rake, hoe, hose}
    real = {r["slug"]: r["n"] for r in await pg.fetch(REAL_COUNTS)}
    assert real == {"tools": 1, "garden": 3}
    assert await _served(client, ["tools", "garden"]) == real


async def test_concurrent_creates_in_one_category_are_all_counted(client, pg) -> None:
    # Given a category
    await category(client, "Tools")
    # When 40 products are created at once
    await asyncio.gather(*(product(client, f"Tool {n}", category="tools") for n in range(40)))
    # Then the count is 40, and a category with live products still cannot be deleted
    assert await _served(client, ["tools"]) == {"tools": 40}
    assert (await client.delete("/api/categories/tools", headers=ADMIN)).status == 409


async def test_the_migration_counts_the_products_that_exist_before_it(fresh_dsn, tmp_path: Path) -> None:  # noqa: F811
    # Given a database at migration 0001 with live and deleted products
    shutil.copy(MIGRATIONS_DIR / "0001_initial.sql", tmp_path)
    await migrate(fresh_dsn, tmp_path)
    conn = await asyncpg.connect(fresh_dsn)
    try:
        await conn.execute(
            """
INSERT INTO categories (slug, name) VALUES ('a', 'A'), ('b', 'B'), ('c', 'C');
INSERT INTO products (slug, name, price, category_id, deleted_at)
SELECT 'p' || g, 'P' || g, 1, 1 + g % 2, CASE WHEN g % 5 = 0 THEN now() END FROM generate_series(1, 50) g;"""
        )
        # When 0002 is applied
        shutil.copy(MIGRATIONS_DIR / "0002_category_product_counts.sql", tmp_path)
        assert await migrate(fresh_dsn, tmp_path) == ["0002_category_product_counts.sql"]
        # Then every category's count is its live products, and later writes keep it so
        await conn.execute("UPDATE products SET deleted_at = now() WHERE slug = 'p1'")
        await conn.execute("UPDATE products SET category_id = 3 WHERE slug = 'p2'")
        counted = {r["slug"]: r["n"] for r in await conn.fetch(REAL_COUNTS)}
        kept = {
            r["slug"]: r["n"]
            for r in await conn.fetch("SELECT slug, category_product_count(id) AS n FROM categories ORDER BY slug")
        }
        assert counted == {"a": 19, "b": 19, "c": 1}
        assert kept == counted
    finally:
        await conn.close()
