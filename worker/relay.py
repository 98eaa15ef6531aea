"""``python -m worker relay``: the outbox relay, PostgreSQL ``outbox`` -> RabbitMQ, at least once.

One pass: in one transaction, claim up to ``relay_batch_size`` unsent rows with ``FOR UPDATE SKIP LOCKED`` and mark
them sent in the same statement (relays running side by side take disjoint batches), publish every message of the
batch concurrently on a channel with publisher confirms, await all confirms, then commit. A failure or a timeout
rolls back, so the rows stay unsent and the pass is retried after an exponential backoff: a row is seen sent only
once RabbitMQ has confirmed every one of its messages. A crash between the confirms and the commit publishes the
batch again; consumers are idempotent. Within a batch, messages are published concurrently and may arrive in any order.

Per event: one integration message to the topic exchange ``stockroom.events`` (routing key = event type) and one
dramatiq message per subscriber in ``shared.events.ROUTES``; per batch, one dramatiq message to each queue of
``shared.events.BATCHED`` holding all of the batch's events for it (the cache worker's). The topology is declared by
``worker.queues``.

Waking up: a dedicated connection LISTENs on ``outbox`` (the insert trigger NOTIFYs at commit). A NOTIFY sent while
that connection is down is lost, so the relay also polls every ``relay_poll_interval`` seconds.
Housekeeping: sent rows older than ``outbox_retention_hours`` and idempotency keys older than a day are deleted in
bounded chunks, every few minutes. Metrics (``relay_metrics_port``): events published, failed batches, backlog and
the age of the oldest unsent row; and the dramatiq queues' depth, consumers and dead letters (``worker.queue_metrics``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import random
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aio_pika
import aiormq
import asyncpg
import dramatiq
import orjson
import prometheus_client
import uvloop
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from pamqp import commands as spec
from prometheus_client import Counter, Gauge

from shared.errors import ServiceUnavailable
from shared.events import BATCHED, CACHE_ACTOR, EXCHANGE, ROUTES, actor_args, batch_message_id, message_id
from shared.logs import configure_logging, get_logger
from shared.settings import Settings
from shared.store import outbox
from shared.store.outbox import OutboxEvent, claim_batch, delete_expired
from shared.store.pool import UNAVAILABLE, connection, create_pool
from worker import queue_metrics
from worker.queues import declare_topology

log = get_logger(__name__)

#: The channel the outbox insert trigger NOTIFYs.
CHANNEL: Final = "outbox"
#: Backoff after a failed pass or a lost connection, in seconds: doubles from the first delay up to the cap.
BACKOFF_FIRST: Final = 0.2
BACKOFF_CAP: Final = 10.0
#: How often the robust connection retries while RabbitMQ is away (aio-pika's default is 5 s).
RECONNECT_INTERVAL: Final = 1.0
#: Seconds between two housekeeping runs; the first runs at start.
HOUSEKEEPING_INTERVAL: Final = 300.0
#: The backlog gauges are refreshed at most this often (seconds).
METRICS_INTERVAL: Final = 1.0
#: Seconds between two pings on the LISTEN connection: a silently dead socket is noticed and replaced.
LISTEN_PING_INTERVAL: Final = 30.0

#: AMQP delivery mode 2: RabbitMQ writes the message to disk (durable queues, persistent messages).
PERSISTENT: Final = aio_pika.DeliveryMode.PERSISTENT
#: Failures that are expected while a service is away: logged without a traceback.
TRANSIENT: Final = (
    TimeoutError,
    ServiceUnavailable,
    aio_pika.exceptions.DeliveryError,
    aio_pika.exceptions.PublishError,
    *aio_pika.exceptions.CONNECTION_EXCEPTIONS,
)

EVENTS_PUBLISHED = Counter(
    "stockroom_relay_events_published_total", "Outbox events published, confirmed and marked sent.", ["type"]
)
PUBLISH_FAILURES = Counter(
    "stockroom_relay_publish_failures_total", "Batches whose publishing failed or timed out (rolled back, retried)."
)
OUTBOX_BACKLOG = Gauge("stockroom_relay_outbox_backlog", "Outbox rows not yet sent.")
OUTBOX_OLDEST_AGE = Gauge(
    "stockroom_relay_outbox_oldest_unsent_age_seconds", "Age of the oldest unsent outbox row (0 when there is none)."
)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish: to the events exchange, or to a dramatiq queue through the default exchange ``""``.

    The AMQP properties are built once here and handed to aiormq as they are (aio-pika's ``Message`` would build
    them again at each publish): the same properties aio-pika sends (``headers`` empty, ``priority`` 0)."""

    exchange: str
    routing_key: str
    body: bytes
    properties: spec.Basic.Properties


