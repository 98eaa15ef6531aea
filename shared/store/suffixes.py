"""Numbered slug suffixes (``-2``, ``-3``...) handed out one per create, from a counter row per generated base
(migration 0008): concurrent creates of one name each get a number of their own, with no read of the slugs in
use, except once per base (where its counter starts) and when a number turned out taken (by an explicit slug)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import asyncpg

from shared import slugs

Taken = Callable[[asyncpg.Connection, str], Awaitable[list[str]]]

_NEXT: Final = "UPDATE slug_suffixes SET last = last + 1 WHERE kind = $1 AND base = $2 RETURNING last"
#: The counter made, or moved past ``$3`` (the first number free among the slugs in use) if it is behind.
_PAST: Final = """INSERT INTO slug_suffixes AS s (kind, base, last) VALUES ($1, $2, $3)
ON CONFLICT (kind, base) DO UPDATE SET last = greatest(s.last + 1, excluded.last) RETURNING last"""


async def next_number(conn: asyncpg.Connection, kind: str, base: str, taken: Taken) -> int:
    """The next suffix number for ``base``: from its counter, or past the numbers in use if it has none yet."""
    n: int | None = await conn.fetchval(_NEXT, kind, base)
    if n is None:
        return await renumber(conn, kind, base, taken)
    return n


async def renumber(conn: asyncpg.Connection, kind: str, base: str, taken: Taken) -> int:
    """The counter moved past every number in use (a number it handed out was taken by an explicit slug)."""
    n: int = await conn.fetchval(_PAST, kind, base, slugs.first_free_number(base, await taken(conn, base)))
    return n
