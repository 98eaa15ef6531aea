"""Idempotency keys: the first answer to a POST, replayed to its retries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import asyncpg

#: Idempotency keys are honoured for a day (the relay's housekeeping deletes older ones).
TTL_HOURS: Final = 24


@dataclass(frozen=True)
class Stored:
    request_hash: str
    status: int | None
    body: bytes | None
    location: str | None


async def claim(conn: asyncpg.Connection, owner: str, key: str, request_hash: str) -> bool:
    """Claim ``key`` inside the caller's transaction. False if it is taken (waits for a concurrent claimant
    to commit or roll back first: the unique index serialises the two)."""
    claimed: bool | None = await conn.fetchval(
        """INSERT INTO idempotency_keys (owner, key, request_hash) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING true""",
        owner,
        key,
        request_hash,
    )
    return bool(claimed)


async def get(conn: asyncpg.Connection, owner: str, key: str) -> Stored | None:
    row = await conn.fetchrow(
        "SELECT request_hash, status, body, location FROM idempotency_keys WHERE owner = $1 AND key = $2",
        owner,
        key,
    )
    return None if row is None else Stored(row["request_hash"], row["status"], row["body"], row["location"])


async def save(conn: asyncpg.Connection, owner: str, key: str, status: int, body: bytes, location: str | None) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET status = $3, body = $4, location = $5 WHERE owner = $1 AND key = $2",
        owner,
        key,
        status,
        body,
        location,
    )
