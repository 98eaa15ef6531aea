"""``python -m bench plans``: every product listing ``list_page`` may be asked for, timed against a seeded table.

A matrix of filters (a word in no product, a rare word, a common one, several, either of two, one but not another;
price ranges narrow, wide, open-ended; in stock or not; a category; inactive products) in pairs, each in every sort
order, from the start and from a cursor half-way down the order, with ``plan_cache_mode`` forced to custom plans and
then to generic ones (what asyncpg's statement cache gets after five runs). Each is ``list_page`` whole through
asyncpg, 21 rows asked for, best of ``--reps`` (the estimates' cache is emptied before each listing: its first run
asks PostgreSQL for them, as a listing not seen for a minute does). It reads the database that ``DATABASE_URL``
names (seed one with ``python -m bench seed --products 1000000 --no-rebuild`` into a database of its own) and
writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from decimal import Decimal

import asyncpg

from shared.store import products as prod_repo
from shared.store.products import Filters

SORTS = ("-created_at", "created_at", "price", "-price", "name")
WORDS = (None, "zzyzzx", "zircon", "made", "made design quality", "opal zircon", "zircon or opal", "made -quality")
RANGES = (None, ("1234", "1236"), ("1234", "1250"), ("10", "20"), ("10", "900"), ("1500", None), (None, "1"))


def _filters(
    q: str | None = None,
    prices: tuple[str | None, str | None] | None = None,
    in_stock: bool | None = None,
    category: str | None = None,
    is_active: bool | None = None,
) -> Filters:
    low, high = prices or (None, None)
    return Filters(
        q=q,
        min_price=None if low is None else Decimal(low),
        max_price=None if high is None else Decimal(high),
        in_stock=in_stock,
        category=category,
        is_active=is_active,
    )


def cases(category: str) -> list[Filters]:
    """Every word with every range, the first words with stock and a category, the ranges likewise, and alone."""
    found = [_filters(q, r) for q in WORDS for r in RANGES]
    for q in WORDS[1:5]:
        found += [_filters(q, in_stock=True), _filters(q, in_stock=False), _filters(q, category=category)]
    for r in RANGES[1:]:
        found += [
            _filters(prices=r, in_stock=True),
            _filters(prices=r, in_stock=False),
            _filters(prices=r, category=category),
        ]
    found += [_filters(in_stock=True), _filters(in_stock=False), _filters(category=category)]
    found += [
        _filters(category=category, in_stock=False),
        _filters(is_active=False),
        _filters("zircon", is_active=True),
    ]
    return found


def _label(f: Filters) -> str:
    shown = {k: v for k, v in vars(f).items() if v is not None}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "no filter"


async def _halfway(conn: asyncpg.Connection, sort: str, size: int) -> tuple[object, int]:
    """The keyset cursor half-way down ``sort``'s order of the ``size`` live products."""
    order, _, (col, idcol) = prod_repo.SORTS[sort]
    row = await conn.fetchrow(
        f"SELECT {col} AS k, {idcol} AS i FROM products p WHERE deleted_at IS NULL ORDER BY {order} OFFSET $1 LIMIT 1",
        size // 2,
    )
    return row["k"], row["i"]


