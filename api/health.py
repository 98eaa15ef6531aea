"""Liveness and readiness: readiness names each dependency and says which failed."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as aioredis

#: How long one probe may take before the dependency counts as down.
PROBE_TIMEOUT = 1.0
#: Results are reused this long, so a busy prober does not multiply connections.
CACHE_SECONDS = 1.0


async def _postgres(pool: asyncpg.Pool) -> None:
    async with asyncio.timeout(PROBE_TIMEOUT):
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")


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


@dataclass
class Readiness:
    pool: asyncpg.Pool
    redis: aioredis.Redis
    rabbitmq_url: str
    _at: float = 0.0
    _last: dict[str, str] = field(default_factory=dict)

    async def check(self) -> dict[str, str]:
        """``{"postgres": "ok"|"down: ...", "redis": ..., "rabbitmq": ...}``."""
        if time.monotonic() - self._at < CACHE_SECONDS and self._last:
            return self._last
        probes = {
            "postgres": _postgres(self.pool),
            "redis": _redis(self.redis),
            "rabbitmq": _rabbitmq(self.rabbitmq_url),
        }
        results = await asyncio.gather(*probes.values(), return_exceptions=True)
        self._last = {
            name: "ok" if r is None else f"down: {type(r).__name__}" for name, r in zip(probes, results, strict=True)
        }
        self._at = time.monotonic()
        return self._last
