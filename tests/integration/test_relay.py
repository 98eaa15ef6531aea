"""The outbox relay against real PostgreSQL and RabbitMQ (and real dramatiq on the other side).

The relay's queues have fixed names (``cache-warming``, ``thumbnails``), so these tests run in a RabbitMQ vhost of
the session's own (tests/conftest.py); every test deletes the queues it uses first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import dramatiq
import orjson
import pytest
from aio_pika.abc import AbstractChannel, AbstractQueue
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import ConnectionClosed
from prometheus_client import REGISTRY

from shared.events import CACHE_ACTOR, CACHE_QUEUE, EXCHANGE, THUMBNAILS_QUEUE, actor_args, message_id
from shared.settings import Settings
from tests.conftest import clear_policy, set_policy
from tests.support.tcp_proxy import TcpProxy
from worker import relay
from worker.queues import AUDIT_QUEUE, DRAMATIQ_QUEUES, declare_topology, dramatiq_declarations

#: A queue of the test's own, bound to every integration event.
EVENTS_TAP = "relay-test.events"


@pytest.fixture(scope="module")
def amqp_url(rabbitmq_url: str) -> str:
    """The session's own vhost (tests/conftest.py); each test deletes the queues it uses first."""
    return rabbitmq_url


@pytest.fixture
async def channel(amqp_url: str) -> AsyncIterator[AbstractChannel]:
    """A plain channel on the test vhost, with every queue the relay touches deleted first."""
    conn = await aio_pika.connect(amqp_url)
    async with conn:
        ch = await conn.channel()
        names = [name for q in DRAMATIQ_QUEUES for name, _ in dramatiq_declarations(q)] + [AUDIT_QUEUE, EVENTS_TAP]
        for name in names:
            await ch.queue_delete(name)
        await ch.exchange_delete(EXCHANGE)
        yield ch


@pytest.fixture
async def tap(channel: AbstractChannel) -> AbstractQueue:
    """The relay's topology, and a queue of the test's own that receives every integration event."""
    exchange = await declare_topology(channel)
    queue = await channel.declare_queue(EVENTS_TAP, durable=False)
    await queue.bind(exchange, "#")
    return queue