# -- message building (pure) -------------------------------------------------------------------------------------


def integration_body(event: OutboxEvent) -> dict[str, Any]:
    """The integration event as the contract spells it."""
    return {
        "id": event.event_id,
        "type": event.type,
        "aggregate": event.aggregate,
        "aggregate_id": event.aggregate_id,
        "version": event.version,
        "occurred_at": event.created_at.isoformat(),
        "request_id": event.request_id,
        "data": event.payload,
    }


def build_messages(event: OutboxEvent) -> list[Outgoing]:
    """The messages ``event`` turns into on its own: the integration event, then one dramatiq message per subscriber
    of :data:`ROUTES` (the batched queues' are :func:`batch_messages`').

    Everything is derived from the row (ids, timestamps), so a re-published event is byte for byte the same.
    """
    body = integration_body(event)
    out = [
        Outgoing(
            EXCHANGE,
            event.type,
            orjson.dumps(body),
            spec.Basic.Properties(
                content_type="application/json",
                headers={},
                delivery_mode=PERSISTENT,
                priority=0,
                message_id=event.event_id,
                correlation_id=event.request_id,
                timestamp=event.created_at,
                message_type=event.type,
            ),
        )
    ]
    for queue, actor in ROUTES.get(event.type, []):
        out.append(_dramatiq(queue, actor, actor_args(body), message_id(event.event_id, queue), event))
    return out


def batch_messages(events: Sequence[OutboxEvent]) -> list[Outgoing]:
    """One dramatiq message per queue of :data:`BATCHED`, holding every event of ``events`` for it, in outbox order
    (its id derived from theirs, its timestamp the first one's)."""
    by_queue: dict[str, list[OutboxEvent]] = {}
    for event in events:
        if (queue := BATCHED.get(event.type)) is not None:
            by_queue.setdefault(queue, []).append(event)
    return [
        _dramatiq(
            queue,
            CACHE_ACTOR,
            [actor_args(integration_body(e)) for e in batch],
            batch_message_id([e.event_id for e in batch], queue),
            batch[0],
        )
        for queue, batch in by_queue.items()
    ]


def _dramatiq(queue: str, actor: str, arg: object, mid: str, event: OutboxEvent) -> Outgoing:
    # queue_name must equal the queue it is published to: dramatiq looks the actor up by it.
    encoded = dramatiq.Message(
        queue_name=queue,
        actor_name=actor,
        args=(arg,),
        kwargs={},
        options={},
        message_id=mid,
        message_timestamp=int(event.created_at.timestamp() * 1000),
    ).encode()
    # dramatiq's own enqueue sets delivery_mode=2 and a priority only for ``broker_priority`` (never set here).
    properties = spec.Basic.Properties(headers={}, delivery_mode=PERSISTENT, priority=0, message_id=mid)
    return Outgoing("", queue, encoded, properties)


# -- PostgreSQL ----------------------------------------------------------------------------------------------------


async def refresh_backlog(conn: asyncpg.Connection) -> None:
    """Set the backlog gauges."""
    figures = await outbox.backlog(conn)
    OUTBOX_BACKLOG.set(figures.count)
    OUTBOX_OLDEST_AGE.set(figures.oldest_age)


