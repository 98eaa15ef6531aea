"""Which stored media (originals, thumbnails) products reference, and the locks that order an upload against the
collector (``worker.thumbnails.collect``).

Every product counts, soft-deleted ones too: a deleted product can be restored, its image with it.

An upload (or a thumbnail job) writes its file first, then, in the transaction that makes a product reference it,
takes a *shared* lock on the key and checks the file is still there. The collector takes an *exclusive* lock on
the key, checks again that no product references it, and only then deletes it. So either the collector deletes
first (the writer sees the file gone and does not reference it) or the writer commits first (the collector sees
the reference): no product ever references a file the collector removed.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

#: Every key a product references (``$1``: only these keys, or all when NULL).
_REFERENCED = """
SELECT DISTINCT k FROM (
    SELECT image_original AS k FROM products WHERE image_original IS NOT NULL
    UNION ALL
    SELECT s.value->>'key' FROM products p, jsonb_each(p.image_thumbnails) s
    UNION ALL
    SELECT s.value->'fallback'->>'key' FROM products p, jsonb_each(p.image_thumbnails) s
) refs
WHERE k IS NOT NULL AND ($1::text[] IS NULL OR k = ANY($1::text[]))"""


async def referenced(conn: asyncpg.Connection, keys: Iterable[str] | None = None) -> set[str]:
    """The keys (of ``keys``, or all) that some product, live or deleted, references."""
    rows = await conn.fetch(_REFERENCED, None if keys is None else list(keys))
    return {r["k"] for r in rows}


async def hold_for_use(conn: asyncpg.Connection, keys: Iterable[str]) -> None:
    """Shared transaction locks on ``keys``: the collector cannot delete them until this transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock_shared(hashtextextended(k, 0)) FROM unnest($1::text[]) k",
        sorted(set(keys)),
    )


async def hold_for_removal(conn: asyncpg.Connection, keys: Iterable[str]) -> None:
    """Exclusive transaction locks on ``keys`` (in key order, so two collectors never deadlock)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) k",
        sorted(set(keys)),
    )
