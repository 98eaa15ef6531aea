"""The request counter and latency histogram of one process, as plain integers read at scrape time."""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any, Final

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

#: Seconds: request latencies from a Redis hit (well under a millisecond) to a PostgreSQL timeout.
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUESTS_NAME: Final = "stockroom_http_requests"
REQUESTS_DOC: Final = "HTTP requests answered, by route template, method and status."
LATENCY_NAME: Final = "stockroom_http_request_duration_seconds"
LATENCY_DOC: Final = "Time from the request's headers to the handler's response, by route template and method."


class RequestTally:
    """The request counter and latency histogram of a single process: plain integers, read at scrape time.

    The same series as a prometheus_client ``Counter`` and ``Histogram`` (the scrape cannot tell), without their
    lock, value objects and bucket loop on every request: those cost 1.3 us of a cached read's 30 us (bench/).
    Multiprocess mode needs the library's shared files, so it keeps the library's metrics.
    """

    def __init__(self) -> None:
        #: (route, method, status) -> [its count, its (route, method)'s buckets]: one lookup a request.
        self.series: dict[tuple[str, str, int], list[Any]] = {}
        #: (route, method) -> a count per bucket (the last one +Inf), then the sum of the seconds.
        self.buckets: dict[tuple[str, str], list[float]] = {}

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        entry = self.series.get(key)
        if entry is None:
            b = self.buckets.get((route, method))
            if b is None:
                b = self.buckets[(route, method)] = [0] * (len(LATENCY_BUCKETS) + 2)
            entry = self.series[key] = [0, b]
        entry[0] += 1
        b = entry[1]
        # Prometheus buckets are "less than or equal": the first bound >= seconds.
        b[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        b[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(REQUESTS_NAME, REQUESTS_DOC, labels=["route", "method", "status"])
        for (route, method, status), (n, _) in list(self.series.items()):
            requests.add_metric([route, method, str(status)], n)
        yield requests
        latency = HistogramMetricFamily(LATENCY_NAME, LATENCY_DOC, labels=["route", "method"])
        bounds = [*(str(x) for x in LATENCY_BUCKETS), "+Inf"]
        for (route, method), b in list(self.buckets.items()):
            cumulative = list(itertools.accumulate(b[:-1]))
            latency.add_metric([route, method], list(zip(bounds, cumulative, strict=True)), b[-1])
        yield latency
