"""Users of the birthday greeting service."""

from __future__ import annotations

import datetime as dt

import asyncpg

from shared.models import User
from shared.store.rows import entity

_COLUMNS = "username, name, date_of_birth, version, (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn"


async def get(conn: asyncpg.Connection, username: str) -> User | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE username = $1", username.lower())
    return None if row is None else entity(User, row)


async def upsert(conn: asyncpg.Connection, name: str, date_of_birth: dt.date, request_id: str) -> User:
    """Create or replace a user and write ``user.upserted``; returns the user as written."""
    row = await conn.fetchrow(
        """
WITH w AS (
    INSERT INTO users (username, name, date_of_birth) VALUES (lower($1), $1, $2)
    ON CONFLICT (username) DO UPDATE
        SET name = EXCLUDED.name, date_of_birth = EXCLUDED.date_of_birth,
            version = users.version + 1, updated_at = now()
    RETURNING username, name, date_of_birth, version),
ev AS (
    INSERT INTO outbox (type, aggregate, aggregate_id, version, payload, request_id)
    SELECT 'user.upserted', 'user', w.username, w.version,
           jsonb_build_object('date_of_birth', w.date_of_birth), $3
    FROM w)
SELECT w.*, (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn FROM w""",
        name,
        date_of_birth,
        request_id,
    )
    assert row is not None  # an upsert always returns its row
    return entity(User, row)


async def born_on(conn: asyncpg.Connection, month: int, days: list[int]) -> list[User]:
    """Users born on any of ``days`` of ``month`` (several days: 28 and 29 February in a common year)."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM users
           WHERE extract(month FROM date_of_birth) = $1 AND extract(day FROM date_of_birth) = ANY($2::int[])
           ORDER BY username""",
        month,
        days,
    )
    return [entity(User, r) for r in rows]


async def usernames_after(conn: asyncpg.Connection, after: str, limit: int) -> list[str]:
    rows = await conn.fetch("SELECT username FROM users WHERE username > $1 ORDER BY username LIMIT $2", after, limit)
    return [r["username"] for r in rows]