# -- RabbitMQ ------------------------------------------------------------------------------------------------------


class Publisher:
    """A robust aio-pika connection with one confirming channel; (re)declares the topology after any failure."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._ready = False

    async def ready(self) -> None:
        """Connect and declare, unless already done since the last failure. Bound it with a timeout."""
        if self._ready:
            return
        if self._connection is None:
            # The first connect fails fast; afterwards the robust connection reconnects by itself.
            self._connection = await aio_pika.connect_robust(self._url, reconnect_interval=RECONNECT_INTERVAL)
        if self._channel is None:
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            assert isinstance(channel, AbstractRobustChannel)
            self._channel = channel
        # After an outage (or a channel error) the robust channel reopens itself: wait for that, never replace it.
        await self._channel.ready()
        # Declared again after every failure: a queue deleted under a running relay would make every publish
        # unroutable, and the robust channel only restores what it saw declared.
        await declare_topology(self._channel)
        self._ready = True

    def invalidate(self) -> None:
        """Declare again before the next publish."""
        self._ready = False

    async def underlay(self) -> aiormq.Channel:
        """The channel's current aiormq channel (a new one after a reconnect): a batch publishes on it directly."""
        assert self._channel is not None
        channel = await self._channel.get_underlay_channel()
        assert isinstance(channel, aiormq.Channel)
        return channel

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), 5)
        self._connection = self._channel = None
        self._ready = False


async def publish_batch(publisher: Publisher, events: Sequence[OutboxEvent], within: float) -> int:
    """Publish every message of ``events`` concurrently and wait for all confirms, within ``within`` seconds.

    Raises on the first failure (a nack, a return, a lost connection, the timeout); the rest are cancelled.
    Returns the number of messages published.
    """
    pairs = [(e, o) for e in events for o in build_messages(e)]
    pairs += [(events[0], o) for o in batch_messages(events)]
    channel = await publisher.underlay()
    # aiormq writes each publish's frames in order and resolves its confirm (raising on a nack, or on a return:
    # ``on_return_raises``); not waiting for each write to drain saves a future per message, the confirm follows it.
    tasks = [
        asyncio.ensure_future(
            channel.basic_publish(
                o.body,
                exchange=o.exchange,
                routing_key=o.routing_key,
                properties=o.properties,
                mandatory=True,
                wait=False,
            )
        )
        for _, o in pairs
    ]
    try:
        async with asyncio.timeout(within):
            await asyncio.gather(*tasks)
    except Exception:
        # One line per failed batch (an outage fails all of them), naming the first event at fault.
        failed = [
            (e, o, t.exception())
            for (e, o), t in zip(pairs, tasks, strict=True)
            if t.done() and not t.cancelled() and t.exception() is not None
        ]
        if failed:
            event, outgoing, exc = failed[0]
            log.warning(
                "publish failed",
                failed=len(failed),
                messages=len(tasks),
                event_id=event.event_id,
                type=event.type,
                request_id=event.request_id,
                routing_key=outgoing.routing_key,
                error=repr(exc),
            )
        raise
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return len(tasks)


# -- the loop ------------------------------------------------------------------------------------------------------


class Backoff:
    """Exponential backoff with jitter (relays that failed together do not retry together)."""

    def __init__(self, first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP) -> None:
        self._first, self._cap, self._next = first, cap, first

    def delay(self) -> float:
        delay, self._next = self._next, min(self._cap, self._next * 2)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._next = self._first


