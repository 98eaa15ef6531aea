"""Prometheus metrics of the API (``GET /metrics``) and the access log, both recorded by the edge
(:func:`api.edge.edge`).

One process: the app's own registry. Several processes (``python -m api --workers N``): prometheus_client's
multiprocess mode. ``api.server`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before it spawns the
children, every child writes its samples to memory-mapped files there, and a scrape answered by any child merges the
files of all of them, so counters and histograms are the sum over the processes and the pool gauges the sum over
the live ones (``livesum``). The outbox numbers are read from PostgreSQL at scrape time, once, by whichever process
answers the scrape.

Routes are labelled by their template (``/api/products/{slug}``), never by the raw path, so a scanner cannot blow up
the number of series.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Final

import asyncpg
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from api.state import PG_POOL, REDIS, SETTINGS
from shared.logs import get_logger
from shared.readmodel.read import Stats

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = get_logger("api.access")

#: Set (by ``python -m api --workers N``) to the directory the processes share their samples through.
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
#: Seconds: request latencies from a Redis hit (well under a millisecond) to a PostgreSQL timeout.
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUESTS_NAME: Final = "stockroom_http_requests"
REQUESTS_DOC: Final = "HTTP requests answered, by route template, method and status."
LATENCY_NAME: Final = "stockroom_http_request_duration_seconds"
LATENCY_DOC: Final = "Time from the request's headers to the handler's response, by route template and method."
#: Methods labelled as themselves; any other becomes ``other`` (a client cannot invent label values).
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The label of a request that matched no route (404, 405).
UNMATCHED: Final = "unmatched"
#: A scrape never waits longer than this on PostgreSQL for the outbox numbers (they are left out instead).
OUTBOX_QUERY_TIMEOUT: Final = 1.0
#: Multiprocess mode: each process refreshes its pool gauges this often (seconds).
POOL_REFRESH_INTERVAL: Final = 1.0

#: The partial index on unsent rows makes this cheap.
OUTBOX_SQL: Final = """SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS age
FROM outbox WHERE sent_at IS NULL"""

MAIN_APP: Final = web.AppKey("main_app", web.Application)


def multiprocess() -> bool:
    """Whether this process shares its samples with others (prometheus_client decided it at import, from the env)."""
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """The API's metrics, registered on a registry of their own (one per app: tests build many apps)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        #: One process: the request series and the cache outcomes are plain integers (RequestTally, and the
        #: :class:`api.queries.Stats` the reads count in), read at scrape time. Several: the library's metrics,
        #: whose samples every process writes to the shared files as they happen (a scrape merges them).
        self.tally: RequestTally | None = None
        self.requests: Counter | None = None
        self.latency: Histogram | None = None
        self._stats: Stats
        if multiprocess():
            self.requests = Counter(REQUESTS_NAME, REQUESTS_DOC, ["route", "method", "status"], registry=r)
            self.latency = Histogram(
                LATENCY_NAME, LATENCY_DOC, ["route", "method"], buckets=LATENCY_BUCKETS, registry=r
            )
            self._stats = CountedStats(
                {name: Counter(f"stockroom_cache_{name}_total", doc, registry=r) for name, doc in CACHE_SERIES.items()}
            )
        else:
            self.tally = RequestTally()
            r.register(self.tally)
            self._stats = Stats()
            r.register(_StatsCollector(self._stats))
        self.rate_limited = Counter(
            "stockroom_rate_limited_total",
            "Requests refused with 429, by scope (read or write).",
            ["scope"],
            registry=r,
        )
        self.rate_limit_fail_open = Counter(
            "stockroom_rate_limit_fail_open_total",
            "Requests let through unchecked because Redis could not be asked (the limiter fails open).",
            registry=r,
        )
        self.pg_pool = Gauge(
            "stockroom_pg_pool_connections",
            "PostgreSQL pool connections by state (in_use, idle) and the pool's maximum (max).",
            ["state"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.redis_pool = Gauge(
            "stockroom_redis_pool_connections",
            "Redis pool connections by state (in_use, idle) and the pool's maximum (max).",
            ["state"],
            multiprocess_mode="livesum",
            registry=r,
        )
        if not multiprocess():
            # In multiprocess mode, per-process CPU and memory series cannot be summed; leave them out.
            ProcessCollector(registry=r)

    def stats(self) -> Stats:
        """Cache outcome counts for :mod:`api.queries`: what they count is what the scrape shows."""
        return self._stats

    def refresh_pools(self, app: web.Application) -> None:
        """Set the pool gauges from this process's pools."""
        pool = app.get(PG_POOL)
        if pool is not None:
            size, idle = pool.get_size(), pool.get_idle_size()
            self.pg_pool.labels("in_use").set(size - idle)
            self.pg_pool.labels("idle").set(idle)
            self.pg_pool.labels("max").set(pool.get_max_size())
        client = app.get(REDIS)
        if client is not None:
            rpool = client.connection_pool
            # redis-py keeps no public count of the connections handed out.
            in_use = len(getattr(rpool, "_in_use_connections", ()))
            self.redis_pool.labels("in_use").set(in_use)
            self.redis_pool.labels("idle").set(len(getattr(rpool, "_available_connections", ())))
            self.redis_pool.labels("max").set(rpool.max_connections)


#: The app's metrics (one per process).
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")


class RequestTally:
    """The request counter and latency histogram of a single process: plain integers, read at scrape time.

    The same series as a prometheus_client ``Counter`` and ``Histogram`` (the scrape cannot tell), without their
    lock, value objects and bucket loop on every request: those cost 1.3 us of a cached read's 30 us (bench/).
    Multiprocess mode needs the library's shared files, so it keeps the library's metrics.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}
        #: (route, method) -> a count per bucket (the last one +Inf), then the sum of the seconds.
        self.buckets: dict[tuple[str, str], list[float]] = {}

    def record(self, route: str, method: str, status: str, seconds: float) -> None:
        key = (route, method, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        b = self.buckets.get((route, method))
        if b is None:
            b = self.buckets[(route, method)] = [0] * (len(LATENCY_BUCKETS) + 2)
        # Prometheus buckets are "less than or equal": the first bound >= seconds.
        b[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        b[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(REQUESTS_NAME, REQUESTS_DOC, labels=["route", "method", "status"])
        for key, n in list(self.counts.items()):
            requests.add_metric(list(key), n)
        yield requests
        latency = HistogramMetricFamily(LATENCY_NAME, LATENCY_DOC, labels=["route", "method"])
        bounds = [*(str(x) for x in LATENCY_BUCKETS), "+Inf"]
        for (route, method), b in list(self.buckets.items()):
            cumulative = list(itertools.accumulate(b[:-1]))
            latency.add_metric([route, method], list(zip(bounds, cumulative, strict=True)), b[-1])
        yield latency


#: The cache series, stockroom_cache_{name}_total by :class:`api.queries.Stats` field, with their help texts.
CACHE_SERIES: Final = {
    "hits": "Reads answered from Redis.",
    "misses": "Reads Redis did not have, answered from PostgreSQL.",
    "errors": "Redis calls that failed (reads fell back to PostgreSQL, fills were skipped).",
}


class _StatsCollector:
    """One process: the cache counters are the plain counts of the app's :class:`api.queries.Stats`."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        for name, doc in CACHE_SERIES.items():
            yield CounterMetricFamily(f"stockroom_cache_{name}", doc, value=getattr(self._stats, name))


class CountedStats(Stats):
    """:class:`api.queries.Stats` whose every increment also increments a Prometheus counter.

    A collector reading ``Stats`` at scrape time would only see the process that answers the scrape; counters
    written as they happen are summed over every process in multiprocess mode.
    """

    def __init__(self, counters: dict[str, Counter]) -> None:
        self._counters = counters
        self._counts = {"hits": 0, "misses": 0, "errors": 0}
        super().__init__()

    def _set(self, name: str, value: int) -> None:
        delta = value - self._counts[name]
        if delta > 0:
            self._counters[name].inc(delta)
        self._counts[name] = value

    @property
    def hits(self) -> int:
        return self._counts["hits"]

    @hits.setter
    def hits(self, value: int) -> None:
        self._set("hits", value)

    @property
    def misses(self) -> int:
        return self._counts["misses"]

    @misses.setter
    def misses(self, value: int) -> None:
        self._set("misses", value)

    @property
    def errors(self) -> int:
        return self._counts["errors"]

    @errors.setter
    def errors(self, value: int) -> None:
        self._set("errors", value)


# -- the access log and request metrics -----------------------------------------------------------------------------


def route_of(request: web.Request) -> str:
    """The template of the route ``request`` matched (``/api/products/{slug}``), without its trailing slash."""
    resource = request.match_info.route.resource
    if resource is None or resource.name == UNMATCHED:  # the fallback route (api.edge.FALLBACK_NAME)
        return UNMATCHED
    return resource.canonical.rstrip("/") or "/"


#: Access lines of client errors (4xx) written per second and process, at most; the rest of that second's are
#: counted and reported in one ``request_lines_suppressed`` line. A flood of refusals (429, 401, 404) then costs
#: no log line per request (a line costs more than serving a cached read), and every request is still counted in
#: the metrics.
CLIENT_ERROR_LINES_PER_SECOND: Final = 20


class _LineBudget:
    """How many 4xx access lines the current second may still have, and how many it left out."""

    __slots__ = ("left_out", "second", "used")

    def __init__(self) -> None:
        self.second, self.used, self.left_out = 0, 0, 0

    def take(self) -> bool:
        now = int(time.monotonic())
        if now != self.second:
            if self.left_out:
                log.info("request_lines_suppressed", count=self.left_out, per_second=CLIENT_ERROR_LINES_PER_SECOND)
            self.second, self.used, self.left_out = now, 0, 0
        if self.used < CLIENT_ERROR_LINES_PER_SECOND:
            self.used += 1
            return True
        self.left_out += 1
        return False


def recorder(metrics: Metrics | None) -> Callable[[web.Request, int, float], None]:
    """``record(request, status, seconds)``: count and time one answered request (when ``metrics`` is given) and
    write its access log line. Called by the edge (``api.edge.edge``) for every request.

    The access log line is at INFO for writes, 4xx and 5xx and at DEBUG for the rest: an access log at INFO costs
    half the read throughput. 4xx lines beyond :data:`CLIENT_ERROR_LINES_PER_SECOND` are summed up once a second.
    It carries the request id (set by the edge before the handler runs).
    """

    # Multiprocess mode: labelled children looked up once per (route, method, status), not on every request.
    counters: dict[tuple[str, str, str], Any] = {}
    timers: dict[tuple[str, str], Any] = {}
    root = logging.getLogger()
    tally = metrics.tally if metrics is not None else None
    requests = metrics.requests if metrics is not None else None
    latency = metrics.latency if metrics is not None else None
    budget = _LineBudget()

    def record(request: web.Request, status: int, elapsed: float) -> None:
        route = route_of(request)
        method = request.method if request.method in METHODS else "other"
        if tally is not None:
            tally.record(route, method, str(status), elapsed)
        elif requests is not None and latency is not None:
            key = (route, method, str(status))
            counter = counters.get(key)
            if counter is None:
                counter = counters[key] = requests.labels(*key)
            counter.inc()
            timer = timers.get(key[:2])
            if timer is None:
                timer = timers[key[:2]] = latency.labels(route, method)
            timer.observe(elapsed)
        # Writes and failures at INFO (a write's line starts its event's trail); reads at DEBUG.
        loud = status >= 400 or method not in ("GET", "HEAD")
        if loud and 400 <= status < 500 and not budget.take():
            return
        if loud or root.isEnabledFor(logging.DEBUG):
            (log.info if loud else log.debug)(
                "request",
                method=method,
                route=route,
                path=request.path,
                status=status,
                ms=round(elapsed * 1000, 2),
            )

    return record


# -- the scrape ----------------------------------------------------------------------------------------------------


class _Outbox:
    """The outbox numbers read for one scrape."""

    def __init__(self, backlog: int, age: float) -> None:
        self._backlog, self._age = backlog, age

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("stockroom_outbox_backlog", "Outbox rows not yet sent.", value=self._backlog)
        yield GaugeMetricFamily(
            "stockroom_outbox_oldest_unsent_age_seconds",
            "Age of the oldest unsent outbox row (0 when there is none).",
            value=self._age,
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
            row = await conn.fetchrow(OUTBOX_SQL)
    except Exception as exc:
        log.debug("outbox_metrics_unavailable", error=type(exc).__name__)
        return None
    assert row is not None
    return _Outbox(int(row["n"]), max(0.0, float(row["age"])))


async def scrape(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text format."""
    app = request.app.get(MAIN_APP, request.app)
    metrics = app[METRICS]
    metrics.refresh_pools(app)
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


# -- wiring ----------------------------------------------------------------------------------------------------------


async def _refresh_pools(app: web.Application, metrics: Metrics) -> None:
    while True:
        await asyncio.sleep(POOL_REFRESH_INTERVAL)
        metrics.refresh_pools(app)


async def _internal_site(app: web.Application) -> AsyncIterator[None]:
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


async def _pool_gauges(app: web.Application) -> AsyncIterator[None]:
    """Multiprocess mode: a scrape reads every process's pool gauges from the files, so each keeps its own fresh."""
    task = asyncio.create_task(_refresh_pools(app, app[METRICS]))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def setup_metrics(app: web.Application, wrap: Callable[[Handler], Handler]) -> None:
    """Serve ``/metrics`` on the main port, or on ``internal_port`` only, or not at all (``metrics_enabled``).

    Call after the cleanup contexts that make the pools: the scrape reads them.
    """
    settings = app[SETTINGS]
    if not settings.metrics_enabled:
        return
    if multiprocess():
        app.cleanup_ctx.append(_pool_gauges)
    if settings.internal_port:
        app.cleanup_ctx.append(_internal_site)
    else:
        wrapped = wrap(scrape)
        app.router.add_get("/metrics", wrapped)
        app.router.add_get("/metrics/", wrapped)
