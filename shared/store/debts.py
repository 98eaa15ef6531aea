"""Read-model debts (migration 0005): writes committed whose write-through to Redis failed, until re-projected."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class Debt:
    """An aggregate whose projection in Redis may be older than ``version``."""

    aggregate: str
    aggregate_id: str
    version: int


async def record(conn: asyncpg.Connection, aggregate: str, aggregate_id: str, version: int) -> None:
    """Owe ``aggregate_id`` at ``version`` (a debt already there keeps its ``since`` and the higher version)."""
    await conn.execute(
        """INSERT INTO readmodel_debts (aggregate, aggregate_id, version) VALUES ($1, $2, $3)
           ON CONFLICT (aggregate, aggregate_id)
           DO UPDATE SET version = greatest(readmodel_debts.version, EXCLUDED.version)""",
        aggregate,
        aggregate_id,
        version,
    )


async def owed(conn: asyncpg.Connection, limit: int) -> list[Debt]:
    """The oldest ``limit`` debts."""
    rows = await conn.fetch(
        "SELECT aggregate, aggregate_id, version FROM readmodel_debts ORDER BY since LIMIT $1", limit
    )
    return [Debt(r["aggregate"], r["aggregate_id"], r["version"]) for r in rows]


async def settle(conn: asyncpg.Connection, paid: list[Debt]) -> None:
    """Delete each debt of ``paid`` whose version is at most the one it was repaid at (a newer debt stays)."""
    if not paid:
        return
    await conn.execute(
        """DELETE FROM readmodel_debts d
           USING unnest($1::text[], $2::text[], $3::bigint[]) AS p(aggregate, aggregate_id, version)
           WHERE d.aggregate = p.aggregate AND d.aggregate_id = p.aggregate_id AND d.version <= p.version""",
        [d.aggregate for d in paid],
        [d.aggregate_id for d in paid],
        [d.version for d in paid],
    )
