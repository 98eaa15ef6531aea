"""Products: SQL only, ``$n`` parameters only; list queries are assembled from fixed fragments."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import asyncpg
import orjson

from shared import numbers
from shared.models import Product, Versions, Written

_COLUMNS = """
p.id, p.slug, p.name, p.description, p.price, p.currency, c.slug AS category, p.category_id, p.stock, p.attributes,
p.is_active, p.image_status, p.image_original, p.image_thumbnails, p.image_error,
p.created_at, p.updated_at, p.version, (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn"""
_SELECT = "SELECT " + _COLUMNS + " FROM products p JOIN categories c ON c.id = p.category_id"

_RETURNING = """RETURNING id, slug, name, description, price, currency, category_id, stock, attributes, is_active,
    image_status, image_original, image_thumbnails, image_error, created_at, updated_at, version,
    tsvector_to_array(search) AS lexemes"""
#: The reads that project a product: :data:`_SELECT`, whether it is deleted, and its lexemes, which the read model
#: tags it with (listings leave them out).
_SELECT_PROJECTED = (
    "SELECT p.deleted_at IS NOT NULL AS deleted, tsvector_to_array(p.search) AS lexemes, "
    + _SELECT.removeprefix("SELECT ")
)

_EVENT = """
ev AS (
    INSERT INTO outbox (type, aggregate, aggregate_id, version, payload, request_id)
    SELECT $type, 'product', w.id::text, w.version,
           jsonb_build_object('slug', w.slug, 'name', w.name, 'price', w.price, 'currency', w.currency,
                              'category_id', w.category_id, 'stock', w.stock, 'is_active', w.is_active),
           $rid
    FROM w)
SELECT w.*, (SELECT slug FROM categories WHERE id = w.category_id) AS category,
       (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn
FROM w
"""

#: What ``q`` means: PostgreSQL's web search syntax over English (the listing's filter, :func:`required_lexeme`).
_TSQUERY: Final = "websearch_to_tsquery('english', {q})"
#: A lexeme in single quotes, as PostgreSQL writes a tsquery (a quote inside it doubled).
_QUOTED: Final = re.compile(r"'((?:[^']|'')*)'")


def lexeme_required_by(tsquery: str) -> str | None:
    """One lexeme that every match of ``tsquery`` (PostgreSQL's text of it) contains: the longest of a query of
    words, phrases and ANDs; None when it has an OR or a NOT (a match may lack any one word) or no word."""
    outside = _QUOTED.sub("", tsquery)
    if any(c in outside for c in "|!:"):
        return None
    lexemes = [x.replace("''", "'") for x in _QUOTED.findall(tsquery)]
    return max(lexemes, key=len) if lexemes else None


async def required_lexeme(conn: asyncpg.Connection, q: str) -> str | None:
    """A lexeme every product that ``q`` matches has (:func:`lexeme_required_by` of PostgreSQL's parse of it)."""
    return lexeme_required_by(await conn.fetchval(f"SELECT {_TSQUERY.format(q='$1')}::text", q))


#: sort parameter -> (ORDER BY, keyset comparison, column expressions forming the key).
SORTS: Final[dict[str, tuple[str, str, tuple[str, str]]]] = {
    "-created_at": ("p.created_at DESC, p.id DESC", "<", ("p.created_at", "p.id")),
    "created_at": ("p.created_at ASC, p.id ASC", ">", ("p.created_at", "p.id")),
    "price": ("p.price ASC, p.id ASC", ">", ("p.price", "p.id")),
    "-price": ("p.price DESC, p.id DESC", "<", ("p.price", "p.id")),
    "name": ("p.name ASC, p.id ASC", ">", ("p.name", "p.id")),
}


def _event(event_type: str, rid_param: int) -> str:
    return _EVENT.replace("$type", f"'{event_type}'").replace("$rid", f"${rid_param}")


def _product(row: asyncpg.Record) -> Product:
    return Product(
        id=row["id"],
        slug=row["slug"],
        name=row["name"],
        description=row["description"],
        price=row["price"],
        currency=row["currency"],
        category=row["category"],
        stock=row["stock"],
        attributes=row["attributes"],
        is_active=row["is_active"],
        image_status=row["image_status"],
        image_original=row["image_original"],
        image_thumbnails=row["image_thumbnails"],
        image_error=row["image_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        lsn=row["lsn"],
        category_id=row["category_id"],
        lexemes=None if (lexemes := row.get("lexemes")) is None else tuple(lexemes),
    )


def _written(row: asyncpg.Record | None) -> Written | None:
    if row is None:
        return None
    return Written(_product(row))


def sort_key(product: Product, sort: str) -> list[Any]:
    """The keyset position of ``product`` in ``sort`` order, JSON-ready for a cursor."""
    first: Any
    if sort.endswith("created_at"):
        first = product.created_at.isoformat()
    elif sort.endswith("price"):
        first = str(product.price)
    else:
        first = product.name
    return [first, product.id]


#: The timestamps a cursor may carry: any the service can have written, a day clear of Python's and PostgreSQL's
#: edges (an offset at 0001-01-01 or 9999-12-31 moves the instant out of range when it is turned into UTC).
CURSOR_TIME_MIN: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
CURSOR_TIME_MAX: Final = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
#: A product name's longest (``ProductIn.name``): a cursor's name is one the listing returned.
CURSOR_NAME_MAX: Final = 200


def parse_sort_key(sort: str, key: list[Any]) -> tuple[Any, int]:
    """Typed values of a cursor's key, each in the range its column holds (:mod:`shared.numbers`); ``ValueError``
    if the key does not fit the sort."""
    if len(key) != 2 or not isinstance(key[0], str):
        raise ValueError("bad key")
    product_id = numbers.row_id(key[1])
    first: Any
    if sort.endswith("created_at"):
        first = dt.datetime.fromisoformat(key[0])
        if first.tzinfo is None:
            raise ValueError("naive timestamp")
        first = first.astimezone(dt.UTC)  # OverflowError (an ArithmeticError) at the edges of the calendar
        if not CURSOR_TIME_MIN <= first < CURSOR_TIME_MAX:
            raise ValueError("timestamp out of range")
    elif sort.endswith("price"):
        first = numbers.price(key[0])
    else:
        first = key[0]
        if len(first) > CURSOR_NAME_MAX or "\x00" in first:
            raise ValueError("bad name")
    return first, product_id


@dataclass(frozen=True)
class Filters:
    category: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    in_stock: bool | None = None
    q: str | None = None
    #: ``True``: active products only (what public listings show unless told otherwise); ``False``: inactive only.
    is_active: bool | None = None


async def get_by_slug(conn: asyncpg.Connection, slug: str) -> Product | None:
    row = await conn.fetchrow(_SELECT_PROJECTED + " WHERE p.slug = $1 AND p.deleted_at IS NULL", slug)
    return None if row is None else _product(row)


async def get_any_by_id(conn: asyncpg.Connection, product_id: int) -> tuple[Product, bool] | None:
    """The product, live or soft-deleted, and whether it is deleted (for the read model's projections)."""
    return (await get_any_by_ids(conn, [product_id])).get(product_id)


async def get_any_by_ids(conn: asyncpg.Connection, product_ids: Sequence[int]) -> dict[int, tuple[Product, bool]]:
    """:func:`get_any_by_id` for many ids in one statement (the cache worker's batches); absent ids are left out."""
    rows = await conn.fetch(
        _SELECT_PROJECTED + " WHERE p.id = ANY($1::bigint[])",
        list(product_ids),
    )
    return {r["id"]: (_product(r), r["deleted"]) for r in rows}


async def any_after(conn: asyncpg.Connection, after_id: int, limit: int) -> list[tuple[Product, bool]]:
    """Up to ``limit`` products (live or soft-deleted, and whether deleted) after ``after_id`` in id order, for
    rebuilding the read model in batches: one walk of the primary key, a page at a time."""
    rows = await conn.fetch(
        _SELECT_PROJECTED + " WHERE p.id > $1 ORDER BY p.id LIMIT $2",
        after_id,
        limit,
    )
    return [(_product(row), row["deleted"]) for row in rows]


#: Rows of the sort order a page with an indexed filter (``q``, a price range off the price order, inactive
#: products) may be looked for in, by size. A filter that matches often (a common word, most price ranges) fills a
#: page within the first few dozen rows of the order's index; one that matches rarely or never would walk the whole
#: index (571 ms at 1M for a word in no product). So a page is looked for among a bounded window of the order,
#: about three times the rows PostgreSQL's estimates say a page takes there, and only if that window held too few
#: is it taken from the match set itself, through the most selective filter's own index, and sorted. Where the
#: estimates say the match set is the shorter read, it is read at once (:func:`list_page`).
WINDOWS: Final = {0: 500, 1: 1_500, 2: 5_000, 3: 10_000, 4: 25_000, 5: 40_000, 6: 100_000}
#: The widest windows (keys of :data:`WINDOWS`) of a walk that jumps about the table: in price or name order
#: (25,000 such rows cost about 25 ms: the most a deep numbered page needs where matches are dense), and a
#: category's in creation order (a window near the size of a category, 50,000 of 1M, would have the planner sort
#: the category instead). Only a walk of the whole table's creation order, which reads it nearly in its physical
#: order (100,000 rows in about 20 ms), goes wider.
JUMPING_WINDOWS: Final = 4
CATEGORY_WINDOWS: Final = 3
#: What reading a row costs, relative to a row of a match set (read through a bitmap of its index, in no order):
#: a walk in creation order reads the table nearly in its physical order (rows are stored as they are created),
#: a walk in price or name order jumps about it. Measured at 1M products: 0.26, 1.0 and 1.6 us a row.
WALK_COST: Final = {"-created_at": 0.16, "created_at": 0.16, "price": 0.6, "-price": 0.6, "name": 0.6}
#: An entry of an index's bitmap, relative to a row of a match set.
BITMAP_COST: Final = 0.1


def _clauses(
    filters: Filters, sort: str, after: tuple[Any, int] | None, args: list[Any], leave: str = ""
) -> tuple[list[str], list[str]]:
    """The conditions of a page, their values appended to ``args``: those the sort order's index walks (live rows,
    the category, the cursor and, sorted by price, a price range), and those it can only filter by (``match``),
    but the one named by ``leave`` (one of :data:`DRIVERS`: the match set was already selected by it)."""
    _, op, (col, idcol) = SORTS[sort]
    after = _bounded(filters, sort, after)
    walk = ["p.deleted_at IS NULL"]
    match: list[str] = []
    if filters.category is not None:
        category = _param(args, filters.category)
        walk.append(f"p.category_id = (SELECT id FROM categories WHERE slug = {category} AND deleted_at IS NULL)")
    if after is not None:
        walk.append(f"({col}, {idcol}) {op} ({_param(args, after[0])}, {_param(args, after[1])})")
    # Sorted by price, the price index applies a range itself: it bounds the walk instead of filtering it.
    if sort.endswith("price"):
        walk.extend(_priced(filters, args))
    elif leave not in ("price", "q price"):
        match.extend(_priced(filters, args))
    if filters.q and leave not in ("q", "q price"):
        match.append(_searched(filters, args, False))
    if filters.in_stock is True:
        match.append("p.stock > 0")
    elif filters.in_stock is False:
        match.append("p.stock = 0")
    if filters.is_active is not None and leave != "inactive":
        # Fixed conditions, not a parameter: the partial index of inactive products (migration 0007) then serves.
        match.append("p.is_active" if filters.is_active else "NOT p.is_active")
    return walk, match


def _bounded(filters: Filters, sort: str, after: tuple[Any, int] | None) -> tuple[Any, int] | None:
    """The cursor, or None where a price range already starts the price order's walk past it (a cursor below the
    range's minimum, ascending): the index then starts at the range, not at the cursor, whichever bound the
    planner takes (a row comparison and a plain one on the same column are not merged)."""
    if after is None or not sort.endswith("price"):
        return after
    if sort == "price" and filters.min_price is not None and after[0] < filters.min_price:
        return None
    if sort == "-price" and filters.max_price is not None and after[0] > filters.max_price:
        return None
    return after


#: The filters a sparse page's match set can be selected by, each through an index of its own: ``q`` (GIN),
#: ``price`` (a range, through the price index), ``inactive`` (the partial index of inactive products), and
#: ``q price``, both (their two indexes' bitmaps ANDed: for a word and a range each too common alone).
DRIVERS: Final = ("q", "price", "inactive", "q price")


def _priced(filters: Filters, args: list[Any]) -> list[str]:
    """The conditions of the price range, their values appended to ``args``."""
    priced: list[str] = []
    if filters.min_price is not None:
        priced.append(f"p.price >= {_param(args, filters.min_price)}")
    if filters.max_price is not None:
        priced.append(f"p.price <= {_param(args, filters.max_price)}")
    return priced


def _searched(filters: Filters, args: list[Any], planned: bool) -> str:
    """The condition of ``q``, its text appended to ``args``: parsed once for the statement, in an InitPlan (not
    once for each row a walk filters), or, ``planned``, in the statement itself, where the planner sees its
    lexemes (for its estimate of the rows: no estimate can see an InitPlan's value)."""
    parsed = _TSQUERY.format(q=_param(args, filters.q))
    return f"p.search @@ {parsed}" if planned else f"p.search @@ (SELECT {parsed})"


def _driver_condition(filters: Filters, driver: str, args: list[Any], planned: bool) -> str:
    """The condition of ``driver`` alone, as the match set's index applies it, its values appended to ``args``;
    ``planned``: ``q`` as the planner's estimates need it (:func:`_searched`)."""
    if driver == "inactive":
        return "NOT p.is_active"
    selected: list[str] = []
    if driver in ("q", "q price"):
        selected.append(_searched(filters, args, planned))
    if driver in ("price", "q price"):
        selected.extend(_priced(filters, args))
    return " AND ".join(selected)


def drivers(filters: Filters, sort: str) -> list[str]:
    """The filters of ``filters`` that can select a sparse page's match set (:data:`DRIVERS`)."""
    found: list[str] = []
    if filters.q:
        found.append("q")
    if (filters.min_price is not None or filters.max_price is not None) and not sort.endswith("price"):
        found.append("price")
    if filters.is_active is False:
        found.append("inactive")
    if "q" in found and "price" in found:
        found.append("q price")
    return found


def _indexed_filter(filters: Filters, sort: str) -> bool:
    """Whether a filter with an index of its own (``q``; a price range, unless the price order walks it) narrows
    the page: the pages that :data:`WINDOWS` are for. ``in_stock`` alone is a filter of the walk (one product in
    eight is out of stock, so the walk reads about eight rows a match at most)."""
    priced = filters.min_price is not None or filters.max_price is not None
    # Inactive products are few, with a partial index of their own (migration 0007): a filter that narrows too.
    return bool(filters.q) or (priced and not sort.endswith("price")) or filters.is_active is False


def _plain(filters: Filters, sort: str, after: tuple[Any, int] | None, args: list[Any]) -> str:
    """The page as a walk of the sort order's index, filtered."""
    walk, match = _clauses(filters, sort, after, args)
    order, _, _ = SORTS[sort]
    return f"{_SELECT} WHERE {' AND '.join(walk + match)} ORDER BY {order} LIMIT ${len(args) + 1}"


def _window(walk: list[str], sort: str, window: int, columns: str) -> str:
    """The next ``window`` rows (one of :data:`WINDOWS`) of the sort order's walk, as a subquery named p."""
    order, _, _ = SORTS[sort]
    return f"(SELECT {columns} FROM products p WHERE {' AND '.join(walk)} ORDER BY {order} LIMIT {window}) p"


def _windowed(filters: Filters, sort: str, after: tuple[Any, int] | None, args: list[Any], window: int) -> str:
    """The page among the next ``window`` rows of the sort order (one of :data:`WINDOWS`): their order carries
    through the filter and the join (no sort), so a common filter stops after a few dozen rows."""
    walk, match = _clauses(filters, sort, after, args)
    order, _, _ = SORTS[sort]
    rows = _window(walk, sort, window, "*")
    return (
        f"{_SELECT.replace('FROM products p', 'FROM ' + rows, 1)} WHERE {' AND '.join(match)}"
        f" ORDER BY {order} LIMIT ${len(args) + 1}"
    )


def _match_set(
    filters: Filters, sort: str, after: tuple[Any, int] | None, args: list[Any], driver: str, window: int
) -> tuple[str, list[str]]:
    """The match set that ``driver`` (one of :data:`DRIVERS`) selects through its index, as a materialized CTE
    ``m`` with the columns the other conditions and the order read, and those conditions, to test on it. With a
    ``window``, they hold only if the next ``window`` rows of the sort order exist (see :func:`_sparse`)."""
    walk, match = _clauses(filters, sort, after, args, driver)
    _, _, (col, _) = SORTS[sort]
    columns = ["p.id", "p.category_id", "p.deleted_at", col]
    if col != "p.price":
        columns.append("p.price")
    columns.append("p.stock")
    columns.append("p.is_active")
    if filters.q and driver not in ("q", "q price"):
        columns.append("p.search")
    selected = _driver_condition(filters, driver, args, False)
    rest = walk + match
    if window:
        rest.append(f"(SELECT count(*) FROM {_window(walk, sort, window, '1')}) = {window}")
    # The CTE is materialized and the conditions read it under the name p: no index of the order can serve the
    # page's ORDER BY, and the category's index cannot be ANDed with the filter's (a category holds a fifth of the
    # table), so whichever the plan (custom or generic), the matches come from the driver's index alone.
    cte = f"WITH m AS MATERIALIZED (SELECT {', '.join(columns)} FROM products p"
    cte += f" WHERE p.deleted_at IS NULL AND {selected})"
    return cte, rest


def _sparse(
    filters: Filters,
    sort: str,
    after: tuple[Any, int] | None,
    args: list[Any],
    driver: str,
    window: int,
    skip: bool = False,
) -> str:
    """The page from the whole match set, sorted: the rows one filter's index selects (``driver``, one of
    :data:`DRIVERS`), the other conditions tested on them. With a ``window``, only if the next ``window`` rows
    of the sort order exist (else the window held every row left and its page is whole, and this answers nothing
    without reading the match set: what follows a window that held too few). With ``skip``, an OFFSET follows the
    LIMIT (the parameter after it), applied to the ids before the page's rows are read."""
    cte, rest = _match_set(filters, sort, after, args, driver, window)
    order, _, _ = SORTS[sort]
    offset = f" OFFSET ${len(args) + 2}" if skip else ""
    return (
        f"{cte}, top AS (SELECT p.id FROM m p WHERE {' AND '.join(rest)} ORDER BY {order}"
        f" LIMIT ${len(args) + 1}{offset}) {_SELECT} WHERE p.id IN (SELECT id FROM top) ORDER BY {order}"
    )


def statement(
    kind: str, filters: Filters, sort: str, after: tuple[Any, int] | None, limit: int
) -> tuple[str, list[Any]]:
    """One statement :func:`list_page` may run and its arguments, for the plans test: ``plain``, ``windowed <n>``
    (a window of ``WINDOWS[n]`` rows), ``sparse <driver>`` (the whole match set) or ``after <n> <driver>`` (the
    match set after a window of ``WINDOWS[n]`` rows that held too few)."""
    args: list[Any] = []
    how, _, which = kind.partition(" ")
    if how == "plain":
        sql = _plain(filters, sort, after, args)
    elif how == "windowed":
        sql = _windowed(filters, sort, after, args, WINDOWS[int(which)])
    elif how == "sparse":
        sql = _sparse(filters, sort, after, args, DRIVERS[DRIVERS.index(which)], 0)
    else:
        size, _, driver = which.partition(" ")
        sql = _sparse(filters, sort, after, args, DRIVERS[DRIVERS.index(driver)], WINDOWS[int(size)])
    return sql, [*args, limit]


async def kinds(conn: asyncpg.Connection, filters: Filters, sort: str, limit: int) -> list[str]:
    """The statements :func:`list_page` may run for ``filters``, ``sort`` and ``limit`` on this table
    (:func:`statement`'s kinds): ``plain``; or the windows it would choose, the match set after them, and the
    whole match set; or the whole match set alone."""
    if not _indexed_filter(filters, sort):
        return ["plain"]
    driver, windows = await _choice(conn, filters, sort, limit)
    if not windows:
        return [f"sparse {driver}"]
    found: list[str] = []
    for size in windows:
        found.append(f"windowed {size}")
    found.append(f"after {windows[-1]} {driver}")
    found.append(f"sparse {driver}")
    return found


#: Seconds a listing's estimates (:func:`_estimates`) are reused, and how many listings' are kept.
ESTIMATES_TTL: Final = 60.0
ESTIMATES_KEPT: Final = 1_024
_estimated: dict[tuple[Filters, str], tuple[float, tuple[float, float, dict[str, float]]]] = {}


def _branch_rows(explained: Any) -> list[float]:
    """The estimated rows of each branch of a UNION ALL, in order, from its ``EXPLAIN (FORMAT JSON)``."""
    plan = explained[0]["Plan"]
    return [float(n["Plan Rows"]) for n in plan["Plans"] if n.get("Parent Relationship") == "Member"]


async def _estimates(conn: asyncpg.Connection, filters: Filters, sort: str) -> tuple[float, float, dict[str, float]]:
    """PostgreSQL's estimates, for these values, of the rows the sort order's walk may read (live products, of the
    category, in the price range of the price order), of those ``filters`` select, and of those each of its
    :func:`drivers` selects: one EXPLAIN (planned, not run), reused for :data:`ESTIMATES_TTL` seconds."""
    now = time.monotonic()
    kept = _estimated.get((filters, sort))
    if kept is not None and now - kept[0] < ESTIMATES_TTL:
        return kept[1]
    args: list[Any] = []
    walk, match = _clauses(filters, sort, None, args, "q")
    if filters.q:
        match.append(_driver_condition(filters, "q", args, True))
    # current_schema() is PARALLEL UNSAFE: with it no part of the statement is planned in parallel, so each of the
    # UNION's branches estimates all its rows (under a Gather, a branch counts one process's share). EXPLAIN runs
    # nothing.
    scan = "SELECT current_schema() FROM products p WHERE "
    parts = [scan + " AND ".join(walk), scan + " AND ".join(walk + match)]
    found = drivers(filters, sort)
    for driver in found:
        parts.append(scan + "p.deleted_at IS NULL AND " + _driver_condition(filters, driver, args, True))
    out = await conn.fetchval("EXPLAIN (FORMAT JSON) " + " UNION ALL ".join(parts), *args)
    try:
        rows = _branch_rows(orjson.loads(out) if isinstance(out, str) else out)
        result = (rows[0], rows[1], dict(zip(found, rows[2:], strict=True)))
    except (LookupError, TypeError, ValueError):
        # A plan of another shape than PostgreSQL 15's: no estimates, so every match set is taken as dear, and the
        # smallest window, then the widest, are walked before the first driver's match set. Slower, never wrong.
        result = (1.0, 1.0, dict.fromkeys(found, float("inf")))
    if len(_estimated) >= ESTIMATES_KEPT:
        _estimated.clear()
    _estimated[(filters, sort)] = (now, result)
    return result


def _widest(filters: Filters, sort: str) -> int:
    """The widest window (a key of :data:`WINDOWS`) a walk of ``sort`` may take with ``filters``."""
    if filters.category is not None:
        return CATEGORY_WINDOWS
    return len(WINDOWS) - 1 if sort.endswith("created_at") else JUMPING_WINDOWS


async def _choice(conn: asyncpg.Connection, filters: Filters, sort: str, limit: int) -> tuple[str, list[int]]:
    """How ``limit`` rows with an indexed filter are read: the driver of its match set (:data:`DRIVERS`), and the
    windows of the order they are looked for in first, in turn (keys of :data:`WINDOWS`; none: the match set at
    once)."""
    walkable, matching, sizes = await _estimates(conn, filters, sort)
    # What reading each driver's match set costs: its rows; for two indexes ANDed, their bitmaps and the rows of
    # both (an entry of a bitmap costs about a tenth of a row).
    costs: dict[str, float] = {}
    for d in sizes:
        costs[d] = sizes[d] if d != "q price" else BITMAP_COST * (sizes["q"] + sizes["price"]) + sizes[d]
    driver = min(costs, key=lambda d: costs[d])
    # A walk reads about limit * walkable / matching rows of the order to fill a page.
    weight = WALK_COST[sort] if filters.category is None else WALK_COST["name"]
    walked = min(walkable, limit * walkable / max(matching, 1.0))
    if costs[driver] <= weight * walked:
        return driver, []
    # A window about three times what a page should take, but no dearer than half as much again as the match set:
    # when the estimates were wrong (a word that no product holds is estimated as a rare one) the cost is at most
    # 2.5 times the match set's. If no such window is a fifth longer than the walk a page should take, it would
    # too often hold too few. Where matches are many but not near the cursor (the newest products all outside a
    # common price range), the widest such window is tried next, before the match set.
    widest = _widest(filters, sort)
    affordable: list[int] = []
    for n in WINDOWS:
        if n <= widest and WINDOWS[n] * weight <= 1.5 * costs[driver] and WINDOWS[n] >= 1.2 * walked:
            affordable.append(n)
    if not affordable:
        # The match set at once, unless it is far dearer than the walk the estimates expect (thousands of rows
        # wanted, a deep numbered page, where matches are dense): then the widest window, and the match set only
        # if that held too few.
        return driver, [widest] if costs[driver] > 3 * weight * walked else []
    first = affordable[-1]
    for n in affordable:
        if WINDOWS[n] >= 3 * walked:
            first = n
            break
    return driver, [first] if first == affordable[-1] else [first, affordable[-1]]


async def list_page(
    conn: asyncpg.Connection, filters: Filters, sort: str, after: tuple[Any, int] | None, limit: int
) -> list[Product]:
    """One page in ``sort`` order after the keyset position ``after``, each statement indexed whatever the table's
    size. With a filter that has an index of its own, PostgreSQL's estimates choose how (:data:`WINDOWS`): a walk
    of the order, in a window about three times what a page is expected to take (then in the widest affordable
    one), where matches are dense enough that it is the cheaper read, and the match set that the most selective
    filter's index gives, sorted, where it is or where the windows held too few. Only fixed SQL fragments are
    joined."""
    return await _listed(conn, filters, sort, after, 0, limit)


async def list_at(conn: asyncpg.Connection, filters: Filters, sort: str, offset: int, limit: int) -> list[Product]:
    """``limit`` products in ``sort`` order from position ``offset`` (numbered pages; the caller bounds it), read
    as :func:`list_page` reads a page, for ``offset + limit`` rows."""
    return await _listed(conn, filters, sort, None, offset, limit)


async def _listed(
    conn: asyncpg.Connection, filters: Filters, sort: str, after: tuple[Any, int] | None, offset: int, limit: int
) -> list[Product]:
    # A numbered page's OFFSET is the parameter after the LIMIT; a keyset page runs its statement as it is.
    skipped = [offset] if offset else []
    args: list[Any] = []
    if not _indexed_filter(filters, sort):
        sql = _plain(filters, sort, after, args)
        sql += f" OFFSET ${len(args) + 2}" if offset else ""
        return [_product(r) for r in await conn.fetch(sql, *args, limit, *skipped)]
    driver, windows = await _choice(conn, filters, sort, offset + limit)
    rows: list[asyncpg.Record] = []
    for size in windows:
        args = []
        sql = _windowed(filters, sort, after, args, WINDOWS[size])
        sql += f" OFFSET ${len(args) + 2}" if offset else ""
        rows = await conn.fetch(sql, *args, limit, *skipped)
        if len(rows) == limit:
            return [_product(r) for r in rows]
    args = []
    sql = _sparse(filters, sort, after, args, driver, WINDOWS[windows[-1]] if windows else 0, offset > 0)
    # After windows, a sparse page holds every match the last window held (its answer is a superset, in the same
    # order), so an empty answer is either no match at all or a window that held every row left: its rows stand.
    rows = await conn.fetch(sql, *args, limit, *skipped) or rows
    return [_product(r) for r in rows]


def _param(args: list[Any], value: Any) -> str:
    """``value`` appended to a query's ``args``, and the ``$n`` that names it."""
    args.append(value)
    return f"${len(args)}"


def _filtered(filters: Filters, args: list[Any]) -> list[str]:
    """The WHERE conditions of a listing with ``filters`` (no cursor), their values appended to ``args``."""
    walk, match = _clauses(filters, "-created_at", None, args)
    return walk + match


async def count_upto(conn: asyncpg.Connection, filters: Filters, cap: int) -> int:
    """How many products ``filters`` select, counting at most ``cap`` of them. With an indexed filter, as
    :func:`list_page` would read ``cap`` rows: in a window of the creation order (the table's physical order, near
    enough) where matches are dense, else (or when the window, full, held fewer than ``cap``) in the match set of
    the most selective filter's index."""
    args: list[Any] = []
    if not _indexed_filter(filters, "-created_at"):
        where = _filtered(filters, args)
        sql = f"SELECT count(*) FROM (SELECT 1 FROM products p WHERE {' AND '.join(where)} LIMIT ${len(args) + 1}) n"
        count: int = await conn.fetchval(sql, *args, cap)
        return count
    driver, windows = await _choice(conn, filters, "-created_at", cap)
    count = 0
    if windows:
        walk, match = _clauses(filters, "-created_at", None, args)
        window = _window(walk, "-created_at", WINDOWS[windows[-1]], "*")
        sql = f"SELECT count(*) FROM (SELECT 1 FROM {window} WHERE {' AND '.join(match)} LIMIT ${len(args) + 1}) n"
        count = await conn.fetchval(sql, *args, cap)
        if count == cap:
            return count
        args = []
    # The match set (after a window, only if the window was full: else its count was every match).
    cte, rest = _match_set(filters, "-created_at", None, args, driver, WINDOWS[windows[-1]] if windows else 0)
    sql = f"{cte} SELECT count(*) FROM (SELECT 1 FROM m p WHERE {' AND '.join(rest)} LIMIT ${len(args) + 1}) n"
    return await conn.fetchval(sql, *args, cap) or count


#: Live slugs equal to ``$1`` or ``$1-<anything>``: the candidates a new slug must avoid. The range is an index
#: range (migration 0006: the slug index in byte order, whatever the collation; '.' follows '-'); the exact test
#: stays beside it.
SLUGS_LIKE: Final = """SELECT slug FROM products WHERE deleted_at IS NULL AND slug ~>=~ $1 AND slug ~<~ ($1 || '.')
AND (slug = $1 OR starts_with(slug, $1 || '-'))"""


async def slugs_like(conn: asyncpg.Connection, base: str) -> list[str]:
    return [r["slug"] for r in await conn.fetch(SLUGS_LIKE, base)]


#: A product's writable fields, in the order the insert's and the update's parameters take them.
FIELDS: Final = ("slug", "name", "description", "price", "currency", "category", "stock", "attributes", "is_active")


async def insert(conn: asyncpg.Connection, *, fields: dict[str, Any], request_id: str) -> Written | None:
    """Insert a product and its ``product.created`` event; ``None`` if the category is no live category.

    The category row is locked FOR SHARE so a concurrent delete of the category cannot slip in between.
    """
    row = await conn.fetchrow(
        """
WITH cat AS (SELECT id FROM categories WHERE slug = $6 AND deleted_at IS NULL FOR SHARE),
w AS (
    INSERT INTO products (slug, name, description, price, currency, category_id, stock, attributes, is_active)
    SELECT $1, $2, $3, $4, $5, cat.id, $7, $8, $9 FROM cat
    """
        + _RETURNING
        + "),"
        + _event("product.created", 10),
        *(fields[f] for f in FIELDS),
        request_id,
    )
    return _written(row)


async def update(
    conn: asyncpg.Connection,
    current_slug: str,
    *,
    fields: dict[str, Any],
    expected_version: Versions | None,
    request_id: str,
) -> Written | None:
    """Replace a live product's fields; ``None`` if it is gone, the version differs or the category is missing."""
    row = await conn.fetchrow(
        """
WITH cat AS (SELECT id FROM categories WHERE slug = $7 AND deleted_at IS NULL FOR SHARE),
w AS (
    UPDATE products SET slug = $2, name = $3, description = $4, price = $5, currency = $6,
                        category_id = (SELECT id FROM cat), stock = $8, attributes = $9, is_active = $10,
                        version = version + 1, updated_at = now()
    WHERE slug = $1 AND deleted_at IS NULL AND ($11::int[] IS NULL OR version = ANY($11)) AND EXISTS (SELECT 1 FROM cat)
    """
        + _RETURNING
        + "),"
        + _event("product.updated", 12),
        current_slug,
        *(fields[f] for f in FIELDS),
        expected_version,
        request_id,
    )
    return _written(row)


async def soft_delete(
    conn: asyncpg.Connection, slug: str, expected_version: Versions | None, request_id: str
) -> Written | None:
    row = await conn.fetchrow(
        """
WITH w AS (
    UPDATE products SET deleted_at = now(), version = version + 1, updated_at = now()
    WHERE slug = $1 AND deleted_at IS NULL AND ($2::int[] IS NULL OR version = ANY($2))
    """
        + _RETURNING
        + "),"
        + _event("product.deleted", 3),
        slug,
        expected_version,
        request_id,
    )
    written = _written(row)
    return None if written is None else dataclasses.replace(written, deleted=True)


#: A restored product whose image is still ``pending`` gets its thumbnail job again: the job that ran while it was
#: deleted found it gone and did nothing, so without a new one it would stay ``pending`` forever. (A ``ready`` or
#: ``failed`` image has ended already.) The payload is an upload's, so the job and its superseded rule are unchanged.
_REQUEUE_IMAGE: Final = """
img AS (
    INSERT INTO outbox (type, aggregate, aggregate_id, version, payload, request_id)
    SELECT 'product.image_uploaded', 'product', w.id::text, w.version,
           jsonb_build_object('original', w.image_original, 'restored', true), $3
    FROM w WHERE w.image_status = 'pending' AND w.image_original IS NOT NULL)"""


async def restore(
    conn: asyncpg.Connection, slug: str, expected_version: Versions | None, request_id: str
) -> Written | None:
    """Restore the most recently deleted product with that slug, if its category is live.

    The category row is locked FOR SHARE, as for an insert, so a concurrent delete of the category waits. An
    image still ``pending`` is queued for its thumbnails again (``_REQUEUE_IMAGE``).
    """
    row = await conn.fetchrow(
        """
WITH target AS (
    SELECT id, category_id FROM products WHERE slug = $1 AND deleted_at IS NOT NULL
    ORDER BY deleted_at DESC, id DESC LIMIT 1),
cat AS (
    SELECT c.id FROM categories c WHERE c.id = (SELECT category_id FROM target) AND c.deleted_at IS NULL FOR SHARE),
w AS (
    UPDATE products SET deleted_at = NULL, version = version + 1, updated_at = now()
    WHERE id = (SELECT id FROM target) AND ($2::int[] IS NULL OR version = ANY($2)) AND EXISTS (SELECT 1 FROM cat)
    """
        + _RETURNING
        + "),"
        + _REQUEUE_IMAGE
        + ","
        + _event("product.restored", 3),
        slug,
        expected_version,
        request_id,
    )
    return _written(row)


async def state(conn: asyncpg.Connection, slug: str) -> dict[str, Any] | None:
    """Why a write found no row: the live (or latest deleted) row's version, and whether its category is live."""
    row = await conn.fetchrow(
        """
SELECT p.id, p.version, p.deleted_at IS NOT NULL AS deleted, c.deleted_at IS NULL AS category_live
FROM products p JOIN categories c ON c.id = p.category_id WHERE p.slug = $1
ORDER BY p.deleted_at IS NULL DESC, p.deleted_at DESC, p.id DESC LIMIT 1""",
        slug,
    )
    return None if row is None else dict(row)
