"""Running the API: one process, or N processes sharing the port (``SO_REUSEPORT``), until SIGTERM or SIGINT."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
from typing import Any, Final

import uvloop
from aiohttp import web, web_response
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import multiprocess

from api import transport
from api.app import create_app
from api.edge import SERVER_NAME
from api.metrics import MULTIPROC_ENV
from shared.logs import configure_logging, get_logger
from shared.settings import Settings

#: Seconds in-flight requests get to finish after SIGTERM, before they are cancelled.
SHUTDOWN_TIMEOUT: Final = 15.0
#: The HTTP parser's limits, stated rather than left to the defaults: the request line and each header line
#: (name and value) at most 8 KiB, at most 128 header lines. Beyond them the request is refused with 431/400
#: before any handler runs.
HTTP_LIMITS: Final[dict[str, Any]] = {"max_line_size": 8190, "max_field_size": 8190, "max_headers": 128}


class ClientFaults(logging.Filter):
    """aiohttp logs a malformed request (a header over the limit) at ERROR with a traceback quoting the request's
    bytes (an Authorization header among them). It is the client's fault: one INFO line with the status instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "malformed_request_refused status=%s", (exc.code,)
            record.exc_info, record.exc_text = None, None
        return True


async def _settle_gc(_: web.Application) -> None:
    """Once started: move what lives as long as the process out of the collector's sight, and collect the
    young generation less often. Request handling allocates fast; default thresholds make frequent pauses
    that show as p99 latency."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


def serve(settings: Settings, host: str, port: int, reuse_port: bool) -> None:
    """Run one API process until SIGINT/SIGTERM.

    On the signal the listening socket is closed first (new connections are refused), idle keep-alive connections
    are closed, requests in flight get ``SHUTDOWN_TIMEOUT`` seconds to finish, and then the pools are closed.
    """
    configure_logging(settings, "api")
    logging.getLogger("aiohttp.server").addFilter(ClientFaults())
    get_logger("api").info("api_starting", host=host, port=port, pid=os.getpid())
    uvloop.install()
    # Answers made in one turn of the loop are sent together at its end (api/transport.py).
    transport.install()
    # The edge names no versions in ``Server``; the responses aiohttp makes itself (a request its parser refuses)
    # take this module default, which would name Python's and aiohttp's.
    web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]
    app = create_app(settings)
    app.on_startup.append(_settle_gc)
    web.run_app(
        app,
        host=host,
        port=port,
        reuse_port=reuse_port,
        access_log=None,
        print=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        handle_signals=True,
        # aiohttp's keep-alive timer is its only one that also runs while request headers trickle in: it is the
        # header timeout (api/timeouts.py). After a 408 for a late body, linger at most a second.
        keepalive_timeout=settings.http_header_timeout,
        lingering_time=1.0,
        **HTTP_LIMITS,
    )
    get_logger("api").info("api_stopped", pid=os.getpid())


def serve_many(settings: Settings, host: str, port: int, workers: int) -> int:
    """``workers`` processes (spawned, not forked) serving one port; SIGTERM and SIGINT are passed on to them.

    Their Prometheus samples go through a fresh directory (prometheus_client's multiprocess mode), so a scrape
    answered by any of them reports the sum over all; it is removed when they have all exited.
    """
    metrics_dir = tempfile.mkdtemp(prefix="stockroom-metrics-")
    # Inherited by the children, which import prometheus_client afresh (spawn) and so write to the directory.
    os.environ[MULTIPROC_ENV] = metrics_dir
    try:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=serve, args=(settings, host, port, True), daemon=False) for _ in range(workers)]
        for p in procs:
            p.start()

        def forward(signum: int, _frame: object) -> None:
            for p in procs:
                if p.pid is not None and p.is_alive():
                    os.kill(p.pid, signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        codes = []
        for p in procs:
            p.join()
            codes.append(p.exitcode or 0)
            if p.pid is not None:
                # Its live gauges (pool use) no longer count; its counters still do.
                multiprocess.mark_process_dead(p.pid, metrics_dir)  # type: ignore[no-untyped-call]
        return max(codes, default=0)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
