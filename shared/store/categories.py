"""Categories: SQL only, ``$n`` parameters only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import asyncpg

from shared.models import Category, Versions, Written
from shared.store.rows import entity, written

_SELECT = """
SELECT c.id, c.slug, c.name, c.description, p.slug AS parent, c.version, c.created_at, c.updated_at,
       (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn,
       category_product_count(c.id) AS product_count
FROM categories c LEFT JOIN categories p ON p.id = c.parent_id
"""

#: The outbox insert shared by every category write; ``w`` is the CTE holding the written row.
_EVENT = """
ev AS (
    INSERT INTO outbox (type, aggregate, aggregate_id, version, payload, request_id)
    SELECT $type, 'category', w.id::text, w.version,
           jsonb_build_object('slug', w.slug, 'name', w.name, 'description', w.description,
                              'parent_id', w.parent_id), $rid
    FROM w)
SELECT w.id, w.slug, w.name, w.description, w.version, w.created_at, w.updated_at,
       (SELECT slug FROM categories WHERE id = w.parent_id) AS parent,
       category_product_count(w.id) AS product_count,
       (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn
FROM w
"""


async def _write(
    conn: asyncpg.Connection, sql: str, event_type: str, *args: Any, deleted: bool = False
) -> Written | None:
    """A category write and its event in one round trip (the convention: :mod:`shared.store.rows`)."""
    sql += _EVENT.replace("$type", f"'{event_type}'").replace("$rid", f"${len(args)}")
    return written(Category, await conn.fetchrow(sql, *args), deleted=deleted)


async def get_by_slug(conn: asyncpg.Connection, slug: str) -> Category | None:
    row = await conn.fetchrow(_SELECT + " WHERE c.slug = $1 AND c.deleted_at IS NULL", slug)
    return None if row is None else entity(Category, row)


async def list_page(conn: asyncpg.Connection, after_id: int | None, limit: int) -> list[Category]:
    rows = await conn.fetch(
        _SELECT + " WHERE c.deleted_at IS NULL AND ($1::bigint IS NULL OR c.id > $1) ORDER BY c.id LIMIT $2",
        after_id,
        limit,
    )
    return [entity(Category, r) for r in rows]


async def count_upto(conn: asyncpg.Connection, cap: int) -> int:
    """How many live categories there are, counting at most ``cap`` (the cost is bounded by ``cap``)."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM categories WHERE deleted_at IS NULL LIMIT $1) AS n", cap
    )
    return count


async def list_at(conn: asyncpg.Connection, offset: int, limit: int) -> list[Category]:
    """``limit`` live categories by id from position ``offset`` (numbered pages; the caller bounds it)."""
    rows = await conn.fetch(_SELECT + " WHERE c.deleted_at IS NULL ORDER BY c.id LIMIT $1 OFFSET $2", limit, offset)
    return [entity(Category, r) for r in rows]


async def get_any_by_id(conn: asyncpg.Connection, category_id: int) -> tuple[Category, bool] | None:
    """The category, live or soft-deleted, and whether it is deleted (for the read model's projections)."""
    return (await get_any_by_ids(conn, [category_id])).get(category_id)


async def get_any_by_ids(conn: asyncpg.Connection, category_ids: Sequence[int]) -> dict[int, tuple[Category, bool]]:
    """:func:`get_any_by_id` for many ids in one statement (the cache worker's batches); absent ids are left out."""
    rows = await conn.fetch(
        _SELECT.replace("SELECT ", "SELECT c.deleted_at IS NOT NULL AS deleted, ", 1)
        + " WHERE c.id = ANY($1::bigint[])",
        list(category_ids),
    )
    return {r["id"]: (entity(Category, r), r["deleted"]) for r in rows}


async def ids_after(conn: asyncpg.Connection, after_id: int, limit: int) -> list[int]:
    rows = await conn.fetch("SELECT id FROM categories WHERE id > $1 ORDER BY id LIMIT $2", after_id, limit)
    return [r["id"] for r in rows]


async def slugs_like(conn: asyncpg.Connection, base: str) -> list[str]:
    """Live slugs equal to ``base`` or ``base-<anything>``: the candidates a new slug must avoid."""
    rows = await conn.fetch(
        # An index range, as for products (migration 0006).
        "SELECT slug FROM categories WHERE deleted_at IS NULL AND slug ~>=~ $1 AND slug ~<~ ($1 || '.')"
        " AND (slug = $1 OR starts_with(slug, $1 || '-'))",
        base,
    )
    return [r["slug"] for r in rows]


#: The fields a category's insert and update write, in the order of their parameters (``$1``... in the insert).
FIELDS: Final = ("slug", "name", "description", "parent")


async def insert(conn: asyncpg.Connection, *, fields: dict[str, Any], request_id: str) -> Written | None:
    """Insert a category and its ``category.created`` event; ``None`` if ``parent`` is no live category."""
    return await _write(
        conn,
        """
WITH parent AS (SELECT id FROM categories WHERE slug = $4 AND deleted_at IS NULL FOR SHARE),
w AS (
    INSERT INTO categories (slug, name, description, parent_id)
    SELECT $1, $2, $3, (SELECT id FROM parent)
    WHERE $4::text IS NULL OR EXISTS (SELECT 1 FROM parent)
    RETURNING id, slug, name, description, parent_id, version, created_at, updated_at),
""",
        "category.created",
        *(fields[f] for f in FIELDS),
        request_id,
    )


async def update(
    conn: asyncpg.Connection,
    current_slug: str,
    *,
    fields: dict[str, Any],
    expected_version: Versions | None,
    request_id: str,
) -> Written | None:
    """Replace a live category's fields; ``None`` if it is gone, the version differs or the parent is missing."""
    return await _write(
        conn,
        """
WITH parent AS (SELECT id FROM categories WHERE slug = $5 AND deleted_at IS NULL FOR SHARE),
w AS (
    UPDATE categories SET slug = $2, name = $3, description = $4, parent_id = (SELECT id FROM parent),
                          version = version + 1, updated_at = now()
    WHERE slug = $1 AND deleted_at IS NULL AND ($6::int[] IS NULL OR version = ANY($6))
      AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM parent))
    RETURNING id, slug, name, description, parent_id, version, created_at, updated_at),
""",
        "category.updated",
        current_slug,
        *(fields[f] for f in FIELDS),
        expected_version,
        request_id,
    )


async def would_cycle(conn: asyncpg.Connection, category_id: int, parent_slug: str) -> bool:
    """Whether making ``parent_slug`` the parent of ``category_id`` would close a loop."""
    found: bool = await conn.fetchval(
        """
WITH RECURSIVE anc AS (
    SELECT id, parent_id FROM categories WHERE slug = $1 AND deleted_at IS NULL
    UNION
    SELECT c.id, c.parent_id FROM categories c JOIN anc ON c.id = anc.parent_id)
SELECT EXISTS (SELECT 1 FROM anc WHERE id = $2)""",
        parent_slug,
        category_id,
    )
    return found


async def soft_delete(
    conn: asyncpg.Connection, slug: str, expected_version: Versions | None, request_id: str
) -> Written | None:
    """Soft-delete a live category without live products; ``None`` if that is not possible.

    A product insert holds the category row FOR SHARE until it commits, and one statement cannot see a row
    committed after it began. So the row is locked FOR UPDATE first, which waits for such inserts, and the
    product check runs in a second statement, whose snapshot includes them. The caller holds the transaction that
    keeps the two together (the lock lasts until it ends).
    """
    await conn.execute("SELECT 1 FROM categories WHERE slug = $1 AND deleted_at IS NULL FOR UPDATE", slug)
    return await _write(
        conn,
        """
WITH w AS (
    UPDATE categories SET deleted_at = now(), version = version + 1, updated_at = now()
    WHERE slug = $1 AND deleted_at IS NULL AND ($2::int[] IS NULL OR version = ANY($2))
      AND NOT EXISTS (SELECT 1 FROM products p WHERE p.category_id = categories.id AND p.deleted_at IS NULL)
    RETURNING id, slug, name, description, parent_id, version, created_at, updated_at),
""",
        "category.deleted",
        slug,
        expected_version,
        request_id,
        deleted=True,
    )


async def restore(
    conn: asyncpg.Connection, slug: str, expected_version: Versions | None, request_id: str
) -> Written | None:
    """Restore the most recently deleted category with that slug (a live twin raises UniqueViolation)."""
    return await _write(
        conn,
        """
WITH target AS (
    SELECT id FROM categories WHERE slug = $1 AND deleted_at IS NOT NULL ORDER BY deleted_at DESC, id DESC LIMIT 1),
w AS (
    UPDATE categories SET deleted_at = NULL, version = version + 1, updated_at = now()
    WHERE id = (SELECT id FROM target) AND ($2::int[] IS NULL OR version = ANY($2))
    RETURNING id, slug, name, description, parent_id, version, created_at, updated_at),
""",
        "category.restored",
        slug,
        expected_version,
        request_id,
    )


async def state(conn: asyncpg.Connection, slug: str) -> dict[str, Any] | None:
    """Why a write found no row: the live row's version and live product count, or the latest deleted one's."""
    row = await conn.fetchrow(
        """
SELECT c.id, c.version, c.deleted_at IS NOT NULL AS deleted,
       category_product_count(c.id) AS live_products
FROM categories c WHERE c.slug = $1
ORDER BY c.deleted_at IS NULL DESC, c.deleted_at DESC, c.id DESC LIMIT 1""",
        slug,
    )
    return None if row is None else dict(row)
