"""SIGTERM under load: the API drains what it accepted, the relay finishes its batch; nothing is failed or lost."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import aio_pika
import aiohttp
import asyncpg
import pytest

from shared.settings import Settings
from tests.conftest import ADMIN
from tests.support.processes import api_process, env_for, spawn
from worker.queues import DRAMATIQ_QUEUES, declare_topology, dramatiq_declarations

#: Concurrent writes at any moment, and in all.
CONCURRENCY = 32
WRITES = 400


@pytest.mark.slow
async def test_sigterm_under_load_fails_no_accepted_request_and_loses_no_event(
    settings: Settings, tmp_path: Path, pg: asyncpg.Connection
) -> None:
    # Given the API as users run it (rate limits off: this is about shutdown)
    async with api_process(settings, tmp_path / "api.log", RATE_LIMIT_ENABLED="false") as api:
        results: dict[int, tuple[int | str, float]] = {}
        quarter = asyncio.Event()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:

            async def write(n: int) -> None:
                try:
                    async with session.post(api.url + "/api/records", json={"n": n}, headers=ADMIN) as r:
                        await r.read()
                        results[n] = (r.status, time.monotonic())
                except (aiohttp.ClientError, OSError) as exc:
                    results[n] = (type(exc).__name__, time.monotonic())
                if len(results) >= WRITES // 4:
                    quarter.set()

            # When writes stream in, and SIGTERM arrives once a quarter of them are answered
            tasks = [asyncio.create_task(write(n)) for n in range(WRITES)]
            await quarter.wait()
            api.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            await asyncio.gather(*tasks)
        # Then the process exits 0, well within its shutdown timeout
        assert await asyncio.wait_for(api.proc.wait(), 20) == 0
    answered = {n for n, (status, _) in results.items() if status == 201}
    failed = {n: status for n, (status, _) in results.items() if status != 201}
    # And every request got a 201 or never reached a handler: no 5xx (or any other status)
    assert all(isinstance(status, str) for status in failed.values()), failed
    # And the requests in flight at SIGTERM were finished, not cut off
    assert any(at > signalled for status, at in results.values() if status == 201)
    assert failed, "the load ended before the listener closed; the test proves nothing"
    # And exactly the answered writes are in PostgreSQL, each with its outbox event
    stored = {row["data"]["n"] for row in await pg.fetch("SELECT data FROM records")}
    assert stored == answered
    assert await pg.fetchval("SELECT count(*) FROM outbox WHERE type = 'record.created'") == len(answered)
    assert "api_stopped" in api.output()


@pytest.mark.slow
async def test_sigterm_stops_the_relay_after_its_batch_with_every_sent_row_published(
    settings: Settings, rabbitmq_url: str, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    # Given a backlog of 3000 events and a queue receiving every integration event
    await pg.execute(
        """INSERT INTO outbox (type, aggregate, aggregate_id, version, payload, request_id)
           SELECT 'record.created', 'record', g::text, 1, jsonb_build_object('n', g), 'req-' || g
           FROM generate_series(1, 3000) g"""
    )
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        tap = await channel.declare_queue("shutdown-test.events", durable=False, auto_delete=False)
        await tap.bind(await declare_topology(channel), "#")
        await tap.purge()
        # When the relay drains it in batches of 50 and gets SIGTERM part way
        log = tmp_path / "relay.log"
        env = env_for(settings, RABBITMQ_URL=rabbitmq_url, RELAY_BATCH_SIZE="50")
        proc = await spawn(log, "-m", "worker", "relay", env=env)
        deadline = time.monotonic() + 20
        while await pg.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL") < 200:
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        # Then it exits 0
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        # And the rows marked sent are exactly the events published: none marked unpublished, none published unmarked
        sent = {str(r["event_id"]) for r in await pg.fetch("SELECT event_id FROM outbox WHERE sent_at IS NOT NULL")}
        published: set[str] = set()
        while (message := await tap.get(no_ack=True, fail=False, timeout=2)) is not None:
            assert message.message_id is not None
            published.add(message.message_id)
        assert published == sent
        assert len(sent) < 3000, "the relay finished the whole backlog before SIGTERM; the test proves nothing"
        assert "relay stopped" in log.read_text()
        # (the session's vhost is shared: leave no queue behind)
        await tap.delete(if_unused=False, if_empty=False)
        for q in DRAMATIQ_QUEUES:
            for name, _ in dramatiq_declarations(q):
                with contextlib.suppress(Exception):
                    await (await channel.declare_queue(name, passive=True)).purge()