async def wait_any(events: Iterable[asyncio.Event], seconds: float | None) -> None:
    """Return when one of ``events`` is set, or after ``seconds``."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def relay_batch(
    pool: asyncpg.Pool, publisher: Publisher, settings: Settings, on_claimed: Callable[[], None] | None = None
) -> int:
    """One pass: claim (and mark sent), publish, await confirms, commit. Returns the number of events sent.

    ``on_claimed`` is called once the batch's rows are locked (or none were found): from then on another pass may
    claim the next rows (SKIP LOCKED) while this one waits for its confirms."""
    # No row is locked while RabbitMQ is unreachable.
    async with asyncio.timeout(settings.relay_publish_timeout):
        await publisher.ready()
    started = time.perf_counter()
    async with connection(pool, settings.pg_connect_timeout) as conn, conn.transaction():
        try:
            events = await claim_batch(conn, settings.relay_batch_size)
        finally:
            if on_claimed is not None:
                on_claimed()
        if not events:
            return 0
        # The rows were marked sent as they were claimed: the commit after the confirms makes it true.
        messages = await publish_batch(publisher, events, settings.relay_publish_timeout)
    for type_, count in collections.Counter(e.type for e in events).items():
        EVENTS_PUBLISHED.labels(type_).inc(count)
    # With LOG_EVENTS (make run), at INFO: with the API's write line and the worker's line, each event's way shows
    # under its request id. Otherwise DEBUG: at INFO they cost the relay 21 % of its CPU; the counter counts.
    emit = log.info if settings.log_events else log.debug
    for e in events:
        emit("event published", event_id=e.event_id, type=e.type, request_id=e.request_id)
    emit(
        "outbox batch published",
        count=len(events),
        messages=messages,
        ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return len(events)


async def listen(settings: Settings, wake: asyncio.Event, stop: asyncio.Event, attempted: asyncio.Event) -> None:
    """Hold a LISTEN connection until ``stop``; reconnect when it drops. ``wake`` is set on every NOTIFY.

    ``wake`` is also set after every (re)connect: NOTIFYs sent while disconnected are lost. ``attempted`` is set
    once the first attempt is over, so the first poll runs after LISTEN when PostgreSQL is there.
    """
    backoff = Backoff()
    while not stop.is_set():
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(settings.database_url, timeout=settings.pg_connect_timeout)
            await _hold_listen(conn, settings, wake, stop, attempted)
            backoff.reset()
        except UNAVAILABLE as exc:
            log.warning("LISTEN connection failed; polling meanwhile", error=repr(exc))
        finally:
            attempted.set()
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)
        await wait_any([stop], backoff.delay())


async def _hold_listen(
    conn: asyncpg.Connection, settings: Settings, wake: asyncio.Event, stop: asyncio.Event, attempted: asyncio.Event
) -> None:
    lost = asyncio.Event()
    conn.add_termination_listener(lambda _conn: lost.set())
    await conn.add_listener(CHANNEL, lambda *_: wake.set())
    log.info("listening", channel=CHANNEL)
    wake.set()
    attempted.set()
    while not (stop.is_set() or lost.is_set()):
        await wait_any([stop, lost], LISTEN_PING_INTERVAL)
        if not (stop.is_set() or lost.is_set()):
            await conn.execute("SELECT 1", timeout=settings.pg_connect_timeout)
    if lost.is_set():
        log.warning("LISTEN connection lost; polling until it is back")


async def housekeeping(pool: asyncpg.Pool, settings: Settings) -> None:
    async with connection(pool, settings.pg_connect_timeout) as conn:
        deleted = await delete_expired(conn, settings.outbox_retention_hours)
    if deleted:
        log.info("expired rows deleted", count=deleted)


async def refresh_metrics(pool: asyncpg.Pool, settings: Settings) -> None:
    async with connection(pool, settings.pg_connect_timeout) as conn:
        await refresh_backlog(conn)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Relay until ``stop`` is set; batches in flight are finished first. Survives PostgreSQL and RabbitMQ outages.

    ``relay_concurrency`` passes overlap: a batch waiting for its confirms (RabbitMQ writes persistent messages to
    disk first: tens of milliseconds) no longer holds back the events committed meanwhile.
    """
    wake, attempted = asyncio.Event(), asyncio.Event()
    pool = await create_pool(settings, max_size=settings.relay_concurrency + 1)
    publisher = Publisher(settings.rabbitmq_url)
    listener = asyncio.create_task(listen(settings, wake, stop, attempted))
    # Held by the one pass that waits for work and claims; released as soon as its rows are locked.
    claiming = asyncio.Lock()
    log.info(
        "relay started",
        batch_size=settings.relay_batch_size,
        poll_interval=settings.relay_poll_interval,
        linger=settings.relay_linger,
        concurrency=settings.relay_concurrency,
    )
    metrics = asyncio.create_task(_metrics_loop(pool, settings, stop))
    try:
        await wait_any([attempted, stop], settings.pg_connect_timeout + 1)
        await asyncio.gather(
            *(_passes(i, pool, publisher, settings, wake, stop, claiming) for i in range(settings.relay_concurrency))
        )
    finally:
        stop.set()
        await listener
        await metrics
        await publisher.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pool.close(), 5)
        log.info("relay stopped")


