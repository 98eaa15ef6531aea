"""The API's Prometheus series in both modes: one process (plain counts read at scrape time) or several
(prometheus_client's multiprocess mode, samples shared through files).

One process: the app's own registry. Several processes (``python -m api --workers N``): prometheus_client's
multiprocess mode. ``api.server`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before it spawns the
children, every child writes its samples to memory-mapped files there, and a scrape answered by any child merges the
files of all of them, so counters and histograms are the sum over the processes and the pool gauges the sum over
the live ones (``livesum``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, Metric

from api.metrics.tally import LATENCY_BUCKETS, LATENCY_DOC, LATENCY_NAME, REQUESTS_DOC, REQUESTS_NAME, RequestTally
from shared.readmodel.read import Stats

#: Set (by ``python -m api --workers N``) to the directory the processes share their samples through.
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess() -> bool:
    """Whether this process shares its samples with others (prometheus_client decided it at import, from the env)."""
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """The API's metrics, registered on a registry of their own (one per app: tests build many apps)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        #: One process: the request series and the cache outcomes are plain integers (RequestTally, and the
        #: the read model's Stats the reads count in), read at scrape time. Several: the library's metrics,
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
        self.overload = Counter(
            "stockroom_overload_total",
            "Requests answered 503 overloaded (not an outage), by what ran out (pg_pool: every PostgreSQL "
            "connection of the pool was in use for the whole wait).",
            ["reason"],
            registry=r,
        )
        self.overload.labels(reason="pg_pool")
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


#: The cache series, stockroom_cache_{name}_total by :class:`shared.readmodel.read.Stats` field, with their help texts.
CACHE_SERIES: Final = {
    "hits": "Reads answered from Redis.",
    "misses": "Reads Redis did not have, answered from PostgreSQL.",
    "errors": "Redis calls that failed (reads fell back to PostgreSQL, fills were skipped).",
}


#: The app's metrics (one per process).
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")


class _StatsCollector:
    """One process: the cache counters are the plain counts of the app's :class:`shared.readmodel.read.Stats`."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        for name, doc in CACHE_SERIES.items():
            yield CounterMetricFamily(f"stockroom_cache_{name}", doc, value=getattr(self._stats, name))


class CountedStats(Stats):
    """:class:`shared.readmodel.read.Stats` whose every increment also increments a Prometheus counter.

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
