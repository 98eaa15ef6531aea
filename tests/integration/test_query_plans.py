"""The product listing's statements and the slug-collision lookup on a seeded table: indexed in custom and generic
plans (never a Seq Scan on products, never a sort of the table), and answering what the plain query answers."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest

from bench.seed import seed
from shared.store import products as prod_repo
from shared.store.products import Filters

#: Products seeded: small enough for ``make test`` ...
PRODUCTS = 30_000
#: ... so the windows of the sort order are scaled down with the table, to what they are to a category at 1M
#: products (5,000 of 50,000 to 200,000 rows): the planner weighs a walk of the window against sorting a category
#: as it would there, and the rarer filters go through the sparse match set.
WINDOWS = {0: 15, 1: 45, 2: 150, 3: 300, 4: 750, 5: 1200, 6: 3000}
LIMIT = 21

#: name -> (filters, sort, where the cursor is: a fraction of the way down the order, or None).
CASES: dict[str, tuple[Filters, str, float | None]] = {
    "q no match": (Filters(q="zzyzzx"), "-created_at", None),
    "q rare word": (Filters(q="zircon"), "-created_at", None),
    "q common word": (Filters(q="made"), "-created_at", None),
    "q several words": (Filters(q="made design quality"), "created_at", None),
    "q two rare words": (Filters(q="opal zircon"), "-created_at", None),
    "q and a category": (Filters(q="zircon", category="garden"), "name", None),
    "q by price, deep": (Filters(q="quality"), "-price", 0.5),
    "price range by date": (Filters(min_price=Decimal(10), max_price=Decimal(20)), "-created_at", None),
    "narrow price range by name": (Filters(min_price=Decimal("1234.00"), max_price=Decimal("1236.00")), "name", None),
    "price range by price, deep": (Filters(min_price=Decimal(10), max_price=Decimal(900)), "price", 0.3),
    "in stock": (Filters(in_stock=True), "-created_at", None),
    "out of stock by name": (Filters(in_stock=False), "name", None),
    "newest": (Filters(), "-created_at", None),
    "oldest, deep": (Filters(), "created_at", 0.7),
    "cheapest": (Filters(), "price", None),
    "dearest, deep": (Filters(), "-price", 0.5),
    "by name, deep": (Filters(), "name", 0.5),
    "a category by price": (Filters(category="kitchen"), "-price", None),
    "a category, deep": (Filters(category="office"), "created_at", 0.5),
    "q rare, in stock, deep": (Filters(q="zircon", in_stock=True), "-created_at", 0.5),
    "q common, narrow range": (
        Filters(q="made", min_price=Decimal(1234), max_price=Decimal(1250)),
        "-created_at",
        None,
    ),
    "q rare, wide range, by name": (Filters(q="zircon", min_price=Decimal(10), max_price=Decimal(900)), "name", None),
    "q either word, a range": (Filters(q="zircon or opal", min_price=Decimal(1500)), "created_at", 0.2),
    "q, a range by price, deep cursor below it": (
        Filters(q="quality", min_price=Decimal(1234), max_price=Decimal(1250)),
        "price",
        0.5,
    ),
    "inactive by name": (Filters(is_active=False), "name", None),
}

_KEYS = {"-created_at": "created_at", "created_at": "created_at", "price": "price", "-price": "price", "name": "name"}


@pytest.fixture
async def seeded(database_url: str, pg: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch) -> asyncpg.Connection:
    monkeypatch.setattr(prod_repo, "WINDOWS", WINDOWS)
    # Estimates of another database's listings are not reused here.
    monkeypatch.setattr(prod_repo, "_estimated", {})
    await seed(database_url, PRODUCTS, 5, progress=False, random_seed=1)
    await pg.execute("VACUUM ANALYZE products")
    await pg.execute("ANALYZE categories")
    return pg


async def _after(pg: asyncpg.Connection, sort: str, fraction: float | None) -> tuple[Any, int] | None:
    if fraction is None:
        return None
    order, _, _ = prod_repo.SORTS[sort]
    key = _KEYS[sort]
    row = await pg.fetchrow(
        f"SELECT p.{key}, p.id FROM products p WHERE p.deleted_at IS NULL ORDER BY {order} OFFSET $1 LIMIT 1",
        int(PRODUCTS * fraction),
    )
    return row[0], row[1]


async def _plan(pg: asyncpg.Connection, mode: str, sql: str, args: list[Any]) -> dict[str, Any]:
    """The plan of ``sql`` with ``args``: a custom plan (planned for these values), or the generic plan that a
    statement cached after five runs gets (EXPLAIN of a statement with its values bound plans it for them, so the
    generic one is asked of a prepared statement: EXPLAIN EXECUTE under ``force_generic_plan``)."""
    async with pg.transaction():
        await pg.execute(f"SET LOCAL plan_cache_mode = {mode}")
        if mode == "force_generic_plan":
            await pg.execute("PREPARE plan_probe AS " + sql)
            # A generic plan does not depend on the values, and EXPLAIN without ANALYZE runs nothing: NULLs do.
            nulls = f"({', '.join('NULL' for _ in args)})" if args else ""
            try:
                out = await pg.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE plan_probe{nulls}")
            finally:
                await pg.execute("DEALLOCATE plan_probe")
        else:
            out = await (await pg.prepare("EXPLAIN (FORMAT JSON) " + sql)).fetchval(*args)
    plan: dict[str, Any] = (orjson.loads(out) if isinstance(out, str) else out)[0]["Plan"]
    return plan


def _nodes(node: dict[str, Any], *, subplans: bool = True) -> Iterator[dict[str, Any]]:
    """``node`` and those under it; without ``subplans``, not those of InitPlans and SubPlans (run apart)."""
    yield node
    for child in node.get("Plans", []):
        if subplans or child.get("Parent Relationship") not in ("InitPlan", "SubPlan"):
            yield from _nodes(child, subplans=subplans)


def _table_scans(node: dict[str, Any]) -> list[str]:
    """How each scan of products under ``node`` reads it, but the page's own rows by primary key."""
    return [
        f"{n['Node Type']} {n.get('Index Name', '')}"
        for n in _nodes(node, subplans=False)
        if n.get("Relation Name") == "products" and n.get("Index Name") != "products_pkey"
    ]


