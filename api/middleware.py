"""The edge middleware: request id, metrics and access log, problem+json errors (the one place domain errors
become statuses), authorization and the rate limit, in one layer."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from random import getrandbits
from time import perf_counter

from aiohttp import web
from aiohttp.typedefs import Middleware

from api import auth
from api.http import reject_nul
from api.keys import KEY_CACHE, PG_POOL, PRINCIPAL, REQUEST_ID, SETTINGS
from shared.errors import STATUS, DomainError, ServiceUnavailable, problem
from shared.logs import REQUEST_ID as LOG_REQUEST_ID
from shared.logs import get_logger
from shared.views import dumps

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = get_logger("api")

PROBLEM = "application/problem+json"
#: A client's X-Request-ID is kept if it looks like an id; anything else is replaced (it goes into logs).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def problem_response(status: int, title: str, detail: str, errors=(), headers=None) -> web.Response:  # type: ignore[no-untyped-def]
    return web.Response(
        body=dumps(problem(status, title, detail, errors)),
        status=status,
        content_type=PROBLEM,
        headers=headers,
    )


def edge(record: Callable[[web.Request, int, float], None], rate_limit: Middleware | None = None) -> Middleware:
    """The one middleware layer every request passes, doing in order what four layers did (each layer is a
    coroutine frame and a call per request: together 10-15 % of a cached read's cost, measured in bench/):

    1. request id: the client's ``X-Request-ID`` if it looks like one, else a new one; on the response, in logs;
    2. metrics and the access log (``record``), with the status the client sees (499 when it went away);
    3. errors: domain errors and HTTP errors >= 400 become problem+json, anything else a logged 500;
    4. authorization: the handler's scope (``api.auth.requires``) checked, the principal set;
    5. the rate limit (when on), after authorization: writes count against the API key.
    """

    async def inner(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            reject_nul(request)
            scope = auth.required_scope(request.match_info.handler)
            if scope is None:
                request[PRINCIPAL] = auth.ANONYMOUS
            else:
                app = request.app
                request[PRINCIPAL] = await auth.authenticate(
                    request, app[SETTINGS], app[PG_POOL], app[KEY_CACHE], scope
                )
            if rate_limit is not None:
                return await rate_limit(request, handler)
            return await handler(request)
        except DomainError as exc:
            status, title = STATUS.get(type(exc), (500, "Internal Server Error"))
            headers = dict(exc.headers)
            if isinstance(exc, ServiceUnavailable):
                headers.setdefault("Retry-After", str(request.app[SETTINGS].retry_after_seconds))
                log.warning("dependency_unavailable", detail=str(exc), path=request.path)
            return problem_response(status, title, str(exc), exc.errors, headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
            detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
            return problem_response(exc.status, exc.reason, detail or exc.reason, headers=headers)
        except Exception:
            log.exception("unhandled_error", path=request.path, method=request.method)
            return problem_response(500, "Internal Server Error", "an unexpected error occurred; it was logged")

    @web.middleware
    async def handle(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = request.headers.get("X-Request-ID", "")
        if not rid or not _REQUEST_ID.match(rid):
            # Unique, not secret: the Mersenne Twister (reseeded in every forked worker) costs no system call.
            rid = f"{getrandbits(128):032x}"
        request[REQUEST_ID] = rid
        # One ContextVar set per request (requests on a connection run one after another in its task): cheaper
        # than structlog's bind/unbind, and every log line of the request reads it.
        LOG_REQUEST_ID.set(rid)
        started = perf_counter()
        status = 500
        try:
            response = await inner(request, handler)
            status = response.status
            response.headers["X-Request-ID"] = rid
            return response
        except web.HTTPException as exc:  # redirects (3xx): aiohttp answers them
            status = exc.status
            exc.headers["X-Request-ID"] = rid
            raise
        except asyncio.CancelledError:
            # The client went away before the answer (nginx's 499).
            status = 499
            raise
        finally:
            record(request, status, perf_counter() - started)

    return handle
