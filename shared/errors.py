"""Domain errors: what a command or query refuses, and why (``api.problems`` maps each to one HTTP status)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


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


class Overloaded(ServiceUnavailable):
    """Every PostgreSQL connection of the pool is in use and none came free in time: the service is saturated,
    PostgreSQL is there. The client should retry; readiness stays up. ``reason`` names what ran out."""

    reason = "pg_pool"