@pytest.fixture
def relay_settings(settings: Settings, amqp_url: str) -> Settings:
    return settings.model_copy(
        update={
            "rabbitmq_url": amqp_url,
            "relay_batch_size": 50,
            "relay_poll_interval": 0.2,
            "relay_publish_timeout": 1.0,
            "relay_metrics_port": 0,
        }
    )


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    """The relay as a task in the test's loop; stopped (gracefully) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(settings, stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def insert_events(pg: asyncpg.Connection, n: int, event_type: str = "record.created") -> list[str]:
    """``n`` outbox rows in one statement (one NOTIFY); their event ids."""
    aggregate = event_type.split(".")[0]
    rows = await pg.fetch(
        """INSERT INTO outbox (type, aggregate, aggregate_id, version, payload, request_id)
           SELECT $1, $2, g::text, 1, jsonb_build_object('n', g), 'req-' || g FROM generate_series(1, $3) g
           RETURNING event_id""",
        event_type,
        aggregate,
        n,
    )
    return [str(r["event_id"]) for r in rows]


async def drain(queue: AbstractQueue, expected: int, within: float = 10.0) -> list[aio_pika.abc.AbstractMessage]:
    """Messages taken off ``queue`` until ``expected`` arrived (or ``within`` s passed), then whatever else is there."""
    got: list[aio_pika.abc.AbstractMessage] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            got.append(message)
        elif len(got) >= expected:
            break
        else:
            await asyncio.sleep(0.05)
    return got


async def cache_event_ids(channel: AbstractChannel) -> list[str]:
    """The ids of the events the cache-warming queue holds (several per message: a relay batch's)."""
    queue = await channel.get_queue(CACHE_QUEUE)
    messages = await drain(queue, await message_count(channel, CACHE_QUEUE), within=2)
    return [e["id"] for m in messages for e in dramatiq.Message.decode(m.body).args[0]]


async def wait_value(pg: asyncpg.Connection, sql: str, expected: object, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while (value := await pg.fetchval(sql)) != expected:
        assert time.monotonic() < deadline, f"{sql!r} is {value!r}, not {expected!r}"
        await asyncio.sleep(0.05)


async def wait_sent(pg: asyncpg.Connection, count: int, within: float = 10.0) -> None:
    await wait_value(pg, "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL", count, within)


async def message_count(channel: AbstractChannel, name: str) -> int:
    queue = await channel.declare_queue(name, passive=True)
    assert queue.declaration_result.message_count is not None
    return queue.declaration_result.message_count


def _event(event_type: str = "product.image_uploaded") -> relay.OutboxEvent:
    from datetime import UTC, datetime

    return relay.OutboxEvent(
        row_id=7,
        event_id="0b9c6f2e-8a51-4c6e-9d0b-3f7f1f3e2a10",
        type=event_type,
        aggregate="product",
        aggregate_id="42",
        version=3,
        payload={"slug": "steel-spade"},
        request_id="req-1",
        created_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    )


def test_an_event_becomes_one_integration_message_and_one_dramatiq_message_per_subscriber() -> None:
    # Given an image upload (two subscribers: thumbnails, and cache-warming, which takes a batch per message)
    event = _event()
    # When its messages are built
    out = relay.build_messages(event) + relay.batch_messages([event])
    # Then the first is the integration event, persistent JSON keyed by type and id
    integration = out[0]
    assert (integration.exchange, integration.routing_key) == (EXCHANGE, "product.image_uploaded")
    assert integration.properties.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert integration.properties.content_type == "application/json"
    assert integration.properties.message_id == event.event_id
    assert orjson.loads(integration.body) == {
        "id": event.event_id,
        "type": "product.image_uploaded",
        "aggregate": "product",
        "aggregate_id": "42",
        "version": 3,
        "occurred_at": "2026-01-02T03:04:05.678000+00:00",
        "request_id": "req-1",
        "data": {"slug": "steel-spade"},
    }
    # And the others are dramatiq's own messages on the default exchange, queue_name = the queue published to
    assert [(o.exchange, o.routing_key) for o in out[1:]] == [("", THUMBNAILS_QUEUE), ("", CACHE_QUEUE)]
    args = actor_args(orjson.loads(integration.body))
    for o, actor, arg in zip(out[1:], ["make_thumbnails", CACHE_ACTOR], [args, [args]], strict=True):
        decoded = dramatiq.Message.decode(o.body)
        assert decoded.queue_name == o.routing_key
        assert decoded.actor_name == actor
        assert decoded.args == (arg,)
        assert decoded.kwargs == {}
        assert decoded.options == {}
        assert decoded.message_id == message_id(event.event_id, o.routing_key)
        assert decoded.message_timestamp == 1767323045678
        assert o.properties.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    # And building again gives the same bytes (a re-published event is recognisable)
    again = relay.build_messages(event) + relay.batch_messages([event])
    assert [o.body for o in again] == [o.body for o in out]


def test_a_batch_goes_to_the_cache_worker_in_one_message_with_every_event_in_outbox_order() -> None:
    # Given a batch of three events
    events = [dataclasses.replace(_event("product.updated"), row_id=n, event_id=str(uuid.uuid4())) for n in range(3)]
    # When its batched messages are built
    (out,) = relay.batch_messages(events)
    # Then one cache-warming message carries all three, in order, under an id derived from theirs
    decoded = dramatiq.Message.decode(out.body)
    assert (out.routing_key, decoded.queue_name, decoded.actor_name) == (CACHE_QUEUE, CACHE_QUEUE, CACHE_ACTOR)
    assert [e["id"] for e in decoded.args[0]] == [e.event_id for e in events]
    assert decoded.message_id == dramatiq.Message.decode(relay.batch_messages(events)[0].body).message_id
    assert decoded.message_id != dramatiq.Message.decode(relay.batch_messages(events[:2])[0].body).message_id


async def test_every_event_arrives_once_on_the_exchange_and_on_its_dramatiq_queues(
    relay_settings: Settings, pg: asyncpg.Connection, channel: AbstractChannel, tap: AbstractQueue
) -> None:
    # Given events of three kinds in the outbox
    ids = {
        "category.created": (await insert_events(pg, 1, "category.created"))[0],
        "product.image_uploaded": (await insert_events(pg, 1, "product.image_uploaded"))[0],
        "record.created": (await insert_events(pg, 1, "record.created"))[0],
    }
    # When the relay runs
    async with running(relay_settings):
        await wait_sent(pg, 3)
        events = await drain(tap, 3)
    # Then each integration event arrived once, with its body and properties
    assert sorted(m.message_id or "" for m in events) == sorted(ids.values())
    for m in events:
        body = orjson.loads(m.body)
        assert m.routing_key == body["type"]
        assert body["id"] == ids[body["type"]]
        assert m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert m.content_type == "application/json"
        assert (m.type, m.correlation_id, m.priority, m.headers) == (body["type"], "req-1", 0, {})
        assert m.timestamp is not None
        assert body["data"] == {"n": 1}
        assert body["request_id"] == "req-1"
    # And the audit queue keeps them too, so they were never unroutable
    assert await message_count(channel, AUDIT_QUEUE) == 3
    # And the dramatiq queues hold one message per subscriber, addressed to their own queue
    thumbnails = await drain(await channel.get_queue(THUMBNAILS_QUEUE), 1)
    cache = await drain(await channel.get_queue(CACHE_QUEUE), 1)
    assert [dramatiq.Message.decode(m.body).args[0]["id"] for m in thumbnails] == [ids["product.image_uploaded"]]
    decoded = [dramatiq.Message.decode(m.body) for m in cache]
    assert {(d.queue_name, d.actor_name) for d in decoded} == {(CACHE_QUEUE, CACHE_ACTOR)}
    assert sorted(e["id"] for d in decoded for e in d.args[0]) == sorted(ids.values())
    assert all(m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT for m in thumbnails + cache)


async def test_a_nacked_publish_leaves_the_rows_unsent_until_the_broker_accepts(
    relay_settings: Settings, pg: asyncpg.Connection, channel: AbstractChannel, tap: AbstractQueue
) -> None:
    # Given a broker that nacks every message for cache-warming (a policy: length 0, reject-publish)
    set_policy("reject-all", f"^{CACHE_QUEUE}$", {"max-length": 0, "overflow": "reject-publish"})
    failures_before = relay.PUBLISH_FAILURES._value.get()
    ids = await insert_events(pg, 5)
    try:
        async with running(relay_settings):
            # When the relay tries for a while
            await asyncio.sleep(1.5)
            # Then no row is marked sent, although some messages of the batch were confirmed
            assert await pg.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL") == 0
            assert relay.PUBLISH_FAILURES._value.get() > failures_before
            # And once the broker accepts again, every row is sent
            clear_policy("reject-all")
            await wait_sent(pg, 5, within=15)
    finally:
        with contextlib.suppress(Exception):
            clear_policy("reject-all")
    assert sorted(await cache_event_ids(channel)) == sorted(ids)
    # (integration messages of the failed attempts were confirmed and are published again: at least once)
    assert {m.message_id for m in await drain(tap, 5)} == set(ids)


async def test_two_relays_at_once_publish_every_event_exactly_once(
    relay_settings: Settings, pg: asyncpg.Connection, channel: AbstractChannel, tap: AbstractQueue
) -> None:
    # Given 300 events waiting
    ids = await insert_events(pg, 300)
    settings = relay_settings.model_copy(update={"relay_batch_size": 20})
    # When two relays drain the outbox at once
    started = time.monotonic()
    async with running(settings), running(settings):
        await wait_sent(pg, 300, within=30)
    elapsed = time.monotonic() - started
    # Then every event was published exactly once, in total
    assert await message_count(channel, EVENTS_TAP) == 300
    assert sorted(await cache_event_ids(channel)) == sorted(ids)
    assert {m.message_id for m in await drain(tap, 300)} == set(ids)
    print(f"two relays: 300 events (600 messages) in {elapsed:.2f} s")


async def test_rabbitmq_outage_loses_no_event(
    relay_settings: Settings, pg: asyncpg.Connection, channel: AbstractChannel, tap: AbstractQueue
) -> None:
    # Given a relay that reaches RabbitMQ through a proxy, and events it has published
    target = urlsplit(relay_settings.rabbitmq_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.start()
    settings = relay_settings.model_copy(update={"rabbitmq_url": proxy.url_for(relay_settings.rabbitmq_url)})
    try:
        async with running(settings):
            before = await insert_events(pg, 20)
            await wait_sent(pg, 20)
            # When RabbitMQ becomes unreachable, writes go on
            await proxy.cut()
            during = [eid for _ in range(5) for eid in await insert_events(pg, 10)]
            await asyncio.sleep(2)
            # Then nothing written meanwhile is marked sent, and the backlog shows in the metrics
            assert await pg.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL") == 20
            assert REGISTRY.get_sample_value("stockroom_relay_outbox_backlog") == 50
            assert (REGISTRY.get_sample_value("stockroom_relay_outbox_oldest_unsent_age_seconds") or 0) > 0.5
            # And once RabbitMQ is back, every event arrives
            await proxy.restore()
            await wait_sent(pg, 70, within=20)
    finally:
        await proxy.stop()
    got = [m.message_id for m in await drain(tap, 70)]
    assert set(got) == set(before + during)
    print(f"outage: 70 events, {len(got) - 70} duplicates")


async def test_a_relay_started_while_rabbitmq_is_down_publishes_once_it_is_up(
    relay_settings: Settings, pg: asyncpg.Connection, tap: AbstractQueue
) -> None:
    # Given RabbitMQ unreachable from the start, and events waiting
    target = urlsplit(relay_settings.rabbitmq_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    settings = relay_settings.model_copy(update={"rabbitmq_url": proxy.url_for(relay_settings.rabbitmq_url)})
    ids = await insert_events(pg, 10)
    try:
        async with running(settings):
            await asyncio.sleep(1)
            assert await pg.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL") == 0
            # When RabbitMQ becomes reachable
            await proxy.start()
            # Then the backlog drains
            await wait_sent(pg, 10, within=15)
    finally:
        await proxy.stop()
    assert {m.message_id for m in await drain(tap, 10)} == set(ids)


async def test_notify_wakes_the_relay_long_before_the_poll_interval(
    relay_settings: Settings, pg: asyncpg.Connection, tap: AbstractQueue
) -> None:
    # Given an idle relay that polls only every 30 s (a first event proves it is up and listening)
    settings = relay_settings.model_copy(update={"relay_poll_interval": 30.0})
    async with running(settings):
        await insert_events(pg, 1)
        assert len(await drain(tap, 1)) == 1
        await asyncio.sleep(0.3)
        # When an event is committed
        started = time.monotonic()
        (event_id,) = await insert_events(pg, 1)
        # Then it is published within a second
        got = await drain(tap, 1, within=5)
        latency = time.monotonic() - started
    assert [m.message_id for m in got] == [event_id]
    assert latency < 1.0
    print(f"NOTIFY to published: {latency * 1000:.0f} ms")


async def test_a_dropped_listen_connection_is_replaced(
    relay_settings: Settings, pg: asyncpg.Connection, tap: AbstractQueue
) -> None:
    # Given a listening relay that polls only every 30 s
    settings = relay_settings.model_copy(update={"relay_poll_interval": 30.0})
    async with running(settings):
        await insert_events(pg, 1)
        assert len(await drain(tap, 1)) == 1
        # (marked sent first: killed between its confirm and its mark, the relay would rightly publish it again)
        await wait_sent(pg, 1)
        # When PostgreSQL drops every connection of the relay (the LISTEN one and the pool's)
        await pg.execute(
            """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()"""
        )
        await asyncio.sleep(1.5)
        # Then an event committed afterwards still wakes it
        started = time.monotonic()
        (event_id,) = await insert_events(pg, 1)
        got = await drain(tap, 1, within=5)
        latency = time.monotonic() - started
    assert [m.message_id for m in got] == [event_id]
    assert latency < 2.0


async def test_retention_deletes_old_sent_rows_only(
    relay_settings: Settings, pg: asyncpg.Connection, tap: AbstractQueue
) -> None:
    # Given sent rows older and younger than the retention (7 days), an old unsent row, and idempotency keys
    await pg.execute(
        """INSERT INTO outbox (type, aggregate, aggregate_id, version, created_at, sent_at)
           SELECT 'record.created', 'record', g::text, 1, now() - interval '10 days',
                  CASE WHEN g <= 3 THEN now() - interval '8 days' WHEN g <= 5 THEN now() - interval '6 days' END
           FROM generate_series(1, 6) g"""
    )
    await pg.execute(
        """INSERT INTO idempotency_keys (owner, key, request_hash, created_at)
           VALUES ('k', 'old', 'h', now() - interval '25 hours'), ('k', 'new', 'h', now() - interval '23 hours')"""
    )
    # When the relay starts (it cleans up at start)
    async with running(relay_settings):
        await wait_value(pg, "SELECT count(*) FILTER (WHERE sent_at IS NULL) || '/' || count(*) FROM outbox", "0/3")
    # Then only the sent rows past the retention are gone; the old unsent one was published, not deleted
    left = await pg.fetch("SELECT aggregate_id FROM outbox ORDER BY aggregate_id")
    assert [r["aggregate_id"] for r in left] == ["4", "5", "6"]
    assert [m.message_id for m in await drain(tap, 1)] != []
    assert [r["key"] for r in await pg.fetch("SELECT key FROM idempotency_keys")] == ["new"]


async def test_expired_rows_are_deleted_in_bounded_chunks(pg: asyncpg.Connection) -> None:
    # Given 7 sent rows past the retention
    await pg.execute(
        """INSERT INTO outbox (type, aggregate, aggregate_id, version, sent_at)
           SELECT 'record.created', 'record', g::text, 1, now() - interval '2 hours' FROM generate_series(1, 7) g"""
    )
    # When they are deleted 3 per statement
    deleted = await relay.delete_expired(pg, retention_hours=1, chunk=3)
    # Then all of them are gone
    assert deleted == 7
    assert await pg.fetchval("SELECT count(*) FROM outbox") == 0


@pytest.mark.parametrize("first", ["relay", "dramatiq"])
async def test_dramatiq_and_the_relay_declare_the_same_queues(
    amqp_url: str, channel: AbstractChannel, first: str
) -> None:
    broker = RabbitmqBroker(url=amqp_url, middleware=[])

    def dramatiq_declares() -> None:
        for queue in DRAMATIQ_QUEUES:
            broker.declare_queue(queue, ensure=True)

    try:
        # Given one side declared the queues
        if first == "relay":
            await declare_topology(channel)
        else:
            await asyncio.to_thread(dramatiq_declares)
        # When the other declares them too, then RabbitMQ finds no difference (no PRECONDITION_FAILED)
        if first == "relay":
            await asyncio.to_thread(dramatiq_declares)
        else:
            await declare_topology(channel)
        assert not channel.is_closed
    finally:
        broker.close()


async def test_a_queue_declared_otherwise_is_refused(amqp_url: str, channel: AbstractChannel) -> None:
    # Given the relay's queues (the check above would notice a difference: here is one)
    await declare_topology(channel)
    broker = RabbitmqBroker(url=amqp_url, middleware=[], max_priority=10)
    try:
        # When dramatiq declares them with other arguments, then RabbitMQ refuses
        with pytest.raises(ConnectionClosed):
            await asyncio.to_thread(broker.declare_queue, CACHE_QUEUE, ensure=True)
    finally:
        broker.close()


async def test_a_dramatiq_worker_runs_the_actor_with_the_event_args(
    relay_settings: Settings, pg: asyncpg.Connection, amqp_url: str, channel: AbstractChannel
) -> None:
    # Given a dramatiq worker with an actor named as the routing table says
    broker = RabbitmqBroker(url=amqp_url)
    received: list[dict[str, Any]] = []
    done = threading.Event()

    def project_events(events: list[dict[str, Any]]) -> None:
        received.extend(events)
        done.set()

    dramatiq.actor(project_events, broker=broker, queue_name=CACHE_QUEUE, actor_name=CACHE_ACTOR)
    worker = dramatiq.Worker(broker, worker_threads=1)
    # When the relay publishes a product event
    (event_id,) = await insert_events(pg, 1, "product.created")
    async with running(relay_settings):
        await wait_sent(pg, 1)
    worker.start()
    try:
        # Then the worker runs the actor once, with the event's identity
        assert await asyncio.to_thread(done.wait, 10)
    finally:
        await asyncio.to_thread(worker.stop, 5000)
        broker.close()
    assert received == [
        {
            "id": event_id,
            "type": "product.created",
            "aggregate": "product",
            "aggregate_id": "1",
            "version": 1,
            "request_id": "req-1",
        }
    ]


async def test_events_committed_close_together_while_the_relay_is_idle_share_one_cache_message(
    relay_settings: Settings, pg: asyncpg.Connection, channel: AbstractChannel
) -> None:
    # Given an idle relay that lingers 0.3 s after a wake-up (and polls rarely, so only NOTIFY wakes it)
    settings = relay_settings.model_copy(update={"relay_linger": 0.3, "relay_poll_interval": 5.0})
    async with running(settings):
        await asyncio.sleep(0.5)
        # When three writes commit one after the other, 20 ms apart
        ids = []
        for _ in range(3):
            ids += await insert_events(pg, 1)
            await asyncio.sleep(0.02)
        await wait_sent(pg, 3)
    # Then the cache worker gets them in one message, in commit order
    assert await message_count(channel, CACHE_QUEUE) == 1
    assert await cache_event_ids(channel) == ids
