"""The edge: request id, metrics and access log, problem+json errors (the one place domain errors become
statuses), authorization and the rate limit, in one layer wrapped around every route's handler."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Awaitable, Callable
from random import getrandbits
from time import perf_counter
from typing import Any, Final, Protocol, cast

from aiohttp import web
from multidict import istr
from yarl import URL

from api import auth, ratelimit
from api.cors import Cors
from api.metrics import METRICS, UNMATCHED
from api.metrics.access import route_of
from api.parsing import reject_nul, reject_undecodable_headers
from api.problems import STATUS, problem_response
from api.state import KEY_CACHE, PG_POOL, PRINCIPAL, REQUEST_ID, SETTINGS
from api.timeouts import BodyDeadline
from shared.errors import DomainError, Overloaded, SchemaNotMigrated, ServiceUnavailable
from shared.logs import REQUEST_ID as LOG_REQUEST_ID
from shared.logs import get_logger
from shared.store.pool import NOT_MIGRATED, SCHEMA_MISSING

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Wrap = Callable[[Handler], Handler]


class Guard(Protocol):
    """The rate limit's check (:func:`api.ratelimit.rate_limit`): the request, and the handler it lets it on to."""

    def __call__(self, request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]: ...


log = get_logger("api")

#: A client's X-Request-ID is kept if it looks like an id; anything else is replaced (it goes into logs).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

#: What the ``Server`` header says: the product, no versions.
SERVER_NAME: Final = "stockroom"
#: On every response the edge makes: no content sniffing (a JSON body is never rendered as HTML), and a
#: ``Server`` that names no versions (aiohttp's own default names Python's and its own).
SAFE_HEADERS: Final[dict[str, str]] = {istr("X-Content-Type-Options"): "nosniff", istr("Server"): SERVER_NAME}
#: The request id's header, as an ``istr`` (see :data:`api.responses.CONTENT_TYPE`).
X_REQUEST_ID: Final[str] = istr("X-Request-ID")


#: The name of the fallback route (:func:`add_fallback`), and its metrics label.
FALLBACK_NAME: Final = UNMATCHED


def edge(
    record: Callable[[str, web.Request, int, float], None],
    rate_limit: Guard | None = None,
    body_timeout: float = 0.0,
    cors: Cors | None = None,
    read_gate: Callable[[web.Request], dict[str, str] | web.StreamResponse | None] | None = None,
) -> Wrap:
    """What every request passes through, wrapped around each route's handler when it is registered:

    1. request id: the client's ``X-Request-ID`` if it looks like one, else a new one; on the response, in logs;
    2. metrics and the access log (``record``), with the status the client sees (499 when it went away);
    3. errors: domain errors and HTTP errors >= 400 become problem+json, anything else a logged 500;
    4. authorization: the handler's scope (``api.auth.requires``) checked, the principal set;
    5. the rate limit (when on), after authorization: writes count against the API key; a read whose client
       has reads granted to this process (``read_gate``: :func:`api.ratelimit.read_gate`) goes straight to its
       handler, with no coroutine of the limiter's around it (the hottest path there is), and one whose client
       is refused in the process is answered 429 there;
    6. a request whose body has not all arrived within ``body_timeout`` seconds is answered 408 and its
       connection closed (:class:`api.timeouts.BodyDeadline`).
    7. CORS (when ``CORS_ORIGINS`` is set): preflights answered before 4. and 5., every other answer marked.

    Not an aiohttp middleware: with any middleware, aiohttp runs two more coroutine layers per request (its own
    ``_fix_request_current_app`` and the middleware's), about 8 % of a cached read's throughput, measured in
    bench/. Requests no route matches reach the fallback route (:func:`add_fallback`), wrapped like the others.
    """

    def wrap(handler: Handler) -> Handler:
        scope = auth.required_scope(handler)
        call: Handler = handler if rate_limit is None else functools.partial(rate_limit, handler=handler)
        #: The metrics label of the route, found on the first request: a wrapped handler serves one route
        #: template (its path with and without the trailing slash, GET and HEAD: api.app), so it never changes.
        route: str | None = None

        async def handle(request: web.Request) -> web.StreamResponse:
            nonlocal route
            rid = request.headers.get(X_REQUEST_ID, "")
            if not rid or not _REQUEST_ID.match(rid):
                # Unique, not secret: the Mersenne Twister (reseeded in every forked worker) costs no system call;
                # its bytes' hex() is the same 32 digits as f"{n:032x}", without a format spec parsed per request.
                rid = getrandbits(128).to_bytes(16).hex()
            request[REQUEST_ID] = rid
            # One ContextVar set per request (requests on a connection run one after another in its task):
            # cheaper than structlog's bind/unbind, and every log line of the request reads it.
            LOG_REQUEST_ID.set(rid)
            started = perf_counter()
            status = 500
            # A body that came in whole with the headers (most do) needs no timer.
            waiting = body_timeout and request.body_exists and not request.content.is_eof()
            deadline = BodyDeadline(request, body_timeout) if waiting else None
            lease: dict[str, str] | None = None
            try:
                try:
                    reject_nul(request)
                    if cors is not None and (preflight := cors.preflight(request)) is not None:
                        status = 204
                        preflight.headers[X_REQUEST_ID] = rid
                        return preflight
                    reject_undecodable_headers(request)
                    if scope is None:
                        request[PRINCIPAL] = auth.ANONYMOUS
                    else:
                        app = request.app
                        request[PRINCIPAL] = await auth.authenticate(
                            request, app[SETTINGS], app[PG_POOL], app[KEY_CACHE], scope, ratelimit.lookup_gate(app)
                        )
                    gate = None if read_gate is None else read_gate(request)
                    if gate is None:
                        response = await call(request)
                    elif type(gate) is dict:
                        lease = gate
                        response = await handler(request)
                    else:
                        response = cast(web.StreamResponse, gate)
                except DomainError as exc:
                    response = _domain_problem(request, exc)
                except web.HTTPException as exc:
                    if exc.status < 400:
                        raise
                    response = _http_problem(exc)
                except ConnectionResetError:
                    if request.transport is not None and not request.transport.is_closing():
                        raise  # the client is still there: not its disconnect (aiohttp logs it, answers 500)
                    response = web.Response(status=499)  # gone mid-body: aiohttp's payload raises this
                except SCHEMA_MISSING:
                    response = _domain_problem(request, SchemaNotMigrated(NOT_MIGRATED))
                except Exception:
                    log.exception("unhandled_error", path=request.path, method=request.method)
                    response = problem_response(
                        500, "Internal Server Error", "an unexpected error occurred; it was logged"
                    )
                status = response.status
                # One update of the answer's headers (each update of a multidict costs about as much as a header).
                if lease is not None and not response.prepared:
                    response.headers.update({**lease, **SAFE_HEADERS, X_REQUEST_ID: rid})
                else:
                    response.headers.update({**SAFE_HEADERS, X_REQUEST_ID: rid})
                if request.transport is None:
                    # The client went away before the answer (nginx's 499): nobody reads it.
                    log.info("client_disconnected", path=request.path, method=request.method, answer=status)
                    status = 499
                if cors is not None:
                    cors.mark(request, response.headers)
                return response
            except web.HTTPException as exc:  # redirects (3xx): aiohttp answers them
                status = exc.status
                exc.headers.update(SAFE_HEADERS)
                exc.headers[X_REQUEST_ID] = rid
                if cors is not None:
                    cors.mark(request, exc.headers)
                raise
            except asyncio.CancelledError:
                if deadline is not None and deadline.expired and (task := asyncio.current_task()) is not None:
                    task.uncancel()
                    status = 408
                    late = problem_response(408, "Request Timeout", f"the body took over {body_timeout:g} s to arrive")
                    late.headers[X_REQUEST_ID] = rid
                    late.force_close()
                    return late
                # The client went away before the answer (nginx's 499).
                status = 499
                raise
            finally:
                if deadline is not None:
                    deadline.cancel()
                if route is None:
                    route = route_of(request)
                record(route, request, status, perf_counter() - started)

        functools.update_wrapper(handle, handler)
        return handle

    return wrap


