"""Logs: one JSON object per line, the request id from the HTTP request to the relay, and never a secret."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiohttp
import asyncpg
import pytest

from shared.settings import Settings
from tests.conftest import ADMIN, ADMIN_KEY
from tests.support.processes import api_process, env_for, free_port, run_python, spawn

#: Secrets planted in the processes' settings and requests; none may reach a log line.
PG_PASSWORD = "pg-pass-4711"
AMQP_PASSWORD = "amqp-pass-4711"
WRONG_KEY = "wrong-key-of-some-length-4711"


def lines(text: str) -> list[dict[str, Any]]:
    """Every line of a JSON log, parsed (fails on a line that is not one JSON object)."""
    out = []
    for line in text.splitlines():
        if line.strip():
            parsed = json.loads(line)
            assert isinstance(parsed, dict), line
            out.append(parsed)
    return out


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port or 5432}"))


async def _terminate(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 20)


@pytest.mark.slow
async def test_the_api_logs_json_lines_with_the_request_id_and_no_secret(
    settings: Settings, tmp_path: Path, pg: asyncpg.Connection
) -> None:
    # Given the API with a password in its database URL (PostgreSQL ignores it here), RabbitMQ's URL with a password
    # (and nothing listening there), debug logging on
    s = settings.model_copy(
        update={
            "database_url": with_password(settings.database_url, PG_PASSWORD),
            "rabbitmq_url": f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:{free_port()}/",
        }
    )
    async with api_process(s, tmp_path / "api.log", LOG_LEVEL="DEBUG") as api, aiohttp.ClientSession() as session:
        # When a write with the admin key, a write with a wrong key, a failing readiness probe and a read with an
        # unknown query parameter (400) are made
        async with session.post(
            api.url + "/api/records", json={"a": 1}, headers={**ADMIN, "X-Request-ID": "req-log-write"}
        ) as r:
            assert r.status == 201
            assert r.headers["X-Request-ID"] == "req-log-write"
        bad = {"Authorization": f"Bearer {WRONG_KEY}", "X-Request-ID": "req-log-401"}
        async with session.post(api.url + "/api/records", json={"a": 2}, headers=bad) as r:
            assert r.status == 401
        async with session.get(api.url + "/health/ready") as r:
            assert r.status == 503
        # (a query parameter the route does not know is 400 naming it: CONTRACT.md)
        async with session.get(api.url + "/api/records/999?token=" + WRONG_KEY) as r:
            assert r.status == 400
            made = r.headers["X-Request-ID"]
        assert await _terminate(api.proc) == 0
    text = api.output()
    # Then every line is one JSON object
    records = lines(text)
    by_rid = {r.get("request_id"): r for r in records if r.get("event") == "request"}
    # And each request has one access line: its request id (given or made), route template, status and duration,
    # at INFO for writes, 4xx and 5xx, and at DEBUG for the rest (successful reads)
    write = by_rid["req-log-write"]
    assert (write["route"], write["status"], write["level"]) == ("/api/records", 201, "info")
    assert write["ms"] >= 0
    assert (by_rid["req-log-401"]["status"], by_rid["req-log-401"]["level"]) == (401, "info")
    assert (by_rid[made]["route"], by_rid[made]["status"]) == ("/api/records/{id}", 400)
    assert all(
        r["level"] == "debug"
        for r in records
        if r.get("event") == "request" and r["status"] < 400 and r["method"] == "GET"
    )
    assert all(r["process"] == "api" and "timestamp" in r for r in records)
    # And the outbox row carries the request id to the relay
    assert await pg.fetchval("SELECT request_id FROM outbox") == "req-log-write"
    # And no secret is in the log
    for secret in (ADMIN_KEY, WRONG_KEY, PG_PASSWORD, AMQP_PASSWORD):
        assert secret not in text


async def _purge_worker_queues(rabbitmq_url: str) -> None:
    """Leave no message behind in the session's vhost (the next test's worker would count it)."""
    conn = await aio_pika.connect(rabbitmq_url)
    async with conn:
        channel = await conn.channel()
        for queue in ("cache-warming", "thumbnails"):
            await (await channel.get_queue(queue, ensure=False)).purge()


@pytest.mark.slow
@pytest.mark.parametrize("log_events", [False, True], ids=["default", "LOG_EVENTS"])
async def test_the_relay_logs_each_event_with_its_request_id_when_told(
    client, settings: Settings, rabbitmq_url: str, pg: asyncpg.Connection, tmp_path: Path, log_events: bool
) -> None:
    # Given a write made under a request id
    r = await client.post("/api/records", json={"a": 1}, headers={**ADMIN, "X-Request-ID": "req-log-relay"})
    assert r.status == 201
    # When the relay publishes it, at the default level, with LOG_EVENTS on (make run) or unset
    log = tmp_path / "relay.log"
    events = {"LOG_EVENTS": "true"} if log_events else {}
    env = env_for(settings, RABBITMQ_URL=rabbitmq_url, LOG_LEVEL="INFO", **events)
    proc = await spawn(log, "-m", "worker", "relay", env=env)
    try:
        deadline = time.monotonic() + 20
        while await pg.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"):
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
    finally:
        assert await _terminate(proc) == 0
        await _purge_worker_queues(rabbitmq_url)
    # Then with LOG_EVENTS its log line names the event and the request id; without, there is no per-event or
    # per-batch line (the counter counts them); and every line is JSON
    records = lines(log.read_text())
    published = [(r["type"], r["request_id"]) for r in records if r.get("event") == "event published"]
    batches = [r for r in records if r.get("event") == "outbox batch published"]
    assert published == ([("record.created", "req-log-relay")] if log_events else [])
    assert len(batches) == (1 if log_events else 0)
    assert records[-1]["event"] == "relay stopped"


@pytest.mark.slow
async def test_the_relay_never_logs_the_rabbitmq_password(settings: Settings, tmp_path: Path) -> None:
    # Given a relay whose RabbitMQ (URL with a password) is not there
    log = tmp_path / "relay.log"
    url = f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:{free_port()}/"
    proc = await spawn(log, "-m", "worker", "relay", env=env_for(settings, RABBITMQ_URL=url, LOG_LEVEL="DEBUG"))
    # When it has failed to connect a few times
    deadline = time.monotonic() + 15
    while log.read_text().count("relay pass failed") < 2:
        assert time.monotonic() < deadline, log.read_text()
        await asyncio.sleep(0.1)
    # Then it stops cleanly on SIGTERM, and its log has the failures without the password
    assert await _terminate(proc) == 0
    text = log.read_text()
    assert lines(text)
    assert AMQP_PASSWORD not in text


SCRIPT = """
import logging
from shared.logs import configure_logging, get_logger
from shared.settings import Settings

