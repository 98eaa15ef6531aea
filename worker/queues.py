"""The RabbitMQ topology the relay publishes into, declared from asyncio (aio-pika).

- ``stockroom.events``: the durable topic exchange for integration events (routing key = event type).
- ``stockroom.events.audit``: a durable queue bound to ``#`` on that exchange, capped at
  :data:`AUDIT_MAX_LENGTH` messages (oldest dropped first). It exists so that an integration event is never
  unroutable, and so that people looking at the management UI see the recent events.
- For every dramatiq queue ``Q`` (``thumbnails``, ``cache-warming``): ``Q``, ``Q.DQ`` and ``Q.XQ``, declared with
  exactly the arguments dramatiq's :class:`~dramatiq.brokers.rabbitmq.RabbitmqBroker` uses. RabbitMQ refuses a
  second declaration whose arguments differ (PRECONDITION_FAILED closes the channel), so the relay and the workers
  can only start in either order if both declare the same thing: this module is the one place that knows it.
"""

from __future__ import annotations

from typing import Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL
from dramatiq.common import dq_name, xq_name
from pamqp.common import FieldTable

from shared.events import BATCHED, EXCHANGE, ROUTES

#: Every dramatiq queue the routing table feeds, in a stable order.
DRAMATIQ_QUEUES: Final = tuple(
    sorted({queue for routes in ROUTES.values() for queue, _ in routes} | set(BATCHED.values()))
)

#: dramatiq's ``RabbitmqBroker(max_priority=...)``. ``worker.broker`` passes none, so dramatiq declares no
#: ``x-max-priority``; if it ever does, set the same number here or every declaration fails.
MAX_PRIORITY: Final[int | None] = None

#: How long a dead letter stays in ``Q.XQ``, in ms. dramatiq reads it from the environment variable
#: ``dramatiq_dead_message_ttl`` at import (default 7 days); taking its value keeps both sides equal.
XQ_MESSAGE_TTL: Final = int(DEAD_MESSAGE_TTL)

#: The queue that keeps integration events routable (see the module docstring).
AUDIT_QUEUE: Final = f"{EXCHANGE}.audit"
#: Enough for a look at recent traffic; the queue never grows without bound when nobody reads it.
AUDIT_MAX_LENGTH: Final = 100_000


def queue_arguments(queue: str, max_priority: int | None = MAX_PRIORITY) -> FieldTable:
    """The arguments of ``Q`` and ``Q.DQ`` (dramatiq's ``_build_queue_arguments``): dead letters go to ``Q.XQ``."""
    arguments: FieldTable = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": xq_name(queue)}
    # dramatiq tests truthiness, so max_priority=0 declares nothing either.
    if max_priority:
        arguments["x-max-priority"] = max_priority
    return arguments


def dramatiq_declarations(queue: str) -> list[tuple[str, FieldTable]]:
    """``(name, arguments)`` of ``Q``, ``Q.DQ`` and ``Q.XQ``, every one durable, in dramatiq's order."""
    return [
        (queue, queue_arguments(queue)),
        (dq_name(queue), queue_arguments(queue)),
        (xq_name(queue), {"x-message-ttl": XQ_MESSAGE_TTL}),
    ]


async def declare_dramatiq_queue(channel: AbstractChannel, queue: str) -> None:
    """Declare ``Q``, ``Q.DQ`` and ``Q.XQ`` as dramatiq does (a no-op when they already exist alike)."""
    for name, arguments in dramatiq_declarations(queue):
        await channel.declare_queue(name, durable=True, arguments=arguments)


async def declare_events_exchange(channel: AbstractChannel) -> AbstractExchange:
    """Declare the topic exchange and the capped audit queue bound to every routing key; return the exchange."""
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    audit = await channel.declare_queue(
        AUDIT_QUEUE,
        durable=True,
        # drop-head, not reject-publish: a full audit queue must never nack the relay's publishes.
        arguments={"x-max-length": AUDIT_MAX_LENGTH, "x-overflow": "drop-head"},
    )
    await audit.bind(exchange, routing_key="#")
    return exchange


async def declare_topology(channel: AbstractChannel) -> AbstractExchange:
    """Declare everything the relay publishes into; return the events exchange."""
    exchange = await declare_events_exchange(channel)
    for queue in DRAMATIQ_QUEUES:
        await declare_dramatiq_queue(channel, queue)
    return exchange
