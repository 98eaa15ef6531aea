"""Typed application keys: handlers reach resources only through these."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from shared.settings import Settings

if TYPE_CHECKING:
    from api.auth import KeyCache, Principal
    from api.health import Readiness
    from api.metrics import Metrics
    from api.queries import Reads, Stats
    from api.ratelimit import RateLimiter
    from shared.fastredis import FastRedis
    from shared.readmodel import Runner

SETTINGS = web.AppKey("settings", Settings)
PG_POOL = web.AppKey("pg_pool", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
KEY_CACHE: web.AppKey[KeyCache] = web.AppKey("key_cache")
READINESS: web.AppKey[Readiness] = web.AppKey("readiness")
#: The auto-pipelined connection behind REDIS_RUN and REDIS_GET (the rate limiter sends on it directly).
FAST_REDIS: web.AppKey[FastRedis] = web.AppKey("fast_redis")
REDIS_RUN: web.AppKey[Runner] = web.AppKey("redis_run")
REDIS_GET: web.AppKey[Callable[[str], Awaitable[Any]]] = web.AppKey("redis_get")
#: The read context every query takes, made once the pools exist.
READS: web.AppKey[Reads] = web.AppKey("reads")
READ_STATS: web.AppKey[Stats] = web.AppKey("read_stats")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter")

REQUEST_ID = web.RequestKey("request_id", str)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
