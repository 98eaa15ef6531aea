"""``GET /metrics``: the scrape handler (this process's or every process's series, and the outbox backlog read
from PostgreSQL once per scrape), the internal port's site and the pool gauges."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Final, cast

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from api.metrics.series import METRICS, Metrics, multiprocess
from api.state import PG_POOL, REDIS, SETTINGS
from shared.logs import get_logger
from shared.store import outbox

log = get_logger("api.access")

#: A scrape never waits longer than this on PostgreSQL for the outbox numbers (they are left out instead).
OUTBOX_QUERY_TIMEOUT: Final = 1.0
#: Multiprocess mode: each process refreshes its pool gauges this often (seconds).
POOL_REFRESH_INTERVAL: Final = 1.0

MAIN_APP: Final = web.AppKey("main_app", web.Application)


def refresh_pools(metrics: Metrics, app: web.Application) -> None:
    """Set the pool gauges from this process's pools."""
    pool = app.get(PG_POOL)
    if pool is not None:
        size, idle = pool.get_size(), pool.get_idle_size()
        metrics.pg_pool.labels("in_use").set(size - idle)
        metrics.pg_pool.labels("idle").set(idle)
        metrics.pg_pool.labels("max").set(pool.get_max_size())
    client = app.get(REDIS)
    if client is not None:
        rpool = client.connection_pool
        # redis-py keeps no public count of the connections handed out.
        in_use = len(getattr(rpool, "_in_use_connections", ()))
        metrics.redis_pool.labels("in_use").set(in_use)
        metrics.redis_pool.labels("idle").set(len(getattr(rpool, "_available_connections", ())))
        metrics.redis_pool.labels("max").set(rpool.max_connections)


class _Outbox:
    """The outbox numbers read for one scrape."""

    def __init__(self, figures: outbox.Backlog) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("stockroom_outbox_backlog", "Outbox rows not yet sent.", value=self._figures.count)
        yield GaugeMetricFamily(
            "stockroom_outbox_oldest_unsent_age_seconds",
            "Age of the oldest unsent outbox row (0 when there is none).",
            value=self._figures.oldest_age,
        )


class _Chain:
    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for c in self._collectors:
            yield from c.collect()


async def outbox_numbers(pool: asyncpg.Pool) -> _Outbox | None:
    """Backlog and oldest-unsent age, or None when PostgreSQL does not answer in time."""
    try:
        async with asyncio.timeout(OUTBOX_QUERY_TIMEOUT), pool.acquire() as conn:
            figures = await outbox.backlog(cast(asyncpg.Connection, conn))
    except Exception as exc:
        log.debug("outbox_metrics_unavailable", error=type(exc).__name__)
        return None
    return _Outbox(figures)


async def scrape(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text format."""
    app = request.app.get(MAIN_APP, request.app)
    metrics = app[METRICS]
    refresh_pools(metrics, app)
    collectors: list[Collector] = []
    if multiprocess():
        collectors.append(MultiProcessCollector(None))  # type: ignore[no-untyped-call]
    else:
        collectors.append(metrics.registry)
    outbox = await outbox_numbers(app[PG_POOL])
    if outbox is not None:
        collectors.append(outbox)
    body = generate_latest(_Chain(collectors))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- cleanup contexts (registered by the app factory, api.app) ---------------------------------------------------


async def _refresh_pools(app: web.Application, metrics: Metrics) -> None:
    while True:
        await asyncio.sleep(POOL_REFRESH_INTERVAL)
        refresh_pools(metrics, app)


async def internal_site(app: web.Application) -> AsyncIterator[None]:
    """``/metrics`` on ``internal_port`` only, served by a small app of its own beside the main one."""
    settings = app[SETTINGS]
    internal = web.Application()
    internal[MAIN_APP] = app
    internal.router.add_get("/metrics", scrape)
    runner = web.AppRunner(internal, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.internal_host, settings.internal_port, reuse_port=multiprocess())
    await site.start()
    log.info("internal_port_listening", host=settings.internal_host, port=settings.internal_port)
    try:
        yield
    finally:
        await runner.cleanup()


async def pool_gauges(app: web.Application) -> AsyncIterator[None]:
    """Multiprocess mode: a scrape reads every process's pool gauges from the files, so each keeps its own fresh."""
    task = asyncio.create_task(_refresh_pools(app, app[METRICS]))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