async def run(dsn: str, reps: int, over: float, top: int) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        size = await conn.fetchval("SELECT count(*) FROM products WHERE deleted_at IS NULL")
        category = await conn.fetchval("SELECT slug FROM categories WHERE deleted_at IS NULL ORDER BY id LIMIT 1")
        halfway = {sort: await _halfway(conn, sort, size) for sort in SORTS}
        timings: list[tuple[float, str, str]] = []
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            for f in cases(category):
                for sort in SORTS:
                    for after in (None, halfway[sort]):
                        prod_repo._estimated.clear()
                        best = float("inf")
                        for _ in range(reps):
                            t0 = time.perf_counter()
                            await prod_repo.list_page(conn, f, sort, after, 21)
                            best = min(best, (time.perf_counter() - t0) * 1000)
                        where = f"{sort}{', deep' if after else ''}"
                        timings.append((best, mode.split("_")[1], f"{_label(f)}; {where}"))
    finally:
        await conn.close()
    timings.sort(reverse=True)
    slow = [t for t in timings if t[0] > over]
    print(f"bench plans: {size:,} products, {len(timings)} listings timed, {len(slow)} over {over} ms")
    p50, p90 = timings[len(timings) // 2][0], timings[len(timings) // 10][0]
    print(f"  p50 {p50:.2f} ms, p90 {p90:.2f} ms, worst {timings[0][0]:.1f} ms")
    for ms, mode, label in slow[:top]:
        print(f"  {ms:7.1f} ms  {mode:7}  {label}")
    return 0


#: The listings issue 13 names, each under 5 ms at 1M (EXPLAIN ANALYZE, custom and generic plans).
NAMED: dict[str, tuple[Filters, str, bool]] = {
    "q no match": (_filters("zzyzzx"), "-created_at", False),
    "q no match, by name": (_filters("zzyzzx"), "name", False),
    "q rare word": (_filters("zircon"), "-created_at", False),
    "q rare word, by name": (_filters("zircon"), "name", False),
    "q rare word, by price, deep": (_filters("zircon"), "price", True),
    "q common word": (_filters("made"), "-created_at", False),
    "q common word, by -price, deep": (_filters("made"), "-price", True),
    "q several words": (_filters("made design quality"), "created_at", False),
    "q two rare words": (_filters("opal zircon"), "-created_at", False),
    "q and a category": (_filters("zircon", category="garden"), "-created_at", False),
    "q and a category, by name": (_filters("zircon", category="garden"), "name", False),
    "price range 10-20, by date": (_filters(prices=("10", "20")), "-created_at", False),
    "price range 1234-1250, by name": (_filters(prices=("1234", "1250")), "name", False),
    "price range 1234-1236, by date": (_filters(prices=("1234", "1236")), "-created_at", False),
    "price range 10-900, by price, deep": (_filters(prices=("10", "900")), "price", True),
    "price from 1500, by -price, deep": (_filters(prices=("1500", None)), "-price", True),
    "in stock": (_filters(in_stock=True), "-created_at", False),
    "out of stock, by name, deep": (_filters(in_stock=False), "name", True),
    "newest": (_filters(), "-created_at", False),
    "oldest, deep": (_filters(), "created_at", True),
    "by name, deep": (_filters(), "name", True),
    "a category by price": (_filters(category="garden"), "-price", False),
    "inactive": (_filters(is_active=False), "-created_at", False),
}


async def _explained(conn: asyncpg.Connection, mode: str, sql: str, args: list[object], reps: int) -> float:
    """Planning + execution ms of ``sql`` under EXPLAIN (ANALYZE, TIMING OFF), best of ``reps``: a custom plan,
    or the generic plan of the statement prepared (EXECUTE under ``force_generic_plan``)."""
    best = float("inf")
    async with conn.transaction():
        await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
        await conn.execute("PREPARE named_probe AS " + sql)
        # EXECUTE takes no parameters of its own: the values go in as literals (ours, not a client's), typed by
        # the prepared statement's parameters.
        values = ", ".join("'" + str(v).replace("'", "''") + "'" for v in args)
        probe = "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) EXECUTE named_probe" + (f"({values})" if args else "")
        for _ in range(reps + 2):
            out = await conn.fetchval(probe)
            plan = (json.loads(out) if isinstance(out, str) else out)[0]
            best = min(best, plan["Planning Time"] + plan["Execution Time"])
        await conn.execute("DEALLOCATE named_probe")
    return best


async def named(dsn: str, reps: int) -> int:
    """The listings of :data:`NAMED`: the statements ``list_page`` chooses, each timed in custom and generic plans."""
    conn = await asyncpg.connect(dsn)
    try:
        size = await conn.fetchval("SELECT count(*) FROM products WHERE deleted_at IS NULL")
        print(f"bench plans --named: {size:,} products; ms = planning + execution, best of {reps}")
        print("| listing | statements | custom ms | generic ms | list_page ms |")
        print("| --- | --- | ---: | ---: | ---: |")
        for name, (f, sort, deep) in NAMED.items():
            after = await _halfway(conn, sort, size) if deep else None
            kinds = await prod_repo.kinds(conn, f, sort, 21)
            # What list_page runs: the window alone when it fills the page, else the match set after it.
            page = await prod_repo.list_page(conn, f, sort, after, 21)
            ran = kinds[:1] if len(page) == 21 or kinds[0].startswith(("plain", "sparse")) else kinds[:2]
            custom, generic = [], []
            for kind in ran:
                sql, args = prod_repo.statement(kind, f, sort, after, 21)
                custom.append(await _explained(conn, "force_custom_plan", sql, args, reps))
                generic.append(await _explained(conn, "force_generic_plan", sql, args, reps))
            best = float("inf")
            for _ in range(reps + 5):
                t0 = time.perf_counter()
                await prod_repo.list_page(conn, f, sort, after, 21)
                best = min(best, (time.perf_counter() - t0) * 1000)
            shown = " + ".join(ran)
            c = " + ".join(f"{ms:.2f}" for ms in custom)
            g = " + ".join(f"{ms:.2f}" for ms in generic)
            print(f"| {name} | {shown} | {c} | {g} | {best:.2f} |")
        slug = await conn.fetchval("SELECT slug FROM products ORDER BY id OFFSET $1 LIMIT 1", size // 2)
        base = [slug.rsplit("-", 1)[0]]
        custom_ms = await _explained(conn, "force_custom_plan", prod_repo.SLUGS_LIKE, base, reps)
        generic_ms = await _explained(conn, "force_generic_plan", prod_repo.SLUGS_LIKE, base, reps)
        print(f"| slug-collision lookup ({base[0]}) | SLUGS_LIKE | {custom_ms:.2f} | {generic_ms:.2f} | |")
    finally:
        await conn.close()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench plans", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="runs of each listing, the best kept (default 3)")
    parser.add_argument("--over", type=float, default=5.0, help="list the listings slower than this, ms (default 5)")
    parser.add_argument("--top", type=int, default=40, help="how many of them to list (default 40)")
    parser.add_argument("--named", action="store_true", help="only the listings issue 13 names, under EXPLAIN")
    args = parser.parse_args(argv)
    dsn = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/stockroom_scale_1000000")
    if args.named:
        return asyncio.run(named(dsn, args.reps))
    return asyncio.run(run(dsn, args.reps, args.over, args.top))
