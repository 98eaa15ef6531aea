"""API keys: ``Authorization: Bearer <key>`` on writes, scopes ``write`` and ``admin`` (admin includes write)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeVar

import asyncpg
from aiohttp import web

from shared.errors import Forbidden, Unauthorized
from shared.settings import Settings
from shared.store import apikeys
from shared.store.pool import connection

H = TypeVar("H", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])

#: Scope -> scopes it grants.
GRANTS: Final = {"admin": frozenset({"admin", "write"}), "write": frozenset({"write"})}
#: A verified key is trusted this long before PostgreSQL is asked again (revocation takes effect within it).
KEY_TTL_SECONDS = 10.0
#: A key PostgreSQL did not know is refused this long without asking again: a client stuck on a wrong or revoked
#: key costs one lookup per interval, not one per request. (A new key is random: nobody sends it before it exists.)
REJECTED_TTL_SECONDS = 10.0
#: Keys remembered per process, verified and rejected each: beyond it the least recently used one is forgotten,
#: never the whole cache at once (a flood of random keys would otherwise send every real key back to PostgreSQL).
KEY_CACHE_SIZE = 10_000
_ATTR = "required_scope"


@dataclass(frozen=True)
class Principal:
    """Who makes a request: ``owner`` scopes idempotency keys; ``scope`` is what the key may do.

    ``expires_at`` is set on a key rotated out (``keys rotate``): the cache must not outlive its grace period.
    """

    owner: str
    scope: str
    expires_at: datetime | None = None

    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= datetime.now(UTC)


ANONYMOUS = Principal("anonymous", "")
DEV = Principal("auth-disabled", "admin")


def requires(scope: str) -> Callable[[H], H]:
    """Mark a handler as needing ``scope``; the edge (:func:`api.edge.edge`) enforces it."""

    def mark(handler: H) -> H:
        setattr(handler, _ATTR, scope)
        return handler

    return mark


def required_scope(handler: object) -> str | None:
    scope = getattr(handler, _ATTR, None)
    return scope if isinstance(scope, str) else None


class KeyCache:
    """Verified keys by SHA-256, each with the time it expires from this cache; and recently rejected ones.

    Both are bounded by ``size``, least recently used first out. ``lookups`` counts the keys asked of PostgreSQL.
    """

    def __init__(self, size: int = KEY_CACHE_SIZE) -> None:
        self.size = size
        self.lookups = 0
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._rejected: OrderedDict[str, float] = OrderedDict()

    def get(self, digest: str) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return None
        self._entries.move_to_end(digest)
        return entry[1]

    def known(self, digest: str) -> bool:
        """Whether this key was verified here before (its entry may have expired): re-verifying it passes no
        lookup gate, only keys never seen do."""
        return digest in self._entries

    def put(self, digest: str, principal: Principal) -> None:
        self._entries[digest] = (time.monotonic() + KEY_TTL_SECONDS, principal)
        self._entries.move_to_end(digest)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def rejected(self, digest: str) -> bool:
        """Whether PostgreSQL refused this key within the last ``REJECTED_TTL_SECONDS``."""
        until = self._rejected.get(digest)
        return until is not None and until >= time.monotonic()

    def reject(self, digest: str) -> None:
        self._rejected[digest] = time.monotonic() + REJECTED_TTL_SECONDS
        self._rejected.move_to_end(digest)
        if len(self._rejected) > self.size:
            self._rejected.popitem(last=False)


#: Called before a key unknown to this process is looked up in PostgreSQL; raises to refuse (the rate limit of
#: key lookups per client address, :meth:`api.ratelimit.RateLimiter.admit_lookup`).
LookupGate = Callable[[web.Request], Awaitable[None]]


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authenticate(
    request: web.Request,
    settings: Settings,
    pool: asyncpg.Pool,
    cache: KeyCache,
    scope: str,
    gate: LookupGate | None = None,
) -> Principal:
    """The principal behind the request's key, which must grant ``scope``; 401 or 403 otherwise.

    A key this process has never verified passes ``gate`` first (429 there), so a flood of random keys from one
    address stops at its limit without reaching PostgreSQL.
    """
    if settings.auth_disabled:
        return DEV
    key = bearer(request)
    if key is None:
        raise Unauthorized(
            "this request needs an API key: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal: Principal | None = None
    boot = settings.bootstrap_api_key
    if boot and hmac.compare_digest(key.encode(), boot.encode()):
        principal = Principal("bootstrap", "admin")
    else:
        digest = hashlib.sha256(key.encode()).hexdigest()
        principal = cache.get(digest)
        if principal is not None and principal.expired():
            principal = None  # a rotated-out key whose grace period ended while it was cached: ask again
        if principal is None and not cache.rejected(digest):
            if gate is not None and not cache.known(digest):
                await gate(request)
            cache.lookups += 1
            async with connection(pool, settings.pg_connect_timeout) as conn:
                found = await apikeys.scope_of(conn, key)
            if found is None:
                cache.reject(digest)
            else:
                principal = Principal(f"key:{found.id}", found.scope, found.expires_at)
                cache.put(digest, principal)
    if principal is None:
        raise Unauthorized("the API key is not valid", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if scope not in GRANTS.get(principal.scope, frozenset()):
        raise Forbidden(f"the API key lacks the {scope!r} scope")
    return principal
