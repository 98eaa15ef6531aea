"""The whole pipeline, as it runs: API -> outbox -> relay -> RabbitMQ -> cache worker process -> Redis -> API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from api.app import create_app
from shared.readmodel import read
from shared.readmodel.client import redis_runner
from shared.settings import Settings
from tests.conftest import ADMIN
from tests.support.tcp_proxy import TcpProxy
from worker.relay import run as run_relay

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def pipeline_settings(settings: Settings, rabbitmq_url: str) -> Settings:
    # A session vhost is shared by the tests of a run: start each pipeline test with empty queues.
    import aio_pika

    conn = await aio_pika.connect(rabbitmq_url)
    async with conn:
        channel = await conn.channel()
        for q in ("cache-warming", "cache-warming.DQ", "thumbnails", "thumbnails.DQ"):
            with contextlib.suppress(Exception):
                await channel.queue_delete(q)
    return settings.model_copy(
        update={"rabbitmq_url": rabbitmq_url, "relay_metrics_port": 0, "relay_poll_interval": 0.5}
    )


@pytest.fixture
async def relay(pipeline_settings: Settings) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_relay(pipeline_settings, stop))
    yield
    stop.set()
    await asyncio.wait_for(task, 15)


@pytest.fixture
def cache_worker(pipeline_settings: Settings, tmp_path: Path) -> object:
    """``python -m worker cache`` as a real process; its log lines are kept for the test to read."""
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": pipeline_settings.database_url,
        "REDIS_URL": pipeline_settings.redis_url,
        "RABBITMQ_URL": pipeline_settings.rabbitmq_url,
        "LOG_FORMAT": "json",
        "LOG_EVENTS": "true",
        "dramatiq_prom_port": str(_free_port()),
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "cache", "--processes", "1", "--threads", "2"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    yield log_path
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _eventually(check, seconds: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_a_write_reaches_redis_through_relay_and_worker(
    aiohttp_client, pipeline_settings: Settings, relay: None, cache_worker: Path
) -> None:
    # Given an API whose own write-through to Redis is cut off (so only the pipeline can project)
    proxy = TcpProxy("127.0.0.1", 6379)
    await proxy.start()
    await proxy.cut()
    writer = await aiohttp_client(
        create_app(pipeline_settings.model_copy(update={"redis_url": proxy.url_for(pipeline_settings.redis_url)}))
    )
    redis_client = aioredis.from_url(pipeline_settings.redis_url)
    run = redis_runner(redis_client)
    # When a category and a product are created, then the product is changed, under one request id each
    assert (await writer.post("/api/categories", json={"name": "Tools"}, headers=ADMIN)).status == 201
    r = await writer.post(
        "/api/products",
        json={"name": "Saw", "price": "12.50", "category": "tools"},
        headers={**ADMIN, "X-Request-ID": "req-create-saw"},
    )
    assert r.status == 201
    r = await writer.patch("/api/products/saw", json={"stock": 7}, headers={**ADMIN, "X-Request-ID": "req-patch-saw"})
    assert r.status == 200

    # Then the worker projects the newest version into Redis, category count included
    async def projected() -> object:
        return await read.product_by_slug(run, "saw")

    found = await _eventually(projected)
    assert found is not None, _tail(cache_worker)
    body, etag = found
    assert etag == '"2"'
    assert b'"stock":7' in body

    async def counted() -> object:
        hit = await read.category_by_slug(run, "tools")
        return hit is not None and b'"product_count":1' in hit[0]

    assert await _eventually(counted), _tail(cache_worker)
    # And the worker's log follows each event by the request id of the write that caused it
    log = await _eventually(lambda: _read_when(cache_worker, "req-patch-saw"))
    assert any(line.get("request_id") == "req-patch-saw" for line in _json_lines(log))
    assert "projected" in log
    await redis_client.aclose()
    await proxy.stop()


def _tail_all(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


async def _read_when(path: Path, needle: str) -> str:
    text = _tail(path)
    return text if needle in text else ""


def _start_cache_worker(settings: Settings, log_path: Path, threads: int = 4) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "RABBITMQ_URL": settings.rabbitmq_url,
        "LOG_FORMAT": "json",
        "LOG_EVENTS": "true",
        "dramatiq_prom_port": str(_free_port()),
    }
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "worker", "cache", "--processes", "1", "--threads", str(threads)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.slow
async def test_a_worker_stopped_with_sigterm_mid_burst_loses_no_event(
    pipeline_settings: Settings, relay: None, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    # Given a burst of 12,000 committed record writes (row and outbox row, as the API writes them): enough that
    # the worker cannot have projected them all by the time it is told to stop, however fast the host
    ids = await pg.fetch(
        """WITH w AS (INSERT INTO records (data) SELECT jsonb_build_object('n', g) FROM generate_series(1, 12000) g
                      RETURNING id, version)
           INSERT INTO outbox (type, aggregate, aggregate_id, version)
           SELECT 'record.created', 'record', id::text, version FROM w RETURNING aggregate_id::bigint AS id"""
    )
    ids = [r["id"] for r in ids]
    redis_client = aioredis.from_url(pipeline_settings.redis_url)
    run = redis_runner(redis_client)
    first_log = tmp_path / "first.log"
    first = _start_cache_worker(pipeline_settings, first_log, threads=1)

    # When the worker gets SIGTERM as soon as it has projected some (watched in Redis: its log arrives late), and
    # a new worker takes over
    async def started() -> bool:
        return await read.record_by_id(run, ids[20]) is not None

    assert await _eventually(started, 30)
    first.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(first.wait, 40)
    done_by_first = sum(line.get("event") == "projected" for line in _json_lines(_tail_all(first_log)))
    second = _start_cache_worker(pipeline_settings, tmp_path / "second.log")
    try:
        # Then the first stopped mid-burst and exited cleanly, and every record is projected: nothing was lost
        assert code == 0
        assert 0 < done_by_first < len(ids), done_by_first

        async def all_projected() -> bool:
            for rid in ids:
                if await read.record_by_id(run, rid) is None:
                    return False
            return True

        assert await _eventually(all_projected, 60)
    finally:
        second.terminate()
        await asyncio.to_thread(second.wait, 20)
        await redis_client.aclose()


def _json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON log lines of ``text`` (a process may print other lines too). dramatiq's parent forwards its
    workers' output, so two of them may end up on one line, one after the other: each is read."""
    decoder = json.JSONDecoder()
    found = []
    for line in text.splitlines():
        at = 0
        while line.startswith("{", at):
            value, at = decoder.raw_decode(line, at)
            found.append(value)
    return found
