"""RabbitMQ queue metrics, exported by the relay: depth, consumers and dead letters of every dramatiq queue.

Read with passive declarations on a connection of their own (no management plugin or credentials needed): for
each queue ``Q`` of the routing table, ``Q``, ``Q.DQ`` (delayed retries) and ``Q.XQ`` (dead letters). A passive
declaration reports the messages *ready* and the consumers; messages delivered but not yet acknowledged
(prefetched or in progress) are not counted, so a busy worker's queue reads lower than the management UI's total.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from dramatiq.common import dq_name, xq_name
from prometheus_client import Gauge

from shared.logs import get_logger
from worker.queues import DRAMATIQ_QUEUES

log = get_logger(__name__)

#: Seconds between two readings: queue depth moves slowly next to a scrape interval of 15 s.
INTERVAL: Final = 5.0

QUEUE_MESSAGES = Gauge(
    "stockroom_queue_messages",
    "Messages ready in a RabbitMQ queue (Q, Q.DQ and Q.XQ of each dramatiq queue).",
    ["queue"],
)
QUEUE_CONSUMERS = Gauge("stockroom_queue_consumers", "Consumers of a RabbitMQ queue (worker processes).", ["queue"])
DEAD_LETTERS = Gauge("stockroom_queue_dead_letters", "Dead letters of a dramatiq queue (messages in Q.XQ).", ["queue"])
QUEUE_METRICS_UP = Gauge("stockroom_queue_metrics_up", "1 if the last reading of the RabbitMQ queues succeeded.")


def watched() -> list[str]:
    """Every queue read: ``Q``, ``Q.DQ``, ``Q.XQ`` per dramatiq queue."""
    return [name for q in DRAMATIQ_QUEUES for name in (q, dq_name(q), xq_name(q))]


async def read_once(channel: AbstractChannel) -> None:
    """One reading of every watched queue into the gauges."""
    ready: dict[str, int] = {}
    for name in watched():
        queue = await channel.declare_queue(name, passive=True)
        result = queue.declaration_result
        ready[name] = result.message_count or 0
        QUEUE_MESSAGES.labels(name).set(ready[name])
        QUEUE_CONSUMERS.labels(name).set(result.consumer_count or 0)
    for q in DRAMATIQ_QUEUES:
        DEAD_LETTERS.labels(q).set(ready[xq_name(q)])


async def watch(url: str, stop: asyncio.Event, interval: float = INTERVAL) -> None:
    """Read the queues every ``interval`` s until ``stop``; an outage (or a queue not declared yet) sets ``up`` 0."""
    conn: AbstractConnection | None = None
    channel: AbstractChannel | None = None
    while not stop.is_set():
        try:
            if conn is None or conn.is_closed:
                conn = await asyncio.wait_for(aio_pika.connect(url), interval)
                channel = None
            if channel is None or channel.is_closed:
                channel = await conn.channel()  # a passive declaration of a missing queue closes the channel
            await asyncio.wait_for(read_once(channel), interval)
            QUEUE_METRICS_UP.set(1)
        except Exception as exc:  # whatever it is, the relay's real work goes on; the gauge says it
            QUEUE_METRICS_UP.set(0)
            log.debug("queue metrics not read", error=repr(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    if conn is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), 2)
