"""The access log and the request series, recorded by the edge for every answered request.

Routes are labelled by their template (``/api/products/{slug}``), never by the raw path, so a scanner cannot blow up
the number of series.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from api.metrics.series import Metrics
from shared.logs import get_logger

log = get_logger("api.access")

#: Methods labelled as themselves; any other becomes ``other`` (a client cannot invent label values).
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The label of a request that matched no route (404, 405).
UNMATCHED: Final = "unmatched"


def route_of(request: web.Request) -> str:
    """The template of the route ``request`` matched (``/api/products/{slug}``), without its trailing slash."""
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else _label(resource)


@functools.lru_cache(maxsize=4096)
def _label(resource: web.AbstractResource) -> str:
    """A resource's label, made once: resources hash by identity and live as long as their app."""
    if resource.name == UNMATCHED:  # the fallback route (api.edge.FALLBACK_NAME)
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


def recorder(metrics: Metrics | None) -> Callable[[str, web.Request, int, float], None]:
    """``record(route, request, status, seconds)``: count and time one answered request (when ``metrics`` is given) and
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

    def record(route: str, request: web.Request, status: int, elapsed: float) -> None:
        method = request.method if request.method in METHODS else "other"
        if tally is not None:
            tally.record(route, method, status, elapsed)
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
