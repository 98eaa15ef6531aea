"""Middleware: request id, problem+json errors (the one place domain errors become statuses), auth."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

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


@web.middleware
async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request.headers.get("X-Request-ID", "")
    if not rid or not _REQUEST_ID.match(rid):
        rid = os.urandom(16).hex()
    request[REQUEST_ID] = rid
    # One ContextVar set per request (requests on a connection run one after another in its task): cheaper than
    # structlog's bind/unbind, and every log line of the request reads it.
    LOG_REQUEST_ID.set(rid)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-ID"] = rid
        raise
    response.headers["X-Request-ID"] = rid
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        reject_nul(request)
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
async def authorization(request: web.Request, handler: Handler) -> web.StreamResponse:
    scope = auth.required_scope(request.match_info.handler)
    if scope is None:
        request[PRINCIPAL] = auth.ANONYMOUS
    else:
        app = request.app
        request[PRINCIPAL] = await auth.authenticate(request, app[SETTINGS], app[PG_POOL], app[KEY_CACHE], scope)
    return await handler(request)
