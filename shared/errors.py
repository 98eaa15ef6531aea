"""Domain errors. Each maps to one HTTP status in the API's error middleware, and nowhere else."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FieldError:
    """One field at fault: where (``loc``) and why (``msg``)."""

    loc: Sequence[str | int]
    msg: str


@dataclass
class DomainError(Exception):
    """Base of every error a command or query raises on purpose."""

    detail: str = ""
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.detail or type(self).__name__


class BadRequest(DomainError):
    """Malformed input that is not a validation fault (bad JSON, bad cursor, bad query parameter)."""


class NotFound(DomainError):
    """No such live resource."""


class Conflict(DomainError):
    """The state forbids it: slug taken, category still has products."""


class PreconditionFailed(DomainError):
    """``If-Match`` named another version."""


class ValidationFailed(DomainError):
    """The body is JSON but fails validation; ``errors`` lists every field at fault."""


class PayloadTooLarge(DomainError):
    """The body is over its limit."""


class UnsupportedMediaType(DomainError):
    """The body's type is not one this endpoint takes."""


class Unauthorized(DomainError):
    """A write without a valid API key."""


class Forbidden(DomainError):
    """The API key lacks the scope."""


class TooManyRequests(DomainError):
    """Rate limit exceeded."""


class ServiceUnavailable(DomainError):
    """A dependency (PostgreSQL) is unreachable; the client should retry."""


class SchemaNotMigrated(ServiceUnavailable):
    """PostgreSQL answers, but a table (or column, function) the service needs is not there yet: the migrations
    have not run. Retrying helps once they have (``python -m migrations``)."""


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
}


def problem(status: int, title: str, detail: str, errors: Sequence[FieldError] = ()) -> dict[str, Any]:
    """An RFC 9457 problem document."""
    doc: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        doc["errors"] = [{"loc": list(e.loc), "msg": e.msg} for e in errors]
    return doc
