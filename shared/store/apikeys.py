"""API keys: only the SHA-256 of a key is stored; keys are listed, revoked and rotated by name or id."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg

#: Recognisable prefix, so a leaked key is easy to find in a scanner.
KEY_PREFIX = "sr_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create(conn: asyncpg.Connection, name: str, scope: str) -> tuple[int, str]:
    """Store a new key's hash; returns (id, the key itself), which is never stored nor shown again."""
    key = new_key()
    key_id: int = await conn.fetchval(
        "INSERT INTO api_keys (name, key_hash, scope) VALUES ($1, $2, $3) RETURNING id",
        name,
        hash_key(key),
        scope,
    )
    return key_id, key


#: ``last_used_at`` is written at most this often per key: an API process asks PostgreSQL about a key only when
#: its cache misses, and even then the row is updated only if the stored time is older than this.
LAST_USED_RESOLUTION_SECONDS: Final = 60


@dataclass(frozen=True, slots=True)
class LiveKey:
    """What a verified key grants, and until when (``expires_at`` is set on a key rotated out; else ``None``)."""

    id: int
    scope: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One key as ``keys list`` shows it: never its secret nor its hash."""

    id: int
    name: str
    scope: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


async def scope_of(conn: asyncpg.Connection, key: str) -> LiveKey | None:
    """The live key (not revoked, not expired) behind ``key``, marking it used; ``None`` if there is none.

    The lookup is by hash, so no comparison ever touches the key itself. One statement: the read, and the
    ``last_used_at`` update when the stored time is older than :data:`LAST_USED_RESOLUTION_SECONDS`.
    """
    row = await conn.fetchrow(
        """WITH k AS (
               SELECT id, scope, expires_at, last_used_at
               FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())),
           used AS (
               UPDATE api_keys SET last_used_at = now() FROM k
               WHERE api_keys.id = k.id
                 AND (k.last_used_at IS NULL OR k.last_used_at < now() - $2 * interval '1 second'))
           SELECT id, scope, expires_at FROM k""",
        hash_key(key),
        float(LAST_USED_RESOLUTION_SECONDS),
    )
    return None if row is None else LiveKey(row["id"], row["scope"], row["expires_at"])


async def list_keys(conn: asyncpg.Connection) -> list[KeyInfo]:
    """Every key, oldest first (revoked and expired ones included)."""
    rows = await conn.fetch(
        """SELECT id, name, scope, created_at, last_used_at, expires_at, revoked_at FROM api_keys ORDER BY id"""
    )
    return [KeyInfo(**dict(r)) for r in rows]


async def revoke(conn: asyncpg.Connection, *, key_id: int | None = None, name: str | None = None) -> list[int]:
    """Revoke the key with ``key_id``, or every key named ``name``, that is not revoked yet; the ids revoked."""
    rows = await conn.fetch(
        """UPDATE api_keys SET revoked_at = now()
           WHERE revoked_at IS NULL AND (id = $1 OR name = $2) RETURNING id""",
        key_id,
        name,
    )
    return sorted(r["id"] for r in rows)


@dataclass(frozen=True, slots=True)
class Rotation:
    """A rotation's outcome: the new key (shown once), and the old keys with the time they stop working."""

    new_id: int
    key: str
    old: list[tuple[int, datetime]]


async def rotate(conn: asyncpg.Connection, name: str, grace: timedelta) -> Rotation | None:
    """Issue a new key named ``name`` (the scope of the newest live one) and let the live ones expire after
    ``grace`` (never later than an expiry they already had). ``None`` if no live key has that name.
    Run inside a transaction: the old rows are locked, so two rotations at once do not both see them live.
    """
    live = await conn.fetch(
        """SELECT id, scope FROM api_keys
           WHERE name = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
           ORDER BY id DESC FOR UPDATE""",
        name,
    )
    if not live:
        return None
    old = await conn.fetch(
        """UPDATE api_keys SET expires_at = least(coalesce(expires_at, 'infinity'), now() + $2::interval)
           WHERE id = ANY($1::bigint[]) RETURNING id, expires_at""",
        [r["id"] for r in live],
        grace,
    )
    new_id, key = await create(conn, name, live[0]["scope"])
    return Rotation(new_id, key, sorted((r["id"], r["expires_at"]) for r in old))
