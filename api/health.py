"""Liveness and readiness: readiness names each dependency and says which failed."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as aioredis

from shared.errors import SchemaNotMigrated
from shared.store.pool import SCHEMA_MISSING, saturated

#: How long one probe may take before the dependency counts as down.
PROBE_TIMEOUT = 1.0
#: Results are reused this long, so a busy prober does not multiply connections.
CACHE_SECONDS = 1.0


async def _postgres(pool: asyncpg.Pool, schema_version: int) -> None:
    """PostgreSQL answers, and its schema is migrated at least as far as this code needs (a newer one is fine:
    migrations only add, and a rolling upgrade migrates before the new code starts).

    A pool that stays :func:`~shared.store.pool.saturated` for the whole probe is overload, not an outage: every
    one of its connections is in use, talking to PostgreSQL (a PostgreSQL that stopped answering ends them within
    the command timeout, and the next probe's connect then fails)."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            async with pool.acquire() as conn:
                try:
                    applied = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
                except SCHEMA_MISSING:
                    applied = 0
    except TimeoutError:
        if saturated(pool):
            return
        raise
    if applied < schema_version:
        raise SchemaNotMigrated(f"schema not migrated (at version {applied}, needs {schema_version})")


async def _redis(client: aioredis.Redis) -> None:
    async with asyncio.timeout(PROBE_TIMEOUT):
        await client.ping()


async def _rabbitmq(url: str) -> None:
    """The broker answers an AMQP protocol header with its Connection.Start frame (frame type 1)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    async with asyncio.timeout(PROBE_TIMEOUT):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"AMQP\x00\x00\x09\x01")
            frame = await reader.readexactly(1)
        finally:
            writer.close()
    if frame != b"\x01":
        raise ConnectionError("not an AMQP 0-9-1 broker")


def _state(result: BaseException | None) -> str:
    if result is None:
        return "ok"
    if isinstance(result, SchemaNotMigrated):
        return f"down: {result}"
    return f"down: {type(result).__name__}"


@dataclass
class Readiness:
    pool: asyncpg.Pool
    redis: aioredis.Redis
    rabbitmq_url: str
    #: The newest migration this code needs (``migrations/NNNN_*.sql``).
    schema_version: int
    _at: float = 0.0
    _last: dict[str, str] = field(default_factory=dict)

    async def check(self) -> dict[str, str]:
        """``{"postgres": "ok"|"down: ...", "redis": ..., "rabbitmq": ...}``."""
        if time.monotonic() - self._at < CACHE_SECONDS and self._last:
            return self._last
        probes = {
            "postgres": _postgres(self.pool, self.schema_version),
            "redis": _redis(self.redis),
            "rabbitmq": _rabbitmq(self.rabbitmq_url),
        }
        results = await asyncio.gather(*probes.values(), return_exceptions=True)
        self._last = {name: _state(r) for name, r in zip(probes, results, strict=True)}
        self._at = time.monotonic()
        return self._last
