"""``GET /api/asyncapi.json``, and every event the relay really publishes matches the document's schema for its key."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import asyncpg
import jsonschema
import orjson
import pytest
from aio_pika.abc import AbstractChannel, AbstractQueue
from aiohttp.test_utils import TestClient

from api.app import create_app
from shared.events import EVENT_TYPES, EXCHANGE
from shared.settings import Settings
from shared.store import images
from tests.conftest import ADMIN
from tests.support import images as gen
from tests.support.api import category, product, record
from worker import relay
from worker.queues import AUDIT_QUEUE, DRAMATIQ_QUEUES, declare_topology, dramatiq_declarations

#: A queue of this test's own, bound to every routing key of the exchange.
TAP = "asyncapi-test.events"


async def test_the_document_is_served_with_the_other_docs(client: TestClient, aiohttp_client, settings) -> None:  # type: ignore[no-untyped-def]
    # When the document is fetched (with and without a trailing slash)
    for path in ("/api/asyncapi.json", "/api/asyncapi.json/"):
        r = await client.get(path)
        # Then it is the AsyncAPI 3.0 document of the exchange, every event type a channel
        assert r.status == 200
        assert r.content_type == "application/json"
        doc = await r.json()
        assert doc["asyncapi"] == "3.0.0"
        assert set(doc["channels"]) == set(EVENT_TYPES)
    # And with DOCS_ENABLED=false it is 404, like the other documentation routes
    off = await aiohttp_client(create_app(settings.model_copy(update={"docs_enabled": False})))
    assert (await off.get("/api/asyncapi.json")).status == 404
    # And, like the other documents, it is never rate-limited
    tight = await aiohttp_client(
        create_app(settings.model_copy(update={"rate_limit_reads_per_second": 1, "rate_limit_reads_burst": 1}))
    )
    assert [(await tight.get("/api/asyncapi.json")).status for _ in range(5)] == [200] * 5
    assert (await tight.get("/api/categories")).status == 200
    assert (await tight.get("/api/categories")).status == 429


@pytest.fixture
async def tap(rabbitmq_url: str) -> AsyncIterator[AbstractQueue]:
    """The relay's topology on the session's vhost (emptied first and after), and a queue bound to ``#``."""
    conn = await aio_pika.connect(rabbitmq_url)
    async with conn:
        channel: AbstractChannel = await conn.channel()
        names = [name for q in DRAMATIQ_QUEUES for name, _ in dramatiq_declarations(q)] + [AUDIT_QUEUE, TAP]
        for name in names:
            await channel.queue_delete(name)
        exchange = await declare_topology(channel)
        queue = await channel.declare_queue(TAP, durable=False)
        await queue.bind(exchange, "#")
        yield queue
        for name in names:
            await channel.queue_delete(name)


@contextlib.asynccontextmanager
async def running_relay(settings: Settings, rabbitmq_url: str) -> AsyncIterator[None]:
    update = {"rabbitmq_url": rabbitmq_url, "relay_poll_interval": 0.2, "relay_metrics_port": 0}
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(settings.model_copy(update=update), stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def every_kind_of_write(client: TestClient, pg: asyncpg.Connection) -> None:
    """Writes that make every event type: through the API, and the thumbnail worker's own two writes."""
    await category(client, "Garden Tools")
    await category(client, "Sheds", parent="garden-tools")
    assert (await client.patch("/api/categories/sheds", json={"description": "wooden"}, headers=ADMIN)).status == 200
    assert (await client.delete("/api/categories/sheds", headers=ADMIN)).status == 204
    assert (await client.post("/api/categories/sheds/restore", headers=ADMIN)).status == 200
    spade = await product(client, "Steel Spade", attributes={"steel": "carbon"})
    assert (await client.patch("/api/products/steel-spade", json={"stock": 4}, headers=ADMIN)).status == 200
    assert (await client.delete("/api/products/steel-spade", headers=ADMIN)).status == 204
    assert (await client.post("/api/products/steel-spade/restore", headers=ADMIN)).status == 200
    for done in ("ready", "failed"):
        headers = {**ADMIN, "Content-Type": "image/jpeg"}
        body = gen.jpeg(120 + len(done), 80)  # another image each time
        assert (await client.put("/api/products/steel-spade/image", data=body, headers=headers)).status == 202
        [event] = (await gen.image_events(pg, spade["id"], "product.image_uploaded"))[-1:]
        original = orjson.loads(event["payload"])["original"]
        if done == "ready":
            thumbnails = {"small": {"key": "thumbs/x.webp", "width": 1, "height": 1, "format": "webp"}}
            assert await images.mark_ready(pg, spade["id"], original, thumbnails, "req-ready") is not None
        else:
            assert await images.mark_failed(pg, spade["id"], original, "cannot identify image", "req-fail") is not None
    assert await images.request_regeneration(pg, [spade["id"]], "req-regenerate") == 1
    assert (await client.delete("/api/products/steel-spade/image", headers=ADMIN)).status == 204
    doc = await record(client, {"anything": [1, 2, {"nested": True}]})
    assert (await client.put(f"/api/records/{doc['id']}", json={"other": 1}, headers=ADMIN)).status == 200
    assert (await client.delete(f"/api/records/{doc['id']}", headers=ADMIN)).status == 204
    assert (await client.put("/hello/pepe", json={"dateOfBirth": "1990-05-17"}, headers=ADMIN)).status == 204


@pytest.mark.slow
async def test_every_published_event_matches_the_schema_of_its_routing_key(
    client: TestClient, pg: asyncpg.Connection, settings: Settings, rabbitmq_url: str, tap: AbstractQueue
) -> None:
    # Given the document the API serves, and writes that make every event type
    doc = await (await client.get("/api/asyncapi.json")).json()
    await every_kind_of_write(client, pg)
    expected = await pg.fetchval("SELECT count(*) FROM outbox")
    # When the relay publishes them to the exchange
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with running_relay(settings, rabbitmq_url):
        deadline = time.monotonic() + 20
        while len(got) < expected:
            assert time.monotonic() < deadline, f"{len(got)} of {expected} events arrived"
            message = await tap.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
            else:
                got.append(message)
    # Then each body is valid against the schema of the channel its routing key addresses
    seen = set()
    for message in got:
        assert message.exchange == EXCHANGE
        channel = doc["channels"][message.routing_key]
        assert channel["address"] == message.routing_key
        ref = doc["components"]["messages"][message.routing_key]["payload"]["$ref"]
        schema = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        body: dict[str, Any] = orjson.loads(message.body)
        jsonschema.validate(body, schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
        seen.add(message.routing_key)
    # And every event type of the document was among them
    assert seen == set(doc["channels"])
