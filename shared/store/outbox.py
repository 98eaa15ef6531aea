"""The outbox table: claim unsent rows (marking them sent as their transaction commits), delete expired rows, and
the backlog figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from shared.store.idempotency import TTL_HOURS as IDEMPOTENCY_TTL_HOURS

#: Rows deleted per statement: short transactions, no long lock on a table the API writes to.
DELETE_CHUNK: Final = 5_000


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One claimed outbox row."""

    row_id: int
    event_id: str
    type: str
    aggregate: str
    aggregate_id: str
    version: int
    payload: Any
    request_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Backlog:
    """Unsent rows, and the age of the oldest one in seconds (0 when there is none)."""

    count: int
    oldest_age: float


async def claim_batch(conn: asyncpg.Connection, limit: int) -> list[OutboxEvent]:
    """Lock up to ``limit`` unsent rows, oldest first, skipping rows another relay holds, and mark them sent, in one
    statement. The caller holds the transaction: it commits only once every message of the rows is confirmed, so
    nobody sees them sent before that, and a rollback (a failed publish) leaves them unsent and unlocked."""
    rows = await conn.fetch(
        """UPDATE outbox o SET sent_at = now()
           FROM (SELECT id FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) claimed
           WHERE o.id = claimed.id
           RETURNING o.id, o.event_id, o.type, o.aggregate, o.aggregate_id, o.version, o.payload, o.request_id,
                     o.created_at""",
        limit,
    )
    # RETURNING follows no order: the batch is published in the outbox's.
    return sorted(
        (
            OutboxEvent(
                row_id=r["id"],
                event_id=str(r["event_id"]),
                type=r["type"],
                aggregate=r["aggregate"],
                aggregate_id=r["aggregate_id"],
                version=r["version"],
                payload=r["payload"],
                request_id=r["request_id"],
                created_at=r["created_at"],
            )
            for r in rows
        ),
        key=lambda e: e.row_id,
    )


async def delete_expired(conn: asyncpg.Connection, retention_hours: float, chunk: int = DELETE_CHUNK) -> int:
    """Delete sent rows older than the retention, and stale idempotency keys, ``chunk`` rows per statement (each
    statement commits on its own unless the caller holds a transaction). How many rows were deleted."""
    deleted = 0
    for sql, hours in (
        (
            """DELETE FROM outbox WHERE id IN (
                   SELECT id FROM outbox WHERE sent_at < now() - $1 * interval '1 hour' LIMIT $2)""",
            retention_hours,
        ),
        (
            """DELETE FROM idempotency_keys WHERE (owner, key) IN (
                   SELECT owner, key FROM idempotency_keys
                   WHERE created_at < now() - $1 * interval '1 hour' LIMIT $2)""",
            float(IDEMPOTENCY_TTL_HOURS),
        ),
    ):
        while True:
            status = await conn.execute(sql, hours, chunk)
            n = int(status.rsplit(" ", 1)[-1])
            deleted += n
            if n < chunk:
                break
    return deleted


async def backlog(conn: asyncpg.Connection) -> Backlog:
    """The backlog figures (the partial index on unsent rows answers them)."""
    row = await conn.fetchrow(
        """SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS age
           FROM outbox WHERE sent_at IS NULL"""
    )
    assert row is not None
    return Backlog(int(row["n"]), max(0.0, float(row["age"])))