def _unwindowed(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The scans of products under ``node`` that neither a Limit (a window) nor a filter's index (a price range,
    a word) bounds."""
    if node["Node Type"] == "Limit":
        return []
    if node.get("Relation Name") == "products":
        cond = node.get("Index Cond", "") + node.get("Recheck Cond", "")
        return [] if "price" in cond or "@@" in cond else [node]
    found = []
    for child in node.get("Plans", []):
        if child.get("Parent Relationship") not in ("InitPlan", "SubPlan"):
            found += _unwindowed(child)
    return found


def _check(plan: dict[str, Any], kind: str) -> None:
    scans = [n for n in _nodes(plan) if n.get("Relation Name") == "products"]
    assert scans
    assert all(n["Node Type"] != "Seq Scan" for n in scans), "a Seq Scan on products"
    sorts = [n for n in _nodes(plan) if n["Node Type"] in ("Sort", "Incremental Sort")]
    if kind == "plain":
        assert not sorts, "a sort"
    if kind.startswith(("plain", "windowed")):
        # A window's rows may be sorted again after the join, and the price order's range, never the table.
        assert all(_unwindowed(s) == [] for s in sorts), "a sort of the table"
        # A walk of the order's index never filters by a word or a price it does not bound: that walk could read
        # the whole index for a rare one (the window's rows are filtered above the scan, at most WINDOW of them).
        unbounded = [
            n.get("Filter", "") for n in scans if "@@" in n.get("Filter", "") or "price" in n.get("Filter", "")
        ]
        assert not unbounded, f"a walk filtered by {unbounded}"
        return
    # A sparse page sorts the match set (the materialized CTE m) and then its own rows, never the table ...
    assert all(_table_scans(s) == [] for s in sorts), [_table_scans(s) for s in sorts]
    # ... and the match set comes from the filters' own indexes: the driver's.
    match_set = next(n for n in _nodes(plan) if n.get("Subplan Name") == "CTE m")
    used = {n.get("Index Name") for n in _nodes(match_set)}
    indexes = {"q": "products_search", "price": "products_price", "inactive": "products_inactive_created"}
    driver = next(d for d in prod_repo.DRIVERS[::-1] if kind.endswith(d))
    assert used & {indexes[d] for d in driver.split()}, used


async def test_every_listing_statement_is_indexed_in_custom_and_generic_plans(seeded: asyncpg.Connection) -> None:
    # Given 30,000 seeded products, analyzed
    for name, (filters, sort, fraction) in CASES.items():
        after = await _after(seeded, sort, fraction)
        for kind in await prod_repo.kinds(seeded, filters, sort, LIMIT):
            sql, args = prod_repo.statement(kind, filters, sort, after, LIMIT)
            # When each statement a listing may run is planned for its values, and as asyncpg's statement cache
            # has PostgreSQL plan it after five runs (generic)
            for mode in ("force_custom_plan", "force_generic_plan"):
                plan = await _plan(seeded, mode, sql, args)
                # Then products are read through indexes, in the order's index order or from the filter's index
                try:
                    _check(plan, kind)
                except AssertionError as exc:
                    raise AssertionError(f"{name}, {kind}, {mode}: {exc}\n{orjson.dumps(plan).decode()}") from exc


async def test_every_listing_answers_what_filtering_the_whole_order_answers(seeded: asyncpg.Connection) -> None:
    # Given 30,000 seeded products, analyzed
    for name, (filters, sort, fraction) in CASES.items():
        after = await _after(seeded, sort, fraction)
        # When a page is listed (through the window, or the sparse match set when the window holds too few)
        page = [p.id for p in await prod_repo.list_page(seeded, filters, sort, after, LIMIT)]
        # Then it is the page that filtering the whole order gives
        sql, args = prod_repo.statement("plain", filters, sort, after, LIMIT)
        expected = [r["id"] for r in await seeded.fetch(sql, *args)]
        assert page == expected, name
        # And so is the whole match set that each of its filters' indexes gives, whichever the estimates choose
        for kind in await prod_repo.kinds(seeded, filters, sort, LIMIT):
            if kind.startswith("sparse"):
                sql, args = prod_repo.statement(kind, filters, sort, after, LIMIT)
                assert [r["id"] for r in await seeded.fetch(sql, *args)] == expected, (name, kind)
    # And a word pair that few products hold is paged, two at a time, through every match, in order, once
    filters = Filters(q="opal zircon")
    expected = [
        r["id"]
        for r in await seeded.fetch(
            "SELECT id FROM products WHERE deleted_at IS NULL AND search @@ websearch_to_tsquery('english', $1)"
            " ORDER BY created_at DESC, id DESC",
            filters.q,
        )
    ]
    assert 0 < len(expected) < WINDOWS[2]
    seen: list[int] = []
    after = None
    while True:
        page = await prod_repo.list_page(seeded, filters, "-created_at", after, 2)
        seen += [p.id for p in page]
        if len(page) < 2:
            break
        after = (page[-1].created_at, page[-1].id)
    assert seen == expected


async def test_the_slug_collision_lookup_is_an_index_range(seeded: asyncpg.Connection) -> None:
    # Given a seeded product's slug and its name's base
    slug = await seeded.fetchval("SELECT slug FROM products ORDER BY id OFFSET 100 LIMIT 1")
    base = slug.rsplit("-", 1)[0]
    for mode in ("force_custom_plan", "force_generic_plan"):
        # When the lookup on create is planned
        plan = await _plan(seeded, mode, prod_repo.SLUGS_LIKE, [base])
        # Then it is a range of the slug index, not a walk of all of it
        (scan,) = (n for n in _nodes(plan) if n.get("Relation Name") == "products")
        assert scan.get("Index Name") == "products_slug_live", scan
        assert "~>=~" in scan.get("Index Cond", ""), scan
    # And it finds the slug and nothing that merely starts like it
    assert slug in await prod_repo.slugs_like(seeded, base)
    assert await prod_repo.slugs_like(seeded, base[:-1]) == []


async def test_the_estimates_choose_the_match_set_where_a_walk_would_read_more(seeded: asyncpg.Connection) -> None:
    # Given 30,000 seeded products, analyzed
    # When a word that no product holds is listed, it is read from the word's index at once: a walk of the order
    # would read every window it was given and find nothing
    assert await prod_repo.kinds(seeded, Filters(q="zzyzzx"), "name", LIMIT) == ["sparse q"]
    # And a common word in a narrow price range is read from the price range, not from the word's many rows
    common = Filters(q="made", min_price=Decimal(1234), max_price=Decimal(1250))
    assert await prod_repo.kinds(seeded, common, "-created_at", LIMIT) == ["sparse price"]
    # And a common word alone is looked for in a window of its order (the smallest with three pages' walk: 150)
    assert (await prod_repo.kinds(seeded, Filters(q="made"), "-created_at", LIMIT))[0] == "windowed 2"


async def test_the_named_listings_bench_times_every_listing_on_the_seeded_table(
    seeded: asyncpg.Connection, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 30,000 seeded products, analyzed
    from bench import plans

    # When `python -m bench plans --named` runs against them
    assert await plans.named(database_url, 1) == 0
    # Then it prints a row for each listing the issue names and for the slug lookup, each with its times
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(plans.NAMED) + 1
    for row in rows[1:-1]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1].split()[0] in ("plain", "windowed", "sparse"), row
        assert all(float(ms) >= 0 for cell in cells[2:5] for ms in cell.split(" + ")), row


async def test_a_common_range_missing_from_the_newest_products_is_found_past_them(seeded: asyncpg.Connection) -> None:
    # Given 30,000 seeded products, the newest 500 of them (more than the first window) priced below 1
    await seeded.execute(
        "UPDATE products SET price = 0.50 WHERE id IN (SELECT id FROM products ORDER BY created_at DESC, id DESC"
        " LIMIT 500)"
    )
    await seeded.execute("ANALYZE products")
    common = Filters(min_price=Decimal(1))
    # When products from 1 up are listed newest first
    kinds = await prod_repo.kinds(seeded, common, "-created_at", LIMIT)
    page = [p.id for p in await prod_repo.list_page(seeded, common, "-created_at", None, LIMIT)]
    # Then a first window sized for the range's density comes first, then the widest affordable one, before the
    # range's whole match set (nearly the whole table) would be sorted
    windows = [k for k in kinds if k.startswith("windowed")]
    assert len(windows) == 2, kinds
    assert windows[-1] == f"windowed {max(WINDOWS)}", kinds
    # And the page is the range's newest products, past the 500
    sql, args = prod_repo.statement("plain", common, "-created_at", None, LIMIT)
    assert page == [r["id"] for r in await seeded.fetch(sql, *args)]
    assert len(page) == LIMIT


async def test_the_estimates_are_the_whole_tables_where_the_planner_would_go_parallel(
    seeded: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 30,000 seeded products, and the estimates of listings planned as usual
    listings = [
        (Filters(q="zircon", min_price=Decimal(1234), max_price=Decimal(1250)), "price"),
        (Filters(q="made", min_price=Decimal(10), max_price=Decimal(20)), "name"),
        (Filters(q="zzyzzx", category="garden"), "-created_at"),
        (Filters(is_active=False, min_price=Decimal(5)), "created_at"),
    ]
    usual = [await prod_repo._estimates(seeded, f, sort) for f, sort in listings]
    # When parallel plans cost nothing, as on a large table they would win (a branch of a UNION under a Gather
    # then counts one worker's share of its rows)
    for setting in ("parallel_setup_cost", "parallel_tuple_cost", "min_parallel_table_scan_size"):
        await seeded.execute(f"SET {setting} = 0")
    await seeded.execute("SET min_parallel_index_scan_size = 0")
    parallel = await seeded.fetchval("EXPLAIN (FORMAT JSON) SELECT 1 FROM products WHERE stock > 0 UNION ALL SELECT 1")
    assert "Gather" in str(parallel)
    monkeypatch.setattr(prod_repo, "_estimated", {})
    # Then the estimates are the same: each the whole table's
    assert [await prod_repo._estimates(seeded, f, sort) for f, sort in listings] == usual


async def test_a_plan_of_another_shape_leaves_the_listing_answered(
    seeded: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given estimates that come back in a shape the listing does not know (another PostgreSQL's EXPLAIN)
    branch_rows = prod_repo._branch_rows
    monkeypatch.setattr(prod_repo, "_branch_rows", lambda explained: branch_rows([{"Plan": {"Rows": 9}}]))
    filters = Filters(q="zircon", min_price=Decimal(10), max_price=Decimal(900))
    # When the listing is asked for
    page = [p.id for p in await prod_repo.list_page(seeded, filters, "name", None, LIMIT)]
    # Then it is answered, and right: the windows, then the match set
    sql, args = prod_repo.statement("plain", filters, "name", None, LIMIT)
    assert page == [r["id"] for r in await seeded.fetch(sql, *args)]
    kinds = await prod_repo.kinds(seeded, filters, "name", LIMIT)
    widest = prod_repo.JUMPING_WINDOWS
    assert kinds == ["windowed 0", f"windowed {widest}", f"after {widest} q", "sparse q"]


async def test_every_numbered_page_and_count_is_what_the_whole_order_gives(seeded: asyncpg.Connection) -> None:
    # Given 30,000 seeded products, analyzed
    for name, (filters, sort, _) in CASES.items():
        args: list[Any] = []
        where = prod_repo._filtered(filters, args)
        order, _, _ = prod_repo.SORTS[sort]
        everything = [
            r["id"]
            for r in await seeded.fetch(
                f"SELECT p.id FROM products p WHERE {' AND '.join(where)} ORDER BY {order}", *args
            )
        ]
        for cap in (40, 2_000):
            # When a numbered listing is counted up to a cap
            count = await prod_repo.count_upto(seeded, filters, cap)
            # Then it is every match, or the cap
            assert count == min(cap, len(everything)), (name, cap)
        for offset in (0, 37, 1_000):
            # And a numbered page at an offset is the whole order's rows there
            page = await prod_repo.list_at(seeded, filters, sort, offset, LIMIT)
            assert [p.id for p in page] == everything[offset : offset + LIMIT], (name, offset)
