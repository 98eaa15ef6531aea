"""HTTP problems: each domain error's status and title, and the RFC 9457 ``application/problem+json`` answer."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiohttp import web

from shared.errors import (
    BadRequest,
    Conflict,
    DomainError,
    FieldError,
    Forbidden,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PreconditionFailed,
    SchemaNotMigrated,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from shared.readmodel.render import dumps

PROBLEM: Final = "application/problem+json"

#: Domain error class -> (HTTP status, problem title).
STATUS: dict[type[DomainError], tuple[int, str]] = {
    BadRequest: (400, "Bad Request"),
    Unauthorized: (401, "Unauthorized"),
    Forbidden: (403, "Forbidden"),
    NotFound: (404, "Not Found"),
    Conflict: (409, "Conflict"),
    PreconditionFailed: (412, "Precondition Failed"),
    PayloadTooLarge: (413, "Payload Too Large"),
    UnsupportedMediaType: (415, "Unsupported Media Type"),
    ValidationFailed: (422, "Unprocessable Content"),
    TooManyRequests: (429, "Too Many Requests"),
    ServiceUnavailable: (503, "Service Unavailable"),
    SchemaNotMigrated: (503, "Service Unavailable"),
    Overloaded: (503, "Service Unavailable"),
}


def problem(status: int, title: str, detail: str, errors: Sequence[FieldError] = ()) -> dict[str, Any]:
    """An RFC 9457 problem document."""
    doc: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        doc["errors"] = [{"loc": list(e.loc), "msg": e.msg} for e in errors]
    return doc


def problem_response(
    status: int,
    title: str,
    detail: str,
    errors: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    # A plain Content-Type header: cheaper than aiohttp's content_type machinery (a refusal must stay cheap).
    return web.Response(
        body=dumps(problem(status, title, detail, errors)) if errors else _body(status, title, detail),
        status=status,
        headers={**(headers or {}), "Content-Type": PROBLEM},
    )


@functools.lru_cache(maxsize=1024)
def _body(status: int, title: str, detail: str) -> bytes:
    """A problem document without field errors, made once: a flood of the same refusal (401 for a key nobody
    issued, 405) costs no JSON encoding per request."""
    return dumps(problem(status, title, detail))
