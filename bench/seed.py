"""``python -m bench seed --products N [--categories C]``: load N realistic products fast, then rebuild the read model.

Products get names and descriptions of English words (:mod:`bench.words`), prices from 0.50 to about 2,000,
stock from 0 (one in eight) to a few hundred, a few per cent inactive, no image, and creation times spread over
the past year in id order. They go in with binary COPY, in batches, inside one transaction that holds the lock
writers to ``products`` take (so a seed and the API's writes never interleave):

- ids are reserved from the table's identity sequence first, and every slug is ``<name>-<id>``: unique among
  live rows whatever the table held before (a taken one aborts the seed, and the seed changes nothing);
- the search vector is a generated column, so PostgreSQL computes it during COPY;
- the per-row trigger that keeps the category counters (migration 0002) is switched off for the COPY, inside
  the transaction, and the counters get the seeded products in one statement at the end, as the backfill of
  0002 did: one row per category instead of a million trigger calls;
- no outbox events. A million events would only make the relay and the cache worker project, one by one, what
  the read-model rebuild that follows projects in batches; the seed is an operator's bulk load, not a million
  user writes, and nothing outside Stockroom subscribes to its history. So the read model is rebuilt at the end
  (``--no-rebuild`` skips it, for a Redis that is rebuilt later).

Categories: ``C`` new ones (departments such as "Kitchen", a number added past the twentieth), products spread
over them unevenly (the first ones largest), as a shop's are.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from bench import words
from shared import slugs
from shared.settings import Settings

#: Rows per COPY: large enough that a batch costs no round trips to speak of, small enough for a smooth bar.
BATCH = 20_000
#: Columns the seed writes; the rest (search vector, image state, version, attributes) take their defaults.
COLUMNS = (
    "id",
    "slug",
    "name",
    "description",
    "price",
    "currency",
    "category_id",
    "stock",
    "is_active",
    "created_at",
    "updated_at",
)
#: The fewest products for which the indexes are built once after the load rather than grown during it.
BULK_MIN = 50_000
#: How far back creation times reach.
SPAN = dt.timedelta(days=365)


@dataclass(frozen=True)
class Seeded:
    products: int
    categories: list[str]
    first_id: int
    seconds: float


async def _rows(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM products"))


async def _without_row_triggers(conn: asyncpg.Connection) -> str | None:
    """No per-row triggers for this transaction's COPY: they cost three times the row itself.

    As a superuser, ``session_replication_role = replica`` (local to this transaction and this session; other
    sessions' writes keep their triggers) skips the category counter trigger and the foreign key check (every
    category id the seed writes is one it has just inserted). Otherwise only the counter trigger is switched off,
    inside the transaction, so no other writer runs without it; the statement returned switches it on again.
    """
    if await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        await conn.execute("SET LOCAL session_replication_role = replica")
        return None
    await conn.execute("ALTER TABLE products DISABLE TRIGGER category_product_counts_insert")
    return "ALTER TABLE products ENABLE TRIGGER category_product_counts_insert"


async def _drop_indexes(conn: asyncpg.Connection) -> list[str]:
    """Drop every index of ``products`` but its primary key; returns the statements that make them again.

    Building an index once over the whole table is several times faster than growing it row by row. Used only
    when the seed at least doubles the table: readers of ``products`` wait for the rest of the transaction.
    """
    rows = await conn.fetch(
        """SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
           FROM pg_index i WHERE i.indrelid = 'products'::regclass AND NOT i.indisprimary"""
    )
    for r in rows:
        await conn.execute(f"DROP INDEX {r['name']}")
    return [r["definition"] for r in rows]


def _category_names(count: int) -> list[str]:
    deps = words.DEPARTMENTS
    return [deps[i % len(deps)] + ("" if i < len(deps) else f" {i // len(deps) + 1}") for i in range(count)]


async def _insert_categories(conn: asyncpg.Connection, count: int) -> list[tuple[int, str]]:
    """``count`` new categories, slugs made from their names as the API makes them (``-2``... when taken)."""
    taken = {r["slug"] for r in await conn.fetch("SELECT slug FROM categories WHERE deleted_at IS NULL")}
    names, chosen = _category_names(count), []
    for name in names:
        slug = slugs.next_free(slugs.base_slug(name, "category"), taken)
        taken.add(slug)
        chosen.append(slug)
    rows = await conn.fetch(
        """INSERT INTO categories (slug, name, description)
           SELECT s, n, 'Seeded: ' || n FROM unnest($1::text[], $2::text[]) AS t(s, n) RETURNING id, slug""",
        chosen,
        names,
    )
    return [(r["id"], r["slug"]) for r in rows]


def _records(
    rng: random.Random, first_id: int, count: int, category_ids: list[int], now: dt.datetime, tally: Counter[int]
) -> Iterator[tuple[Any, ...]]:
    adjectives, materials, nouns = words.ADJECTIVES, words.MATERIALS, words.NOUNS
    vocabulary = words.DESCRIPTION
    # Zipf-like: rank r has weight 1/r, so word frequencies run from a fifth of the products to a few in 10,000.
    cum_words = list(itertools.accumulate(1 / (r + 1) for r in range(len(vocabulary))))
    cum_categories = list(itertools.accumulate(1 / (r + 1) ** 0.7 for r in range(len(category_ids))))
    step = SPAN / max(count, 1)
    start = now - SPAN
    for i in range(count):
        product_id = first_id + i
        name = f"{rng.choice(adjectives).title()} {rng.choice(materials).title()} {rng.choice(nouns).title()}"
        body = rng.choices(vocabulary, cum_weights=cum_words, k=rng.randint(8, 24))
        description = " ".join(body).capitalize() + "."
        category = rng.choices(category_ids, cum_weights=cum_categories)[0]
        tally[category] += 1
        # Log-uniform prices: many cheap things, some dear ones; whole cents.
        price = Decimal(round(0.5 * 4000 ** rng.random(), 2)).quantize(Decimal("0.01"))
        stock = 0 if rng.random() < 0.125 else int(rng.paretovariate(1.2) * 3)
        created = start + step * i
        yield (
            product_id,
            # What slugs.base_slug makes of these ASCII words, without its cost per row.
            f"{name.lower().replace(' ', '-')}-{product_id}",
            name,
            description,
            price,
            "EUR",
            category,
            min(stock, 100_000),
            rng.random() >= 0.03,
            created,
            created,
        )


async def seed(
    dsn: str,
    products: int,
    categories: int,
    *,
    progress: bool = True,
    random_seed: int | None = None,
    bulk_min: int = BULK_MIN,
) -> Seeded:
    """Insert ``products`` products into ``categories`` new categories (see the module's docstring)."""
    from worker.progress import progress_bar

    rng = random.Random(random_seed)
    began = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            # Async commit: a crash loses the whole seed anyway (one transaction), never half of it.
            await conn.execute("SET LOCAL synchronous_commit = off")
            await conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
            # The lock the counters' backfill takes (0002): writers wait, readers do not.
            await conn.execute("LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE")
            cats = await _insert_categories(conn, categories)
            category_ids = [c for c, _ in cats]
            first_id = 1
            if products:
                # Writers wait on the lock before they draw an id, so this block of ids is the seed's alone.
                last = await conn.fetchval(
                    "SELECT setval(pg_get_serial_sequence('products', 'id'),"
                    " nextval(pg_get_serial_sequence('products', 'id')) + $1 - 1)",
                    products,
                )
                first_id = last - products + 1
            restore_triggers = await _without_row_triggers(conn)
            rebuilt = await _drop_indexes(conn) if products >= bulk_min and products > await _rows(conn) else []
            tally: Counter[int] = Counter()
            rows = _records(rng, first_id, products, category_ids, dt.datetime.now(dt.UTC), tally)
            loop = asyncio.get_running_loop()

            def next_batch() -> list[tuple[Any, ...]]:
                return list(itertools.islice(rows, BATCH))

            with progress_bar(total=products, desc="products", unit="", disable=not progress) as bar:
                # The next batch is made in a thread while PostgreSQL takes the current one: two cores busy.
                batch = next_batch()
                while batch:
                    following = loop.run_in_executor(None, next_batch)
                    await conn.copy_records_to_table("products", records=batch, columns=COLUMNS)
                    bar.update(len(batch))
                    batch = await following
            with progress_bar(total=len(rebuilt), desc="indexes", unit="", disable=not progress or not rebuilt) as bar:
                for definition in rebuilt:
                    await conn.execute(definition)
                    bar.update(1)
            if restore_triggers:
                await conn.execute(restore_triggers)
            await conn.execute(
                """INSERT INTO category_product_counts AS c (category_id, shard, n)
                   SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bigint[])
                   ON CONFLICT (category_id, shard) DO UPDATE SET n = c.n + EXCLUDED.n""",
                list(tally),
                [0] * len(tally),
                list(tally.values()),
            )
        # Statistics for the planner at once: autovacuum would analyze a table this changed, but later.
        await conn.execute("ANALYZE products")
        await conn.execute("ANALYZE categories")
    finally:
        await conn.close()
    return Seeded(products, [s for _, s in cats], first_id, time.monotonic() - began)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench seed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=_count, required=True, help="how many products to add")
    parser.add_argument("--categories", type=_count, default=20, help="how many categories to add (default 20)")
    parser.add_argument("--no-rebuild", action="store_true", help="leave the read model as it is")
    parser.add_argument("--random-seed", type=int, default=None, help="the same catalog every time")
    args = parser.parse_args(argv)
    if args.categories == 0 and args.products:
        parser.error("--categories must be at least 1 when there are products to put in them")
    settings = Settings()
    done = asyncio.run(seed(settings.database_url, args.products, args.categories, random_seed=args.random_seed))
    rate = done.products / done.seconds if done.seconds else 0.0
    print(
        f"seed: {done.products:,} products in {len(done.categories)} categories in {done.seconds:.1f} s ({rate:,.0f}/s)"
    )
    if not args.no_rebuild:
        from worker.readmodel.rebuild import rebuild

        began = time.monotonic()
        counts = asyncio.run(rebuild(settings))
        print(f"seed: read model rebuilt in {time.monotonic() - began:.1f} s: {counts}")
    return 0


def _count(text: str) -> int:
    value = int(text.replace("_", ""))
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value