async def _metrics_loop(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event) -> None:
    """Backlog and oldest-unsent age, refreshed on their own clock: they matter most while passes are failing."""
    while not stop.is_set():
        with contextlib.suppress(Exception):
            await refresh_metrics(pool, settings)
        await wait_any([stop], METRICS_INTERVAL)


async def _passes(
    index: int,
    pool: asyncpg.Pool,
    publisher: Publisher,
    settings: Settings,
    wake: asyncio.Event,
    stop: asyncio.Event,
    claiming: asyncio.Lock,
) -> None:
    """One pass loop. The first one also keeps house."""
    backoff = Backoff()
    next_housekeeping = time.monotonic()
    idle = False
    while not stop.is_set():
        claimed = asyncio.Event()
        async with claiming:
            if idle:
                await wait_any([wake, stop], settings.relay_poll_interval)
                if settings.relay_linger and wake.is_set():
                    await wait_any([stop], settings.relay_linger)
            if stop.is_set():
                break
            # Cleared before the claim: a NOTIFY arriving during the pass triggers another one.
            wake.clear()
            task = asyncio.create_task(relay_batch(pool, publisher, settings, on_claimed=claimed.set))
            waiter = asyncio.create_task(claimed.wait())
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        failed = False
        try:
            sent = await task
        except Exception as exc:
            # Whatever went wrong (RabbitMQ or PostgreSQL away, a nack, a timeout, a bug), the transaction was
            # rolled back and the rows are still unsent: log, back off, declare again, retry.
            failed, sent = True, 0
            PUBLISH_FAILURES.inc()
            publisher.invalidate()
            log.warning("relay pass failed; retrying", error=repr(exc), exc_info=not isinstance(exc, TRANSIENT))
        now = time.monotonic()
        if failed:
            await wait_any([stop], backoff.delay())
            idle = False
            continue
        backoff.reset()
        if index == 0 and now >= next_housekeeping:
            next_housekeeping = now + HOUSEKEEPING_INTERVAL
            try:
                await housekeeping(pool, settings)
            except Exception as exc:
                log.warning("housekeeping failed", error=repr(exc))
        idle = sent < settings.relay_batch_size


async def _serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The queues' depth, consumers and dead letters, exported next to the relay's own metrics.
    watcher = (
        asyncio.create_task(queue_metrics.watch(settings.rabbitmq_url, stop)) if settings.relay_metrics_port else None
    )
    try:
        await run(settings, stop)
    finally:
        stop.set()
        if watcher is not None:
            await watcher


def main(argv: list[str]) -> int:
    """Entry point of ``python -m worker relay``; exits 0 after SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m worker relay", description="Publish the PostgreSQL outbox to RabbitMQ (settings: environment)."
    )
    parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings, "relay")
    if settings.relay_metrics_port:
        prometheus_client.start_http_server(settings.relay_metrics_port, addr=settings.worker_metrics_host)
    uvloop.run(_serve(settings))
    return 0
