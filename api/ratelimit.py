"""Rate limits in Redis: GCRA, one Lua script, at most one round trip per request (shared with the read itself).

Writes are limited per principal (the API key's owner), reads per client address, and the PostgreSQL lookups of
API keys this process does not know per client address too (a flood of random keys stops there). Each limit is a
rate and a burst: a client that has been quiet may send ``burst`` requests at once, then ``rate`` per second.
The state is one key per client, ``sr:rl:{scope}:{id}``, holding the theoretical arrival time (TAT) and expiring
once it is in the past; the clock is Redis's own (``TIME``), so API processes on several hosts share one limit.

Answers carry ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` (IETF draft
httpapi-ratelimit-headers); a refusal is a 429 problem document with ``Retry-After``.
Redis unreachable or slow: the request is let through (fail open), counted and logged at most every few seconds;
after a failure the limiter is skipped for a moment, so an outage does not cost every request a timeout.
Refusing is cheaper than serving: a refused client is remembered in the process until its retry time (no Redis
round trip) and the 429 body is made once.

Reads are granted in leases: one check asks Redis for up to ``lease`` reads of the client at once (GCRA charges
them all, so the limit holds whatever the process does with them), and the client's next reads to this process
take one each with no Redis work. A lease never lets a client exceed its limit within one process; across N
processes, reads charged earlier and not used yet (at most N x (lease - 1)) can add to a fresh burst.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import math
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, cast

from aiohttp import web
from multidict import istr
from redis.exceptions import ResponseError

from api.metrics import METRICS, Metrics
from api.problems import PROBLEM, problem
from api.responses import CONTENT_TYPE
from api.state import FAST_REDIS, PRINCIPAL, RATE_GATED, SETTINGS
from shared.errors import DomainError, TooManyRequests
from shared.logs import get_logger
from shared.readmodel.client import REDIS_ERRORS, FastRedis
from shared.readmodel.render import dumps
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
#: ARGV[3]: how many requests to grant at once (a lease, see :class:`RateLimiter`); as many as fit are granted.
#: Returns {granted (0 = refused), remaining after them, retry after (ms), reset (ms)}.
GCRA: Final = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local window = interval * burst
local room = math.floor((window - (tat - now)) / interval)
if room < 1 then
  return {0, 0, math.ceil((tat + interval - now - window) / 1000), math.ceil((tat - now) / 1000)}
end
local n = math.min(want, room)
local new_tat = tat + n * interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {n, room - n, 0, math.ceil((new_tat - now) / 1000)}
"""


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` requests per second, ``burst`` at once; ``lease`` of them granted to this process per Redis check."""

    rate: float
    burst: int
    lease: int = 1

    @property
    def interval(self) -> float:
        """Seconds between two requests at the rate."""
        return 1 / self.rate

    def args(self, want: int) -> list[Any]:
        """The script's ARGV, asking for ``want`` requests."""
        return [1_000_000 / self.rate, self.burst, want]


#: A lease is at most this share of the burst (so a small burst is checked exactly, one request at a time).
LEASE_SHARE: Final = 32
#: Requests granted in advance stay usable in this process for this long (then they are forgotten, unused).
LEASE_SECONDS: Final = 30.0
#: Clients holding a lease in this process, at most (the oldest grant is forgotten first).
LEASES_SIZE: Final = 100_000


def lease_size(setting: int, burst: int) -> int:
    """How many requests one Redis check grants: the setting, at most a 32nd of the burst, at least one."""
    return max(1, min(setting, burst // LEASE_SHARE))


@dataclass(slots=True)
class Lease:
    """Requests Redis granted (and charged) for one client, not used yet by this process."""

    tokens: int
    #: What Redis said was left to the client after the grant.
    remaining: int
    #: Monotonic time at which the client's charged allowance is back to the full burst.
    reset_at: float
    #: Monotonic time after which the tokens are forgotten.
    expires: float


class Decision(NamedTuple):
    """One request's verdict. A named tuple, not a frozen dataclass: made on every refusal, and a frozen
    dataclass's constructor costs a 429 about a microsecond (measured in bench/)."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_ms: int
    reset_ms: int

    def headers(self) -> dict[str, str]:
        return _headers(self.limit, self.remaining, self.reset_ms / 1000)


#: The answers' rate-limit headers, as ``istr`` (see :data:`api.responses.CONTENT_TYPE`).
LIMIT: Final[str] = istr("RateLimit-Limit")
REMAINING: Final[str] = istr("RateLimit-Remaining")
RESET: Final[str] = istr("RateLimit-Reset")
RETRY_AFTER: Final[str] = istr("Retry-After")
X_FORWARDED_FOR: Final[str] = istr("X-Forwarded-For")
#: Header dicts of leased requests kept by :meth:`RateLimiter.known`, at most (then all forgotten at once).
HEADERS_SIZE: Final = 4096


def _headers(limit: int, remaining: int, reset_seconds: float) -> dict[str, str]:
    return {
        LIMIT: str(limit),
        REMAINING: str(remaining),
        RESET: str(max(0, math.ceil(reset_seconds))),
    }


def trusted_networks(spec: str) -> frozenset[Network]:
    """``trusted_proxies`` (comma-separated addresses or CIDR blocks) parsed; a bad entry raises ValueError.

    A frozenset: it is part of :func:`_client`'s cache key on every request, and a frozenset keeps its hash,
    where a tuple hashes each network again (in Python: about as much as the rest of the cache lookup)."""
    return frozenset(ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip())


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=4096)
def _ip(text: str) -> tuple[Address, str] | None:
    """The address in ``text`` and its canonical text, or None. Cached: the peer (a proxy) and a client's address
    repeat. An IPv4 address goes through the C parser (``inet_pton``, strict: no leading zeros, four parts,
    so what it takes is already canonical text): ``ipaddress``'s own parser and ``str()`` cost more than the rest
    of the rate limit's work on a request (measured in bench/, with clients that do not repeat)."""
    text = text.strip()
    try:
        return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, text)), text
    except (OSError, ValueError):  # not IPv4 (an undecodable or NUL character is a ValueError)
        pass
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return ip, str(ip)


def client_address(request: web.Request, trusted: frozenset[Network]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy.

    Behind trusted proxies, ``X-Forwarded-For`` is read from the right: the first hop that is not a trusted proxy
    is the client (everything left of it was written by the client and may be forged).
    """
    peer = request.remote or "unknown"
    if not trusted:
        return peer
    return _client_of(peer, tuple(request.headers.getall("X-Forwarded-For", ())), trusted)


#: (peer, X-Forwarded-For values) pairs whose client is remembered, per process.
CLIENTS_SIZE: Final = 16_384


@functools.lru_cache(maxsize=CLIENTS_SIZE)
def _client(peer: str, forwarded: tuple[str, ...], trusted: frozenset[Network]) -> str:
    """:func:`client_address` of one peer and its ``X-Forwarded-For`` values. Cached: behind a proxy the same
    client sends the same header again and again, and walking it (each hop parsed, each tested against every
    trusted network in Python) cost more than the rest of the rate limit's work on a read (measured in bench/)."""
    parsed = _ip(peer)
    if parsed is None or not any(parsed[0] in net for net in trusted):
        return peer
    client = peer
    for value in reversed(forwarded):
        for hop in reversed(value.split(",")):
            parsed = _ip(hop)
            if parsed is None:
                return client
            client = parsed[1]
            if not any(parsed[0] in net for net in trusted):
                return client
    return client


#: ``X-Forwarded-For`` values longer than this in all are not remembered (:func:`_client_of`).
FORWARDED_CACHED_AT_MOST: Final = 512


def _client_of(peer: str, forwarded: tuple[str, ...], trusted: frozenset[Network]) -> str:
    """:func:`_client`, remembered only for short ``X-Forwarded-For`` values: an entry holds them, and a request
    may carry 128 headers of 8 KB each, so remembering long ones would let clients fill gigabytes."""
    if sum(map(len, forwarded)) > FORWARDED_CACHED_AT_MOST:
        return _client.__wrapped__(peer, forwarded, trusted)
    return _client(peer, forwarded, trusted)


#: Seconds a refused client's probe (:meth:`RateLimiter.refused`) holds its other requests refused, at most.
PROBE_SECONDS: Final = 1.0
#: Clients remembered as refused, per process (least recently refused forgotten first).
REFUSED_SIZE: Final = 10_000


def _refusal_body(scope: str, limit: Limit) -> bytes:
    detail = (
        f"the {scope} rate limit is {limit.rate:g} requests per second (bursts of {limit.burst}); "
        "retry after the seconds in Retry-After"
    )
    return dumps(problem(429, "Too Many Requests", detail))


class RateLimiter:
    """Checks one request against its limit in Redis; fails open when Redis cannot answer.

    The script runs on the API's auto-pipelined Redis connection (:class:`shared.readmodel.client.FastRedis`): a read's
    check goes out in the same write as the read itself. A client Redis refused is remembered here until its
    retry time, so its next requests are answered 429 with no Redis round trip at all.
    """

    def __init__(self, fast: FastRedis, settings: Settings, metrics: Metrics) -> None:
        self.reads = Limit(
            settings.rate_limit_reads_per_second,
            settings.rate_limit_reads_burst,
            lease_size(settings.rate_limit_reads_lease, settings.rate_limit_reads_burst),
        )
        self.writes = Limit(
            settings.rate_limit_writes_per_second,
            settings.rate_limit_writes_burst,
            lease_size(settings.rate_limit_writes_lease, settings.rate_limit_writes_burst),
        )
        self.lookups = Limit(settings.rate_limit_key_lookups_per_second, settings.rate_limit_key_lookups_burst)
        self.trusted = trusted_networks(settings.trusted_proxies)
        self._fast = fast
        self._metrics = metrics
        self._skip_until = 0.0
        self._warned_at = -WARN_EVERY
        #: Redis key -> monotonic time until which that client is refused.
        self._refused: OrderedDict[str, float] = OrderedDict()
        #: Redis key -> monotonic time at which the one request that asks Redis again for a refused client left.
        self._probes: dict[str, float] = {}
        #: Redis key -> the requests granted to that client and not used yet.
        self._leases: OrderedDict[str, Lease] = OrderedDict()
        #: The key of each client whose lease is being asked for (one at a time: the client's other requests
        #: meanwhile are checked one by one, so that concurrent requests never charge it a lease each).
        self._leasing: dict[str, asyncio.Future[Any]] = {}
        limits = (self.reads, self.writes, self.lookups)
        self._args = {limit: limit.args(1) for limit in limits}
        self._lease_args = {limit: limit.args(limit.lease) for limit in limits}
        self.bodies = {
            scope: _refusal_body(scope, limit) for scope, limit in (("read", self.reads), ("write", self.writes))
        }
        #: The refusal counter's child per scope, looked up once: ``labels()`` takes a lock and builds a key on
        #: every call, a cost a 429 must not pay more than a hit does.
        self._refused_counts = {scope: metrics.rate_limited.labels(scope) for scope in ("read", "write", "auth")}
        #: (limit, remaining, reset) -> the headers of a request taken from a lease (:meth:`known`).
        self._headers: dict[tuple[int, int, int], dict[str, str]] = {}
        #: (peer, X-Forwarded-For values) -> the Redis key of that read client (:meth:`read_key`).
        self._read_keys: dict[tuple[str, tuple[str, ...]], str] = {}

    def read_key(self, request: web.Request) -> str:
        """The Redis key of a read's client: remembered per (peer, ``X-Forwarded-For`` values), so a returning
        client costs one dict lookup, not :func:`client_address`'s calls and a formatted string."""
        seen = (request.remote or "unknown", tuple(request.headers.getall(X_FORWARDED_FOR, ())))
        key = self._read_keys.get(seen)
        if key is None:
            # This dict is the read client's memory: :func:`_client`'s cache would hold the same pair again.
            client = _client.__wrapped__(*seen, self.trusted) if self.trusted else seen[0]
            key = f"{PREFIX}read:{client}"
            if sum(map(len, seen[1])) <= FORWARDED_CACHED_AT_MOST:
                if len(self._read_keys) >= CLIENTS_SIZE:
                    self._read_keys.clear()
                self._read_keys[seen] = key
        return key

    def refused(self, key: str, limit: Limit, now: float) -> Decision | None:
        """The refusal remembered for ``key``, if its retry time has not come yet.

        Once it has, one request asks Redis again (the probe) and the client's other requests meanwhile are still
        refused here: a client that keeps sending past its limit costs one Redis check per retry time, not one
        per request in flight when its retry time comes (which made a flood's 429 cost more than a hit)."""
        until = self._refused.get(key)
        if until is None:
            return None
        if until <= now:
            probe = self._probes.get(key)
            if probe is not None and now - probe < PROBE_SECONDS:
                return Decision(False, limit.burst, 0, 1, 1)  # the probe's answer decides: until then, refused
            if now - until >= PROBE_SECONDS:  # long past: the client is checked as any other
                del self._refused[key]
                self._probes.pop(key, None)
                return None
            self._probes[key] = now  # this request is the probe
            return None
        ms = math.ceil((until - now) * 1000)
        return Decision(False, limit.burst, 0, ms, ms)

    def submit(self, key: str, limit: Limit) -> asyncio.Future[Any] | None:
        """The check sent now, in this turn of the loop, or None when there is no connection to send it on."""
        if time.monotonic() < self._skip_until:
            return None
        if limit.lease == 1 or key in self._leasing:
            return self._fast.submit_script(GCRA, [key], self._args[limit])
        sent = self._fast.submit_script(GCRA, [key], self._lease_args[limit])
        if sent is not None:
            self._leasing[key] = sent  # until its decision is made (:meth:`decide`) or dropped (:meth:`drop`)
        return sent

    async def _ask(self, key: str, limit: Limit) -> Any:
        """The check run now, loading the script if need be: a lease if none is being asked for already."""
        if limit.lease == 1 or key in self._leasing:
            return await self._fast.run_script(GCRA, [key], self._args[limit])
        self._leasing[key] = marker = asyncio.get_running_loop().create_future()
        try:
            return await self._fast.run_script(GCRA, [key], self._lease_args[limit])
        finally:
            if self._leasing.get(key) is marker:
                del self._leasing[key]

    def drop(self, key: str, sent: asyncio.Future[Any] | None) -> None:
        """Forget a check whose decision will not be made (the handler failed): its reply is read and ignored."""
        self._probes.pop(key, None)
        if sent is not None:
            if self._leasing.get(key) is sent:
                del self._leasing[key]
            sent.add_done_callback(_consume)

    async def decide(self, key: str, limit: Limit, sent: asyncio.Future[Any] | None = None) -> Decision | None:
        """The decision for one request (awaiting ``sent`` if the check was already sent), or None when Redis
        could not be asked (the request goes through). One coroutine: a read's check is awaited on every
        request that has no lease left, so it costs a frame less than a wrapper around the await."""
        now = time.monotonic()
        try:
            if now < self._skip_until:
                if sent is not None:
                    sent.add_done_callback(_consume)
                self._metrics.rate_limit_fail_open.inc()
                return None
            try:
                reply = None
                if sent is not None:
                    try:
                        reply = await sent
                    except ResponseError as exc:  # the script is not loaded yet (or was flushed): load it below
                        if not str(exc).startswith("NOSCRIPT"):
                            raise
                if reply is None:  # not sent (no connection yet) or the script was not loaded: asked here
                    reply = await self._ask(key, limit)
            except REDIS_ERRORS as exc:
                self._skip_until = now + OPEN_SECONDS
                self._metrics.rate_limit_fail_open.inc()
                if now - self._warned_at >= WARN_EVERY:
                    self._warned_at = now
                    log.warning("rate_limit_failing_open", error=type(exc).__name__)
                return None
            return self._verdict(key, limit, reply, now)
        finally:
            # Only now, with a granted lease stored: until then the client's other requests are checked one by one.
            if sent is not None and self._leasing.get(key) is sent:
                del self._leasing[key]
            self._probes.pop(key, None)

    def _verdict(self, key: str, limit: Limit, reply: Any, now: float) -> Decision:
        """Redis's reply made a decision: a refusal remembered, a lease's spare requests kept."""
        granted, remaining, retry_ms, reset_ms = map(int, reply)
        if not granted:
            self._refuse(key, now + retry_ms / 1000)
            return Decision(False, limit.burst, remaining, retry_ms, reset_ms)
        # Allowed with nothing left: Redis would refuse the client's next request until a request has refilled
        # (the allowance is back to full at ``reset``, so one is back burst - 1 intervals before), and it is
        # refused here until then, as if Redis had said so. A flood's requests in flight meanwhile (a probe has
        # just let one through) then cost no Redis check each.
        wait = reset_ms / 1000 - (limit.burst - 1) * limit.interval
        if granted == 1 and remaining <= 0 and wait > 0:
            self._refuse(key, now + min(wait, limit.interval))
            return Decision(True, limit.burst, 0, retry_ms, reset_ms)
        self._refused.pop(key, None)
        if granted > 1:
            # This request takes one; the rest wait here for the client's next requests to this process.
            left = self._leases.get(key)
            tokens = granted - 1 + (left.tokens if left is not None and left.expires > now else 0)
            self._leases[key] = Lease(tokens, remaining, now + reset_ms / 1000, now + LEASE_SECONDS)
            self._leases.move_to_end(key)
            if len(self._leases) > LEASES_SIZE:
                self._leases.popitem(last=False)
            remaining += tokens
        return Decision(True, limit.burst, remaining, retry_ms, reset_ms)

    def _refuse(self, key: str, until: float) -> None:
        self._refused[key] = until
        self._refused.move_to_end(key)
        if len(self._refused) > REFUSED_SIZE:
            self._refused.popitem(last=False)

    def known(self, scope: str, key: str, limit: Limit, now: float) -> dict[str, str] | web.Response | None:
        """What this process already knows of ``key``, with no Redis work: the rate-limit headers of a request
        taken from its lease, the 429 answer while it is refused here, or None (Redis is asked). The hottest path
        there is (a read taken from a lease), so the lease and its headers are looked up here, not in calls."""
        lease = self._leases.get(key)
        if lease is not None:
            if lease.expires > now and lease.tokens > 0:
                lease.tokens -= 1
                tokens = lease.tokens
                if tokens == 0:
                    del self._leases[key]
                reset_seconds = lease.reset_at - tokens * limit.interval - now
                values = (limit.burst, lease.remaining + tokens, math.ceil(reset_seconds) if reset_seconds > 0 else 0)
                # One shared dict per value, never changed by its users: a lease answers most reads with the same
                # few values, and three str() and a dict a read cost more than the lookup (measured in bench/).
                headers = self._headers.get(values)
                if headers is None:
                    if len(self._headers) >= HEADERS_SIZE:
                        self._headers.clear()
                    headers = self._headers[values] = _headers(*values)
                return headers
            del self._leases[key]
        remembered = self.refused(key, limit, now)
        return None if remembered is None else self.refusal(scope, remembered)

    async def check(self, scope: str, ident: str, limit: Limit) -> Decision | None:
        """The decision for one request from ``ident`` in ``scope``: remembered, or asked of Redis."""
        key = f"{PREFIX}{scope}:{ident}"
        remembered = self.refused(key, limit, time.monotonic())
        if remembered is not None:
            return remembered
        return await self.decide(key, limit, self.submit(key, limit))

    def refusal(self, scope: str, decision: Decision) -> web.Response:
        """The 429 answer: its body made once per scope, only the headers per request."""
        self._refused_counts[scope].inc()
        headers = decision.headers()
        headers[RETRY_AFTER] = str(max(1, math.ceil(decision.retry_after_ms / 1000)))
        headers[CONTENT_TYPE] = PROBLEM  # a plain header: cheaper than aiohttp's content_type machinery
        return web.Response(body=self.bodies[scope], status=429, headers=headers)

    async def admit_lookup(self, request: web.Request) -> None:
        """Before a key this process does not know is looked up in PostgreSQL: at most ``lookups`` per client
        address, so a flood of random keys is refused (429) here, not by a query per key."""
        decision = await self.check("auth", client_address(request, self.trusted), self.lookups)
        if decision is not None and not decision.allowed:
            self._refused_counts["auth"].inc()
            retry = max(1, math.ceil(decision.retry_after_ms / 1000))
            raise TooManyRequests(
                f"too many unknown API keys from this address: at most {self.lookups.rate:g} per second "
                f"(bursts of {self.lookups.burst}); retry in {retry} s",
                headers={**decision.headers(), "Retry-After": str(retry)},
            )


#: The app's rate limiter, made once Redis is up (:func:`limiter_context`).
RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter")


async def limiter_context(app: web.Application) -> AsyncIterator[None]:
    """The app's limiter (after the Redis client is made); none when ``rate_limit_enabled`` is false."""
    settings = app[SETTINGS]
    if settings.rate_limit_enabled:
        app[RATE_LIMITER] = RateLimiter(app[FAST_REDIS], settings, app[METRICS])
    yield


def lookup_gate(app: web.Application) -> Callable[[web.Request], Awaitable[None]] | None:
    """The gate :func:`api.auth.authenticate` passes an unknown key through (None when limits are off)."""
    limiter = app.get(RATE_LIMITER)
    return None if limiter is None else limiter.admit_lookup


def read_gate(request: web.Request) -> dict[str, str] | web.Response | None:
    """Called by the edge after authorization, for a read, before anything else of the limiter's: the rate-limit
    headers when this process holds reads granted to its client (one is taken: no Redis work), the 429 answer when
    the client is refused here (no Redis work either, and no coroutine of the limiter's: a flood's refusals cost
    less than a hit), else None: the request goes through :func:`rate_limit`, which asks Redis."""
    if request.method not in READS:
        return None
    limiter = request.app.get(RATE_LIMITER)
    if limiter is None or request.path.startswith(EXEMPT):
        return None
    key = limiter.read_key(request)
    known = limiter.known("read", key, limiter.reads, time.monotonic())
    if known is None:
        request[RATE_GATED] = key
    return known


async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Runs after authorization: writes are counted against the principal, reads against the client address.

    A read's check is sent before its handler runs and awaited after, so both share one Redis round trip;
    a refused read's answer is then thrown away (a read changes nothing).
    """
    limiter = request.app.get(RATE_LIMITER)
    if limiter is None or request.path.startswith(EXEMPT):
        return await handler(request)
    read = request.method in READS
    if read:
        # The edge's read_gate (always paired with this guard, api.app) found no lease and no refusal already.
        scope, key, limit = "read", request[RATE_GATED], limiter.reads
    else:
        owner = request[PRINCIPAL].owner
        # An anonymous write (to a path that needs no key, or none at all) is counted against its address.
        ident = owner if owner != "anonymous" else f"addr:{client_address(request, limiter.trusted)}"
        scope, key, limit = "write", f"{PREFIX}write:{ident}", limiter.writes
        known = limiter.known(scope, key, limit, time.monotonic())
        if type(known) is dict:
            return await _answer(request, handler, known)
        if known is not None:
            return cast(web.Response, known)
    sent = limiter.submit(key, limit)
    if not read:
        decision = await limiter.decide(key, limit, sent)
        if decision is None:
            return await handler(request)
        if not decision.allowed:
            return limiter.refusal(scope, decision)
        return await _answer(request, handler, decision.headers())
    try:
        response = await handler(request)
    except DomainError as exc:
        # Re-raised from inside the except block, never kept in a local: a frame that holds the exception it
        # raised is a reference cycle (frame, exception, traceback) that only the garbage collector frees, and
        # under a flood of 404s those collections cost more than the answers (measured in bench/).
        decision = await limiter.decide(key, limit, sent)
        if decision is not None and not decision.allowed:
            return limiter.refusal(scope, decision)
        if decision is not None:
            exc.headers.update(decision.headers())
        raise
    except BaseException:
        limiter.drop(key, sent)
        raise
    decision = await limiter.decide(key, limit, sent)
    if decision is not None and not decision.allowed:
        return limiter.refusal(scope, decision)
    if decision is not None and not response.prepared:
        response.headers.update(decision.headers())
    return response


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


async def _answer(request: web.Request, handler: Handler, headers: dict[str, str]) -> web.StreamResponse:
    try:
        response = await handler(request)
    except DomainError as exc:
        exc.headers.update(headers)
        raise
    if not response.prepared:
        response.headers.update(headers)
    return response
