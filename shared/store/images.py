"""A product's image state: each write is one statement (the product row + its outbox event).

State machine (``products.image_status``)::

    none ──upload──> pending ──thumbnails made──> ready
                        │  └──corrupt / gave up──> failed
    any ──upload or regenerate──> pending;  any ──remove──> none

A thumbnail job is for one original (``image_original`` when its ``product.image_uploaded`` event was written).
It may only finish a product that is still ``pending`` on that same original: every finishing statement says so
in its ``WHERE``, so a job for a replaced image, a removed image or an image already finished changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from shared.models import Versions, Written
from shared.store import products as prod_repo

#: The product as written, with its category slug and the WAL position (what ``products`` writes return).
_TAIL: Final = """
SELECT w.*, (SELECT slug FROM categories WHERE id = w.category_id) AS category,
       (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn
FROM w"""


def _event(event_type: str, rid_param: int) -> str:
    return f""",
ev AS (
    INSERT INTO outbox (type, aggregate, aggregate_id, version, payload, request_id)
    SELECT '{event_type}', 'product', w.id::text, w.version, jsonb_build_object('original', w.image_original),
           ${rid_param}
    FROM w)"""


def _written(row: asyncpg.Record | None) -> Written | None:
    return prod_repo._written(row)


@dataclass(frozen=True, slots=True)
class ImageState:
    """What a thumbnail job needs to know about its product."""

    product_id: int
    slug: str
    status: str
    original: str | None
    version: int


async def set_original(
    conn: asyncpg.Connection, slug: str, key: str, expected_version: Versions | None, request_id: str
) -> Written | None:
    """Make ``key`` the live product's original, ``pending``, and write ``product.image_uploaded``.

    The previous image's thumbnails and error are cleared: they belong to another image. ``None`` if there is
    no live product ``slug`` or its version is not ``expected_version``.
    """
    row = await conn.fetchrow(
        """
WITH w AS (
    UPDATE products SET image_status = 'pending', image_original = $2, image_thumbnails = '{}'::jsonb,
                        image_error = NULL, version = version + 1, updated_at = now()
    WHERE slug = $1 AND deleted_at IS NULL AND ($3::int[] IS NULL OR version = ANY($3))
    """
        + prod_repo._RETURNING
        + ")"
        + _event("product.image_uploaded", 4)
        + _TAIL,
        slug,
        key,
        expected_version,
        request_id,
    )
    return _written(row)


async def remove(
    conn: asyncpg.Connection, slug: str, expected_version: Versions | None, request_id: str
) -> Written | None:
    """Remove the live product's image and write ``product.image_removed``; ``None`` if nothing was changed
    (no such product, another version, or no image to remove)."""
    row = await conn.fetchrow(
        """
WITH w AS (
    UPDATE products SET image_status = 'none', image_original = NULL, image_thumbnails = '{}'::jsonb,
                        image_error = NULL, version = version + 1, updated_at = now()
    WHERE slug = $1 AND deleted_at IS NULL AND ($2::int[] IS NULL OR version = ANY($2))
      AND (image_status <> 'none' OR image_original IS NOT NULL)
    """
        + prod_repo._RETURNING
        + ")"
        + _event("product.image_removed", 3)
        + _TAIL,
        slug,
        expected_version,
        request_id,
    )
    return _written(row)


async def job_original(conn: asyncpg.Connection, event_id: str) -> tuple[bool, str | None]:
    """``(found, original)`` of the ``product.image_uploaded`` event ``event_id`` (sent rows are kept for the
    relay's retention period, so ``found`` is false only for a job older than that)."""
    row = await conn.fetchrow(
        "SELECT payload->>'original' AS original FROM outbox WHERE event_id = $1::uuid AND type = $2",
        event_id,
        "product.image_uploaded",
    )
    return (False, None) if row is None else (True, row["original"])


async def image_state(conn: asyncpg.Connection, product_id: int) -> ImageState | None:
    """The live product's image state; ``None`` if the product is gone."""
    row = await conn.fetchrow(
        "SELECT id, slug, image_status, image_original, version FROM products WHERE id = $1 AND deleted_at IS NULL",
        product_id,
    )
    if row is None:
        return None
    return ImageState(row["id"], row["slug"], row["image_status"], row["image_original"], row["version"])


async def mark_ready(
    conn: asyncpg.Connection, product_id: int, original: str, thumbnails: dict[str, Any], request_id: str | None
) -> Written | None:
    """Record the thumbnails of ``original`` and write ``product.thumbnails_ready``, if the product is still
    ``pending`` on that original; ``None`` (and nothing written) otherwise."""
    row = await conn.fetchrow(
        """
WITH w AS (
    UPDATE products SET image_status = 'ready', image_thumbnails = $3, image_error = NULL,
                        version = version + 1, updated_at = now()
    WHERE id = $1 AND deleted_at IS NULL AND image_status = 'pending' AND image_original = $2
    """
        + prod_repo._RETURNING
        + ")"
        + _event("product.thumbnails_ready", 4)
        + _TAIL,
        product_id,
        original,
        thumbnails,
        request_id,
    )
    return _written(row)


async def mark_failed(
    conn: asyncpg.Connection, product_id: int, original: str, reason: str, request_id: str | None
) -> Written | None:
    """Record why ``original`` has no thumbnails and write ``product.thumbnails_failed``, under the same
    condition as :func:`mark_ready`."""
    row = await conn.fetchrow(
        """
WITH w AS (
    UPDATE products SET image_status = 'failed', image_thumbnails = '{}'::jsonb, image_error = $3,
                        version = version + 1, updated_at = now()
    WHERE id = $1 AND deleted_at IS NULL AND image_status = 'pending' AND image_original = $2
    """
        + prod_repo._RETURNING
        + ")"
        + _event("product.thumbnails_failed", 4)
        + _TAIL,
        product_id,
        original,
        reason[:1000],
        request_id,
    )
    return _written(row)


#: ``regenerate`` modes -> which live products with an original they select (``$1``: the configured sizes).
REGENERATE: Final = {
    # Ready, but without a size configured now; or pending (its job may have been lost). Failed ones: --failed.
    "missing": "(p.image_status = 'pending' OR (p.image_status = 'ready' AND NOT p.image_thumbnails ?& $1::text[]))",
    "failed": "(p.image_status = 'failed' AND $1::text[] IS NOT NULL)",
    "all": "$1::text[] IS NOT NULL",
}
_SELECTED = """
FROM products p
WHERE p.deleted_at IS NULL AND p.image_original IS NOT NULL AND {cond} AND ($2::text IS NULL OR p.slug = $2)"""


async def regeneration_ids(
    conn: asyncpg.Connection, mode: str, sizes: list[str], slug: str | None, after: int, limit: int
) -> list[int]:
    """Ids (ascending, after ``after``) of live products with an original that ``mode`` selects."""
    sql = "SELECT p.id" + _SELECTED.format(cond=REGENERATE[mode]) + " AND p.id > $3 ORDER BY p.id LIMIT $4"
    return [r["id"] for r in await conn.fetch(sql, sizes, slug, after, limit)]


async def count_for_regeneration(conn: asyncpg.Connection, mode: str, sizes: list[str], slug: str | None) -> int:
    n: int = await conn.fetchval("SELECT count(*)" + _SELECTED.format(cond=REGENERATE[mode]), sizes, slug)
    return n


async def request_regeneration(conn: asyncpg.Connection, product_ids: list[int], request_id: str) -> int:
    """Put the products' current originals back to ``pending`` (their thumbnails stay until replaced) and write
    one ``product.image_uploaded`` per product, in one statement; the number of products."""
    rows = await conn.fetch(
        """
WITH w AS (
    UPDATE products SET image_status = 'pending', image_error = NULL, version = version + 1, updated_at = now()
    WHERE id = ANY($1::bigint[]) AND deleted_at IS NULL AND image_original IS NOT NULL
    RETURNING id, version, image_original)
INSERT INTO outbox (type, aggregate, aggregate_id, version, payload, request_id)
SELECT 'product.image_uploaded', 'product', w.id::text, w.version,
       jsonb_build_object('original', w.image_original, 'regenerate', true), $2
FROM w
RETURNING 1""",
        product_ids,
        request_id,
    )
    return len(rows)