configure_logging(Settings(_env_file=None, log_format={fmt!r}), "test")
log = get_logger("test")
log.info("connecting", url="postgresql://app:hunter2@db:5432/x", api_key="sr_live_secret", authorization="Bearer abc")
log.info("header", value="Bearer sr_live_secret")
logging.getLogger("aio_pika").warning("connection to %s failed", "amqp://app:hunter2@mq:5672/")
try:
    raise ConnectionError("cannot reach redis://:hunter2@cache:6379/0")
except ConnectionError:
    log.exception("failed")
"""


def _run(fmt: str) -> str:
    done = run_python("-c", SCRIPT.format(fmt=fmt), env=None, timeout=30, check=True)
    assert done.stdout == ""
    return done.stderr


def test_secrets_are_redacted_from_fields_messages_and_tracebacks() -> None:
    text = _run("json")
    records = lines(text)
    assert [r["event"] for r in records] == [
        "connecting",
        "header",
        "connection to amqp://app:***@mq:5672/ failed",
        "failed",
    ]
    assert records[0]["url"] == "postgresql://app:***@db:5432/x"
    assert records[0]["api_key"] == records[0]["authorization"] == "***"
    assert records[1]["value"] == "Bearer ***"
    assert "redis://:***@cache:6379/0" in records[3]["exception"]
    assert "hunter2" not in text
    assert "sr_live_secret" not in text


def test_console_format_is_for_humans() -> None:
    text = _run("console")
    first = text.splitlines()[0]
    assert "connecting" in first
    assert not first.startswith("{")
    assert "hunter2" not in text
    assert "sr_live_secret" not in text
