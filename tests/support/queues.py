"""The session's RabbitMQ vhost for a test: the dramatiq queues, declared empty, and deleted after."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aio_pika
from aio_pika.abc import AbstractChannel

from worker.queues import DRAMATIQ_QUEUES, declare_dramatiq_queue, dramatiq_declarations


@contextlib.asynccontextmanager
async def empty_dramatiq_queues(rabbitmq_url: str) -> AsyncIterator[AbstractChannel]:
    """A channel on ``rabbitmq_url`` with every dramatiq queue (and its ``.DQ`` and ``.XQ``) declared empty, as
    dramatiq declares them; all of them deleted at the end."""
    conn = await aio_pika.connect(rabbitmq_url)
    async with conn:
        channel = await conn.channel()
        names = [name for q in DRAMATIQ_QUEUES for name, _ in dramatiq_declarations(q)]
        for name in names:
            await channel.queue_delete(name)
        for queue in DRAMATIQ_QUEUES:
            await declare_dramatiq_queue(channel, queue)
        yield channel
        for name in names:
            await channel.queue_delete(name)
