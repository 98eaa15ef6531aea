"""The app state: typed aiohttp application and request keys; handlers reach resources only through these."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from shared.settings import Settings
from shared.storage import Storage

if TYPE_CHECKING:
    from api.auth import KeyCache, Principal
    from api.commands import ReadModel
    from api.health import Readiness
    from api.queries import Reads
    from shared.readmodel.client import FastRedis
    from shared.readmodel.read import Stats

SETTINGS = web.AppKey("settings", Settings)
PG_POOL = web.AppKey("pg_pool", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
KEY_CACHE: web.AppKey[KeyCache] = web.AppKey("key_cache")
READINESS: web.AppKey[Readiness] = web.AppKey("readiness")
#: The read model's auto-pipelined connection: every read, write-through and rate-limit check.
FAST_REDIS: web.AppKey[FastRedis] = web.AppKey("fast_redis")
#: The read context every query takes, made once the pools exist.
READS: web.AppKey[Reads] = web.AppKey("reads")
READ_STATS: web.AppKey[Stats] = web.AppKey("read_stats")
#: Where the commands write through to (None: ``READ_MODEL_WRITE_THROUGH=false``).
WRITE_THROUGH: web.AppKey[ReadModel | None] = web.AppKey("write_through")
#: ``TRUSTED_PROXIES``, parsed: peers whose forwarding headers (``X-Forwarded-For``, ``-Proto``, ``-Host``) count.
TRUSTED_PROXIES: web.AppKey[frozenset[ipaddress.IPv4Network | ipaddress.IPv6Network]] = web.AppKey("trusted_proxies")
#: The image storage the image and media routes use (an S3 client lives on the app's loop).
STORAGE = web.AppKey("storage", Storage)

#: The OpenAPI document's bytes (built from the route table once per process; the app factory sets it, so the
#: docs handler needs no import of the builder, which reads the route table that names the handler).
OPENAPI_DOCUMENT: web.AppKey[Callable[[], bytes]] = web.AppKey("openapi_document")

REQUEST_ID = web.RequestKey("request_id", str)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
#: A read the rate limiter's gate at the edge let through to it: its client's key (no lease, not refused here).
RATE_GATED = web.RequestKey("rate_gated", str)
