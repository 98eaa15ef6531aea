"""The listing and slug queries at scale: generic plans on a seeded, analyzed table use indexes, never a Seq Scan."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import asyncpg

from bench.seed import seed
from shared.settings import Settings
from shared.store import products as prod_repo

CASES: dict[str, tuple[prod_repo.Filters, str, tuple[Any, int] | None]] = {
    "q no match": (prod_repo.Filters(q="zzyzzx"), "-created_at", None),
    "q common": (prod_repo.Filters(q="made"), "-created_at", None),
    "q words": (prod_repo.Filters(q="coffee garden"), "-created_at", None),
    "q and category": (prod_repo.Filters(q="coffee", category="office"), "-created_at", None),
    "price range": (prod_repo.Filters(min_price=Decimal(10), max_price=Decimal(20)), "-created_at", None),
    "price range by price": (prod_repo.Filters(min_price=Decimal(10), max_price=Decimal(20)), "price", None),
    "in stock": (prod_repo.Filters(in_stock=True), "name", None),
    "deep cursor": (prod_repo.Filters(), "-created_at", (dt.datetime(2026, 6, 1, tzinfo=dt.UTC), 15_000)),
    "by name": (prod_repo.Filters(), "name", None),
    "by -price in a category": (prod_repo.Filters(category="kitchen"), "-price", None),
}


async def _generic_plan(pg: asyncpg.Connection, sql: str, args: list[Any]) -> str:
    async with pg.transaction():
        await pg.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        rows = await (await pg.prepare("EXPLAIN " + sql)).fetch(*args)
    return "\n".join(r[0] for r in rows)


async def test_listing_and_slug_queries_use_indexes_in_generic_plans(
    settings: Settings, pg: asyncpg.Connection
) -> None:
    # Given 30,000 seeded products, analyzed
    await seed(settings.database_url, 30_000, 5, progress=False, random_seed=1)
    for name, (filters, sort, after) in CASES.items():
        # When each statement a listing may run is planned as asyncpg's cache has it after five runs
        plan = await _generic_plan(pg, *prod_repo.page_query(filters, sort, after, 21))
        # Then products are reached through an index, in the order's index order (no sort)
        assert "Seq Scan on products" not in plan, (name, plan)
        assert "Sort" not in plan, (name, plan)
        if prod_repo._filtered(filters, sort):
            size = prod_repo.page_query(filters, sort, after, prod_repo.WINDOW, window_size=True)
            assert "Seq Scan on products" not in await _generic_plan(pg, *size), name
    # And the sparse path of a rare word goes through the full-text index
    plan = await _generic_plan(
        pg, *prod_repo.page_query(prod_repo.Filters(q="zzyzzx"), "-created_at", None, 21, sparse=True)
    )
    assert "products_search" in plan and "Seq Scan on products" not in plan, plan
    # And the slug-collision lookup is an index range
    plan = await _generic_plan(
        pg,
        "SELECT slug FROM products WHERE deleted_at IS NULL AND slug ~>=~ $1 AND slug ~<~ ($1 || '.')"
        " AND (slug = $1 OR starts_with(slug, $1 || '-'))",
        ["rustic-steel-chair"],
    )
    assert "products_slug_pattern" in plan and "Seq Scan" not in plan, plan
