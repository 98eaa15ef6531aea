"""API keys: only the SHA-256 of a key is stored."""

from __future__ import annotations

import hashlib
import secrets

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


async def scope_of(conn: asyncpg.Connection, key: str) -> tuple[int, str] | None:
    """(id, scope) of a live key; the lookup is by hash, so no comparison ever touches the key itself."""
    row = await conn.fetchrow(
        "SELECT id, scope FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", hash_key(key)
    )
    return None if row is None else (row["id"], row["scope"])
