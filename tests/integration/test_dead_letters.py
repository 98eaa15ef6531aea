"""``python -m worker dead-letters list|replay|purge`` against real RabbitMQ, on messages dead-lettered here."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import dramatiq
import orjson
import pytest
from aio_pika.abc import AbstractChannel

from shared.events import CACHE_QUEUE, THUMBNAILS_QUEUE
from shared.settings import Settings
from tests.support.processes import run_module
from tests.support.queues import empty_dramatiq_queues

XQ = f"{CACHE_QUEUE}.XQ"


@pytest.fixture
async def channel(rabbitmq_url: str) -> AsyncIterator[AbstractChannel]:
    """A channel on the session's vhost with the dramatiq queues declared empty (and deleted after)."""
    async with empty_dramatiq_queues(rabbitmq_url) as ch:
        yield ch


def dramatiq_body(queue: str, actor: str, error: str | None) -> tuple[str, bytes]:
    options: dict[str, Any] = {}
    if error is not None:  # what dramatiq's Retries stores after a failure
        options = {"retries": 10, "traceback": f"Traceback (most recent call last):\n  ...\n{error}\n"}
    message = dramatiq.Message(
        queue_name=queue, actor_name=actor, args=({"id": "x"},), kwargs={}, options=options,
        message_id=str(uuid.uuid4()), message_timestamp=1_700_000_000_000,
    )  # fmt: skip
    return message.message_id, message.encode()


async def dead_letter(channel: AbstractChannel, queue: str, actor: str, error: str | None = None) -> str:
    """Publish a dramatiq message to ``queue`` and reject it the way dramatiq does: RabbitMQ moves it to ``Q.XQ``."""
    message_id, body = dramatiq_body(queue, actor, error)
    await channel.default_exchange.publish(aio_pika.Message(body, message_id=message_id), routing_key=queue)
    live = await channel.declare_queue(queue, passive=True)
    for _ in range(100):
        got = await live.get(no_ack=False, fail=False)
        if got is not None:
            await got.reject(requeue=False)
            return message_id
        await asyncio.sleep(0.02)
    raise AssertionError("the message did not arrive")


async def count(channel: AbstractChannel, name: str) -> int:
    queue = await channel.declare_queue(name, passive=True)
    return queue.declaration_result.message_count or 0


async def cli(settings: Settings, rabbitmq_url: str, *args: str) -> tuple[int, str, str]:
    return await run_module(settings, "-m", "worker", "dead-letters", *args, seconds=60, RABBITMQ_URL=rabbitmq_url)


async def test_list_shows_count_actor_age_and_first_error_per_queue_and_removes_nothing(
    channel: AbstractChannel, settings: Settings, rabbitmq_url: str
) -> None:
    # Given three dead letters on cache-warming (two actors) and one on thumbnails
    await dead_letter(channel, CACHE_QUEUE, "project_product", "ValueError: price out of range")
    await dead_letter(channel, CACHE_QUEUE, "project_product", "KeyError: 'slug'")
    await dead_letter(channel, CACHE_QUEUE, "project_record")
    await dead_letter(channel, THUMBNAILS_QUEUE, "make_thumbnails", "OSError: disk full")
    # When they are listed
    code, out, err = await cli(settings, rabbitmq_url, "list")
    # Then each queue's dead letters show by actor, with the oldest one's first error and age
    assert code == 0, err
    rows = [line.split(None, 4) for line in out.splitlines()[1:]]
    assert ["cache-warming.XQ", "project_product", "2", rows[0][3], "ValueError: price out of range"] == rows[0]
    assert rows[0][3].endswith("s")
    assert rows[1][:3] == ["cache-warming.XQ", "project_record", "1"]
    assert rows[1][4] == "-"
    assert rows[2][:3] == ["thumbnails.XQ", "make_thumbnails", "1"]
    assert rows[2][4] == "OSError: disk full"
    # And nothing was taken off the queues
    assert await count(channel, XQ) == 3
    assert await count(channel, f"{THUMBNAILS_QUEUE}.XQ") == 1
    # And --queue lists one queue only
    code, out, _ = await cli(settings, rabbitmq_url, "list", "--queue", THUMBNAILS_QUEUE)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["thumbnails.XQ"]


