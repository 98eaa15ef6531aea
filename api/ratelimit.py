"""Rate limits in Redis: GCRA, one Lua script, one round trip per request.

Writes are limited per principal (the API key's owner), reads per client address. Each limit is a rate and a burst:
a client that has been quiet may send ``burst`` requests at once, then ``rate`` per second. The state is one key per
client, ``sr:rl:{scope}:{id}``, holding the theoretical arrival time (TAT) and expiring once it is in the past;
the clock is Redis's own (``TIME``), so API processes on several hosts share one limit.

Answers carry ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` (IETF draft
httpapi-ratelimit-headers); a refusal is a 429 problem document with ``Retry-After``.
Redis unreachable or slow: the request is let through (fail open), counted and logged at most every few seconds;
after a failure the limiter is skipped for a moment, so an outage does not cost every request a timeout.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from api.keys import METRICS, PRINCIPAL, RATE_LIMITER, REDIS, SETTINGS
from api.metrics import Metrics
from api.queries import REDIS_ERRORS
from shared.errors import DomainError, TooManyRequests
from shared.logs import get_logger
from shared.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

log = get_logger("api.ratelimit")

#: Paths never limited: probes, scrapes and the documentation.
EXEMPT: Final = ("/health", "/metrics", "/api/docs", "/api/redoc", "/api/openapi.json", "/api/asyncapi.json")
#: Methods limited as reads; every other method is a write.
READS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
#: Seconds the limiter is skipped after Redis failed (every request is let through meanwhile, and counted).
OPEN_SECONDS: Final = 1.0
#: Seconds between two "failing open" warnings.
WARN_EVERY: Final = 10.0
PREFIX: Final = "sr:rl:"

#: KEYS[1]: the client's key. ARGV[1]: microseconds between two requests (1e6 / rate). ARGV[2]: the burst.
#: Returns {allowed (0|1), remaining, retry after (ms), reset (ms)}.
GCRA: Final = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now
local window = interval * burst
if ahead > window then
  return {0, 0, math.ceil((ahead - window) / 1000), math.ceil((tat - now) / 1000)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(ahead / 1000) + 1)
return {1, math.floor((window - ahead) / interval), 0, math.ceil(ahead / 1000)}
"""


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` requests per second, ``burst`` at once."""

    rate: float
    burst: int


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_ms: int
    reset_ms: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(self.reset_ms / 1000)),
        }


def trusted_networks(spec: str) -> tuple[Network, ...]:
    """``trusted_proxies`` (comma-separated addresses or CIDR blocks) parsed; a bad entry raises ValueError."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip())


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_address(request: web.Request, trusted: Sequence[Network]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy.

    Behind trusted proxies, ``X-Forwarded-For`` is read from the right: the first hop that is not a trusted proxy
    is the client (everything left of it was written by the client and may be forged).
    """
    peer = request.remote or "unknown"
    ip = _ip(peer)
    if not trusted or ip is None or not any(ip in net for net in trusted):
        return peer
    hops = [h for value in request.headers.getall("X-Forwarded-For", []) for h in value.split(",")]
    client = peer
    for hop in reversed(hops):
        hop_ip = _ip(hop)
        if hop_ip is None:
            break
        client = str(hop_ip)
        if not any(hop_ip in net for net in trusted):
            break
    return client


class RateLimiter:
    """Checks one request against its limit in Redis; fails open when Redis cannot answer."""

    def __init__(self, client: Any, settings: Settings, metrics: Metrics) -> None:
        self.reads = Limit(settings.rate_limit_reads_per_second, settings.rate_limit_reads_burst)
        self.writes = Limit(settings.rate_limit_writes_per_second, settings.rate_limit_writes_burst)
        self.trusted = trusted_networks(settings.trusted_proxies)
        self._script = client.register_script(GCRA)
        self._metrics = metrics
        self._skip_until = 0.0
        self._warned_at = -WARN_EVERY

    async def check(self, scope: str, ident: str, limit: Limit) -> Decision | None:
        """The decision for one request, or None when Redis could not be asked (the request goes through)."""
        now = time.monotonic()
        if now < self._skip_until:
            self._metrics.rate_limit_fail_open.inc()
            return None
        try:
            allowed, remaining, retry_ms, reset_ms = await self._script(
                keys=[f"{PREFIX}{scope}:{ident}"], args=[1_000_000 / limit.rate, limit.burst]
            )
        except REDIS_ERRORS as exc:
            self._skip_until = now + OPEN_SECONDS
            self._metrics.rate_limit_fail_open.inc()
            if now - self._warned_at >= WARN_EVERY:
                self._warned_at = now
                log.warning("rate_limit_failing_open", error=type(exc).__name__)
            return None
        return Decision(bool(allowed), limit.burst, int(remaining), int(retry_ms), int(reset_ms))


async def limiter_context(app: web.Application) -> AsyncIterator[None]:
    """The app's limiter (after the Redis client is made); none when ``rate_limit_enabled`` is false."""
    settings = app[SETTINGS]
    if settings.rate_limit_enabled:
        app[RATE_LIMITER] = RateLimiter(app[REDIS], settings, app[METRICS])
    yield


async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Runs after authorization: writes are counted against the principal, reads against the client address."""
    limiter = request.app.get(RATE_LIMITER)
    if limiter is None or request.path.startswith(EXEMPT):
        return await handler(request)
    address = client_address(request, limiter.trusted)
    if request.method in READS:
        scope, ident, limit = "read", address, limiter.reads
    else:
        owner = request[PRINCIPAL].owner
        # An anonymous write (to a path that needs no key, or none at all) is counted against its address.
        scope, ident, limit = "write", owner if owner != "anonymous" else f"addr:{address}", limiter.writes
    decision = await limiter.check(scope, ident, limit)
    if decision is None:
        return await handler(request)
    headers = decision.headers()
    if not decision.allowed:
        request.app[METRICS].rate_limited.labels(scope).inc()
        retry = max(1, math.ceil(decision.retry_after_ms / 1000))
        raise TooManyRequests(
            f"the {scope} rate limit is {limit.rate:g} requests per second (bursts of {limit.burst}); "
            f"retry in {retry} s",
            headers={**headers, "Retry-After": str(retry)},
        )
    try:
        response = await handler(request)
    except DomainError as exc:
        exc.headers.update(headers)
        raise
    if not response.prepared:
        response.headers.update(headers)
    return response
