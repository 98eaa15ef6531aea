"""The single-process request series are plain integers; a scrape must not tell them from the library's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from api.metrics.tally import LATENCY_BUCKETS, LATENCY_DOC, LATENCY_NAME, REQUESTS_DOC, REQUESTS_NAME, RequestTally

# Bounds exactly (a bucket is "less than or equal"), between them, below the first and past the last.
REQUESTS = [
    ("/api/products/{slug}", "GET", 200, 0.0005),
    ("/api/products/{slug}", "GET", 200, 0.0004),
    ("/api/products/{slug}", "GET", 404, 0.001),
    ("/api/products/{slug}", "GET", 200, 0.0011),
    ("/api/products", "POST", 201, 0.03),
    ("/api/products", "POST", 422, 10.0),
    ("unmatched", "GET", 404, 12.5),
]


def _lines(text: bytes) -> list[str]:
    # The library adds a _created sample per series; a scraper needs none.
    return sorted(line for line in text.decode().splitlines() if "_created" not in line)


def test_tally_exposes_what_a_prometheus_counter_and_histogram_would() -> None:
    # Given the library's counter and histogram, and a tally, fed the same requests
    library = CollectorRegistry()
    counter = Counter(REQUESTS_NAME, REQUESTS_DOC, ["route", "method", "status"], registry=library)
    histogram = Histogram(LATENCY_NAME, LATENCY_DOC, ["route", "method"], buckets=LATENCY_BUCKETS, registry=library)
    ours = CollectorRegistry()
    tally = RequestTally()
    ours.register(tally)
    for route, method, status, seconds in REQUESTS:
        counter.labels(route, method, str(status)).inc()
        histogram.labels(route, method).observe(seconds)
        tally.record(route, method, status, seconds)
    # Then the scrapes are the same, line for line
    assert _lines(generate_latest(ours)) == _lines(generate_latest(library))


def test_an_empty_tally_exposes_no_series() -> None:
    ours = CollectorRegistry()
    ours.register(RequestTally())
    assert "{" not in generate_latest(ours).decode()