async def test_replay_puts_each_dead_letter_back_on_its_queue_once_with_its_retries_anew(
    channel: AbstractChannel, settings: Settings, rabbitmq_url: str
) -> None:
    # Given three dead letters on cache-warming
    ids = [await dead_letter(channel, CACHE_QUEUE, "project_product", "ValueError: boom") for _ in range(3)]
    # When two are replayed
    code, out, err = await cli(settings, rabbitmq_url, "replay", "--queue", CACHE_QUEUE, "--limit", "2")
    # Then the two oldest are on the live queue, as dramatiq messages of that queue with no retries counted
    assert code == 0, err
    assert "2 replayed" in out
    assert "1 left" in out
    assert "replay cache-warming.XQ" in err  # the progress bar
    live = await channel.declare_queue(CACHE_QUEUE, passive=True)
    replayed = []
    for _ in range(2):
        got = await live.get(no_ack=True)
        message = dramatiq.Message.decode(got.body)
        assert message.queue_name == CACHE_QUEUE
        assert "retries" not in message.options
        assert "traceback" not in message.options
        replayed.append(message.message_id)
    assert replayed == ids[:2]
    assert await count(channel, XQ) == 1


async def test_replay_while_every_replayed_message_fails_again_takes_each_only_once(
    channel: AbstractChannel, settings: Settings, rabbitmq_url: str
) -> None:
    # Given three dead letters, and a consumer that dead-letters again everything on the live queue at once
    ids = [await dead_letter(channel, CACHE_QUEUE, "project_product", "ValueError: boom") for _ in range(3)]
    live = await channel.declare_queue(CACHE_QUEUE, passive=True)
    deliveries: list[str] = []

    async def fail_again(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        deliveries.append(orjson.loads(message.body)["message_id"])
        await message.reject(requeue=False)

    tag = await live.consume(fail_again)
    try:
        # When everything is replayed
        code, out, err = await cli(settings, rabbitmq_url, "replay", "--queue", CACHE_QUEUE)
        await asyncio.sleep(0.5)
    finally:
        await live.cancel(tag)
    # Then the run ends, each message was delivered once, and all three are dead letters again
    assert code == 0, err
    assert "3 replayed" in out
    assert sorted(deliveries) == sorted(ids)
    assert await count(channel, XQ) == 3


async def test_purge_drops_the_dead_letters_of_one_queue_or_all(
    channel: AbstractChannel, settings: Settings, rabbitmq_url: str
) -> None:
    # Given dead letters on both queues
    for _ in range(2):
        await dead_letter(channel, CACHE_QUEUE, "project_product")
    await dead_letter(channel, THUMBNAILS_QUEUE, "make_thumbnails")
    # When one queue is purged, then all
    code, out, _ = await cli(settings, rabbitmq_url, "purge", "--queue", CACHE_QUEUE)
    assert (code, out) == (0, "cache-warming.XQ: 2 purged\n")
    assert await count(channel, XQ) == 0
    assert await count(channel, f"{THUMBNAILS_QUEUE}.XQ") == 1
    code, out, _ = await cli(settings, rabbitmq_url, "purge")
    assert code == 0
    assert "thumbnails.XQ: 1 purged" in out
    assert await count(channel, f"{THUMBNAILS_QUEUE}.XQ") == 0


async def test_an_unknown_queue_or_limit_is_refused(settings: Settings, rabbitmq_url: str) -> None:
    for args in (("list", "--queue", "nope"), ("replay", "--limit", "0"), ("replay", "--limit", "x"), ("drop",)):
        code, out, err = await cli(settings, rabbitmq_url, *args)
        assert (code, out) == (2, ""), args
        assert "error: " in err
