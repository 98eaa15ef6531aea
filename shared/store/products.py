"""Products: SQL only, ``$n`` parameters only; list queries are assembled from fixed fragments."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import asyncpg

from shared import numbers
from shared.models import Product, Versions, Written

_COLUMNS = """
p.id, p.slug, p.name, p.description, p.price, p.currency, c.slug AS category, p.category_id, p.stock, p.attributes,
p.is_active, p.image_status, p.image_original, p.image_thumbnails, p.image_error,
p.created_at, p.updated_at, p.version, (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn"""
_SELECT = "SELECT " + _COLUMNS + " FROM products p JOIN categories c ON c.id = p.category_id"

_RETURNING = """RETURNING id, slug, name, description, price, currency, category_id, stock, attributes, is_active,
    image_status, image_original, image_thumbnails, image_error, created_at, updated_at, version"""

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


async def get_by_slug(conn: asyncpg.Connection, slug: str) -> Product | None:
    row = await conn.fetchrow(_SELECT + " WHERE p.slug = $1 AND p.deleted_at IS NULL", slug)
    return None if row is None else _product(row)


async def get_any_by_id(conn: asyncpg.Connection, product_id: int) -> tuple[Product, bool] | None:
    """The product, live or soft-deleted, and whether it is deleted (for the read model's projections)."""
    row = await conn.fetchrow(
        _SELECT.replace("SELECT ", "SELECT p.deleted_at IS NOT NULL AS deleted, ", 1) + " WHERE p.id = $1", product_id
    )
    return None if row is None else (_product(row), row["deleted"])


async def any_after(conn: asyncpg.Connection, after_id: int, limit: int) -> list[tuple[Product, bool]]:
    """Up to ``limit`` products (live or soft-deleted, and whether deleted) after ``after_id`` in id order, for
    rebuilding the read model in batches: one walk of the primary key, a page at a time."""
    rows = await conn.fetch(
        _SELECT.replace("SELECT ", "SELECT p.deleted_at IS NOT NULL AS deleted, ", 1)
        + " WHERE p.id > $1 ORDER BY p.id LIMIT $2",
        after_id,
        limit,
    )
    return [(_product(row), row["deleted"]) for row in rows]


async def list_page(
    conn: asyncpg.Connection, filters: Filters, sort: str, after: tuple[Any, int] | None, limit: int
) -> list[Product]:
    """One page in ``sort`` order after the keyset position ``after``. Only fixed SQL fragments are joined."""
    order, op, (col, idcol) = SORTS[sort]
    where = ["p.deleted_at IS NULL"]
    args: list[Any] = []

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if filters.category is not None:
        where.append(
            f"p.category_id = (SELECT id FROM categories WHERE slug = {param(filters.category)} AND deleted_at IS NULL)"
        )
    if filters.min_price is not None:
        where.append(f"p.price >= {param(filters.min_price)}")
    if filters.max_price is not None:
        where.append(f"p.price <= {param(filters.max_price)}")
    if filters.in_stock is True:
        where.append("p.stock > 0")
    elif filters.in_stock is False:
        where.append("p.stock = 0")
    if filters.q:
        where.append(f"p.search @@ websearch_to_tsquery('english', {param(filters.q)})")
    if after is not None:
        where.append(f"({col}, {idcol}) {op} ({param(after[0])}, {param(after[1])})")
    sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT {param(limit)}"
    return [_product(r) for r in await conn.fetch(sql, *args)]


async def slugs_like(conn: asyncpg.Connection, base: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT slug FROM products WHERE deleted_at IS NULL AND (slug = $1 OR starts_with(slug, $1 || '-'))",
        base,
    )
    return [r["slug"] for r in rows]


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
