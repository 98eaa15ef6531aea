"""``create_app(settings)``: the app factory, synchronous, no I/O. Every route (the URL table, ``/metrics``, the
fallback) and every cleanup context (the resources) is registered here."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable

import redis.asyncio as aioredis
from aiohttp import web
from redis.backoff import NoBackoff
from redis.retry import Retry

from api import cors, edge, openapi, ratelimit
from api.auth import KeyCache
from api.commands import ReadModel
from api.health import Readiness
from api.metrics import METRICS, Metrics, recorder, scrape
from api.metrics.series import multiprocess
from api.parsing import known_query
from api.queries import Reads
from api.routes import ROUTES, Handler
from api.state import (
    FAST_REDIS,
    KEY_CACHE,
    OPENAPI_DOCUMENT,
    PG_POOL,
    READ_STATS,
    READINESS,
    READS,
    REDIS,
    SETTINGS,
    STORAGE,
    TRUSTED_PROXIES,
    WRITE_THROUGH,
)
from migrations.runner import discover
from shared.cursors import Cursors
from shared.logs import get_logger
from shared.readmodel.client import FastRedis
from shared.readmodel.debts import Guard
from shared.settings import Settings
from shared.storage import open_storage
from shared.store.pool import close_pool, create_pool

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
    # Readiness alone uses redis-py: its PING may wait out a slow Redis without stalling the hot path.
    client = redis_client(app[SETTINGS])
    app[REDIS] = client
    # Every read, write-through and rate-limit check goes over one auto-pipelined connection.
    fast = FastRedis(app[SETTINGS].redis_url, timeout=0.25)
    app[FAST_REDIS] = fast
    try:
        yield
    finally:
        fast.close()
        await client.aclose()


async def _readiness(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    schema_version = max((m.version for m in discover()), default=0)
    app[READINESS] = Readiness(app[PG_POOL], app[REDIS], settings.rabbitmq_url, schema_version)
    # One read-your-writes guard per process over its Redis connection: reads and writes-through share it.
    guard = Guard(app[FAST_REDIS], app[PG_POOL], settings.pg_connect_timeout, settings.media_url)
    app[READS] = Reads(
        app[PG_POOL],
        settings.pg_connect_timeout,
        app[FAST_REDIS],
        settings.media_url,
        app[READ_STATS],
        _cursors(settings),
        guard,
    )
    write_through = settings.read_model_write_through
    app[WRITE_THROUGH] = ReadModel(app[FAST_REDIS], app[READ_STATS], guard) if write_through else None
    yield


async def _storage(app: web.Application) -> AsyncIterator[None]:
    """The app's image storage (an S3 client is opened on the app's loop and closed)."""
    async with open_storage(app[SETTINGS]) as storage:
        app[STORAGE] = storage
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
        ratelimit.read_gate if settings.rate_limit_enabled else None,
    )

    def wrap(handler: Handler) -> Handler:
        known = openapi.query_parameters(handler)
        return edge_wrap(handler if known is None else known_query(handler, known))

    app[SETTINGS] = settings
    app[TRUSTED_PROXIES] = ratelimit.trusted_networks(settings.trusted_proxies)
    document: Callable[[], bytes] = openapi.document_bytes
    app[OPENAPI_DOCUMENT] = document
    app[KEY_CACHE] = KeyCache()
    app[METRICS] = metrics
    app[READ_STATS] = metrics.stats()
    app.cleanup_ctx.extend([_postgres, _redis, _readiness, ratelimit.limiter_context, _storage])
    # One resource per path (and one for it with a trailing slash), holding every method of that path: the router
    # tries a path's resources one by one, so one resource per (method, path) made a read of a product try six
    # others first (measured in bench/).
    resources: dict[str, web.Resource] = {}
    for method, path, handler in ROUTES:
        wrapped = wrap(handler)
        for variant in (path, path + "/"):
            if (resource := resources.get(variant)) is None:
                resource = resources[variant] = app.router.add_resource(variant)
            # HEAD runs the GET handler; aiohttp sends its status and headers (Content-Length too), never the body.
            for verb in ("GET", "HEAD") if method == "GET" else (method,):
                resource.add_route(verb, wrapped)
    if settings.metrics_enabled:
        # /metrics on the main port, or on internal_port only (a site of its own); the pools must exist first.
        if multiprocess():
            app.cleanup_ctx.append(scrape.pool_gauges)
        if settings.internal_port:
            app.cleanup_ctx.append(scrape.internal_site)
        else:
            scrape_handler = wrap(scrape.scrape)
            app.router.add_get("/metrics", scrape_handler)
            app.router.add_get("/metrics/", scrape_handler)
    app.router.register_resource(edge.fallback(wrap))
    if settings.auth_disabled:
        log.warning("auth_disabled", message="AUTH_DISABLED=true: writes need no API key. Local development only!")
    return app
