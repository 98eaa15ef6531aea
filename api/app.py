"""``create_app(settings)``: synchronous, no I/O; resources come from cleanup contexts."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web
from redis.backoff import NoBackoff
from redis.retry import Retry

from api import cors, edge, openapi, ratelimit
from api.auth import KeyCache
from api.health import Readiness
from api.http import known_query
from api.keys import (
    FAST_REDIS,
    KEY_CACHE,
    METRICS,
    PG_POOL,
    READ_STATS,
    READINESS,
    READS,
    REDIS,
    REDIS_GET,
    REDIS_RUN,
    SETTINGS,
)
from api.metrics import Metrics, recorder, setup_metrics
from api.queries import Reads
from api.routes import Handler, setup_routes
from migrations.runner import discover
from shared.cursors import Cursors
from shared.db import close_pool, create_pool
from shared.fastredis import FastRedis
from shared.logs import get_logger
from shared.settings import Settings

#: JSON bodies are limited to 1 MiB before parsing (413 beyond).
JSON_MAX_BYTES = 1024 * 1024

log = get_logger("api")


def redis_client(settings: Settings) -> aioredis.Redis:
    """A Redis client for the request path: short timeouts, no retries, so a dead Redis costs milliseconds."""
    return aioredis.from_url(
        settings.redis_url,
        socket_connect_timeout=0.25,
        socket_timeout=0.25,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
    )


async def _postgres(app: web.Application) -> AsyncIterator[None]:
    pool = await create_pool(app[SETTINGS])
    app[PG_POOL] = pool
    try:
        yield
    finally:
        if not await close_pool(pool):
            log.warning("postgres_pool_terminated", detail="PostgreSQL did not answer the close in time")


async def _redis(app: web.Application) -> AsyncIterator[None]:
    client = redis_client(app[SETTINGS])
    app[REDIS] = client
    # The read model's scripts (every read, every write-through) go over one auto-pipelined connection.
    fast = FastRedis(app[SETTINGS].redis_url, timeout=0.25)
    app[FAST_REDIS] = fast
    app[REDIS_RUN] = fast.run_script

    async def get(key: str) -> object:
        return await fast.execute("GET", key)

    app[REDIS_GET] = get
    try:
        yield
    finally:
        fast.close()
        await client.aclose()


async def _readiness(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    schema_version = max((m.version for m in discover()), default=0)
    app[READINESS] = Readiness(app[PG_POOL], app[REDIS], settings.rabbitmq_url, schema_version)
    app[READS] = Reads(
        app[PG_POOL],
        settings.pg_connect_timeout,
        app[REDIS_RUN],
        settings.media_url,
        app[READ_STATS],
        _cursors(settings),
        app[REDIS_GET],
    )
    yield


def _cursors(settings: Settings) -> Cursors:
    if settings.cursor_secret is not None:
        return Cursors(settings.cursor_secret.get_secret_value())
    # ``python -m api`` always has one (shared.settings.with_cursor_secret); an app made otherwise (tests) gets
    # a key of its own, so its cursors are valid for this process only.
    log.warning("cursor_secret_unset", message="CURSOR_SECRET unset: cursors are valid in this process only")
    return Cursors(secrets.token_bytes(32))


def create_app(settings: Settings) -> web.Application:
    metrics = Metrics()
    app = web.Application(client_max_size=JSON_MAX_BYTES)
    edge_wrap = edge.edge(
        recorder(metrics if settings.metrics_enabled else None),
        # After authorization: writes are limited per API key. Left out when off: every call costs.
        ratelimit.rate_limit if settings.rate_limit_enabled else None,
        settings.http_body_timeout,
        cors.from_setting(settings.cors_origins),
    )

    def wrap(handler: Handler) -> Handler:
        known = openapi.query_parameters(handler)
        return edge_wrap(handler if known is None else known_query(handler, known))

    app[SETTINGS] = settings
    app[KEY_CACHE] = KeyCache()
    app[METRICS] = metrics
    app[READ_STATS] = metrics.stats()
    app.cleanup_ctx.extend([_postgres, _redis, _readiness, ratelimit.limiter_context])
    setup_routes(app, wrap)
    setup_metrics(app, wrap)
    edge.add_fallback(app, wrap)
    if settings.auth_disabled:
        log.warning("auth_disabled", message="AUTH_DISABLED=true: writes need no API key. Local development only!")
    return app