def unavailable_body(request: web.Request) -> bytes | None:
    """The body an older service's route answers a 503 with, instead of a problem document (its handler's
    ``unavailable_body``: ``/picus``'s ``{"error": "Database not ready"}``), or None."""
    body: bytes | None = getattr(request.match_info.handler, "unavailable_body", None)
    return body


def _domain_problem(request: web.Request, exc: DomainError) -> web.Response:
    status, title = STATUS.get(type(exc), (500, "Internal Server Error"))
    headers = dict(exc.headers)
    if isinstance(exc, ServiceUnavailable):
        headers.setdefault("Retry-After", str(request.app[SETTINGS].retry_after_seconds))
        if isinstance(exc, Overloaded):
            request.app[METRICS].overload.labels(reason=exc.reason).inc()
            log.warning("overloaded", reason=exc.reason, path=request.path)
        else:
            log.warning("dependency_unavailable", detail=str(exc), path=request.path)
        if (legacy := unavailable_body(request)) is not None:
            return web.Response(status=503, body=legacy, content_type="application/json", headers=headers)
    return problem_response(status, title, str(exc), exc.errors, headers)


def _http_problem(exc: web.HTTPException) -> web.Response:
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    return problem_response(exc.status, exc.reason, detail or exc.reason, headers=headers)


class _Everything(web.Resource):
    """A resource that matches every path, one without a leading slash too (``OPTIONS *``). Indexed under "/",
    it is the router's last candidate for any path, so it only gets what no other route takes."""

    def __init__(self) -> None:
        super().__init__(name=FALLBACK_NAME)

    @property
    def canonical(self) -> str:
        return "/"

    def _match(self, path: str) -> dict[str, str]:
        return {}

    def raw_match(self, path: str) -> bool:
        return False

    def get_info(self) -> Any:
        return {"path": "*"}

    def url_for(self) -> URL:  # type: ignore[override]
        raise RuntimeError("the fallback route has no URL")

    def add_prefix(self, prefix: str) -> None:
        raise RuntimeError("the fallback route cannot move under a prefix")


def fallback(wrap: Wrap) -> web.Resource:
    """The fallback route, registered last: after it, no request leaves aiohttp's router unanswered by the edge."""
    resource = _Everything()
    resource.add_route("*", wrap(unmatched))
    return resource


async def unmatched(request: web.Request) -> web.StreamResponse:
    """The fallback route's handler: 405 with ``Allow`` if some route has the path for another method,
    else 404. Only requests that no other route answers come here, so the walk over the routes costs nothing on
    the paths that matter."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.name == FALLBACK_NAME:
            continue
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
    raise web.HTTPNotFound()
