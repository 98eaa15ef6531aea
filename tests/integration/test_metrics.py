"""``GET /metrics``: requests by route template, latency, cache outcomes, outbox backlog, pools; where it is served."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from api.app import create_app
from api.state import READ_STATS, SETTINGS
from shared.events import CACHE_ACTOR
from shared.settings import Settings
from tests.support.api import category, record
from tests.support.processes import api_process, env_for, free_port, spawn


def samples(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels`` (None when there is none)."""
    for s in samples(text):
        if s.name == name and labels.items() <= s.labels.items():
            return s.value
    return None


async def scrape(client) -> str:  # type: ignore[no-untyped-def]
    r = await client.get("/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    return str(await r.text())


async def test_requests_are_counted_by_route_template_method_and_status(client) -> None:
    # Given a category
    await category(client, "Tools")
    # When it is read twice, a missing one once, and a path no route matches once
    for path in ("/api/categories/tools", "/api/categories/tools/", "/api/categories/ghost", "/no/such/path"):
        await client.get(path)
    text = await scrape(client)
    # Then requests are labelled by the route's template (trailing slash folded), never by the raw path
    route = "/api/categories/{slug}"
    assert value(text, "stockroom_http_requests_total", route=route, method="GET", status="200") == 2
    assert value(text, "stockroom_http_requests_total", route=route, method="GET", status="404") == 1
    assert value(text, "stockroom_http_requests_total", route="/api/categories", method="POST", status="201") == 1
    assert value(text, "stockroom_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert "tools" not in {s.labels.get("route") for s in samples(text)}
    assert not any("ghost" in v or "/no/such" in v for s in samples(text) for v in s.labels.values())


async def test_latency_is_a_histogram_per_route(client) -> None:
    await client.get("/api/categories")
    text = await scrape(client)
    labels = {"route": "/api/categories", "method": "GET"}
    assert value(text, "stockroom_http_request_duration_seconds_count", **labels) == 1
    assert value(text, "stockroom_http_request_duration_seconds_bucket", **labels, le="+Inf") == 1
    assert value(text, "stockroom_http_request_duration_seconds_bucket", **labels, le="0.001") is not None


async def test_unknown_methods_do_not_become_labels(client) -> None:
    await client.request("PROPFIND", "/api/categories")
    text = await scrape(client)
    assert value(text, "stockroom_http_requests_total", method="other") == 1
    assert not any(s.labels.get("method") == "PROPFIND" for s in samples(text))


async def test_cache_hits_misses_and_errors_are_the_read_stats(client) -> None:
    # Given a category projected into Redis by its write, and one Redis does not hold
    await category(client, "Tools")
    stats = client.app[READ_STATS]
    # When it is read twice, and a missing one once
    await client.get("/api/categories/tools")
    await client.get("/api/categories/tools")
    await client.get("/api/categories/ghost")
    text = await scrape(client)
    # Then the counters say what the read use cases counted
    assert stats.hits >= 2
    assert stats.misses >= 1
    assert value(text, "stockroom_cache_hits_total") == stats.hits
    assert value(text, "stockroom_cache_misses_total") == stats.misses
    assert value(text, "stockroom_cache_errors_total") == stats.errors == 0


async def test_cache_errors_count_reads_that_fell_back_to_postgresql(aiohttp_client, settings: Settings) -> None:
    # Given an API whose Redis is not there
    client = await aiohttp_client(
        create_app(settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"}))
    )
    await category(client, "Tools")
    # When a category is read
    r = await client.get("/api/categories/tools")
    assert r.status == 200
    # Then the fallback is counted
    errors = value(await scrape(client), "stockroom_cache_errors_total")
    assert errors is not None
    assert errors >= 1


async def test_outbox_backlog_and_age_of_the_oldest_unsent_event(client, pg) -> None:
    # Given two writes and no relay
    await record(client, {"a": 1})
    await record(client, {"a": 2})
    await pg.execute(
        "UPDATE outbox SET created_at = now() - interval '90 seconds' WHERE id = (SELECT min(id) FROM outbox)"
    )
    text = await scrape(client)
    # Then both are in the backlog, the oldest 90 s old
    assert value(text, "stockroom_outbox_backlog") == 2
    age = value(text, "stockroom_outbox_oldest_unsent_age_seconds")
    assert age is not None
    assert 89 <= age < 120
    # And once sent, the backlog is empty and the age 0
    await pg.execute("UPDATE outbox SET sent_at = now()")
    text = await scrape(client)
    assert value(text, "stockroom_outbox_backlog") == 0
    assert value(text, "stockroom_outbox_oldest_unsent_age_seconds") == 0


async def test_pool_use_of_postgresql_and_redis(client) -> None:
    await record(client, {"a": 1})
    text = await scrape(client)
    # The scrape itself holds a PostgreSQL connection while it counts the outbox, not while it reads the pools.
    assert value(text, "stockroom_pg_pool_connections", state="max") == client.app[SETTINGS].pg_pool_max
    assert value(text, "stockroom_pg_pool_connections", state="in_use") == 0
    idle = value(text, "stockroom_pg_pool_connections", state="idle")
    assert idle is not None
    assert idle >= 1
    assert value(text, "stockroom_redis_pool_connections", state="in_use") == 0
    assert value(text, "stockroom_redis_pool_connections", state="max") is not None


async def test_metrics_can_be_turned_off(aiohttp_client, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"metrics_enabled": False})))
    r = await client.get("/metrics")
    assert r.status == 404


async def test_metrics_on_an_internal_port_are_not_on_the_main_port(aiohttp_client, settings: Settings) -> None:
    # Given an API with an internal port
    port = free_port()
    client = await aiohttp_client(
        create_app(settings.model_copy(update={"internal_port": port, "internal_host": "127.0.0.1"}))
    )
    await client.get("/api/categories")
    # Then /metrics is not on the main port
    assert (await client.get("/metrics")).status == 404
    # But on the internal one, with the main app's numbers; and nothing else is served there
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
            assert r.status == 200
            text = await r.text()
        async with session.get(f"http://127.0.0.1:{port}/api/categories") as r:
            assert r.status == 404
    assert value(text, "stockroom_http_requests_total", route="/api/categories", status="200") == 1
    assert value(text, "stockroom_http_requests_total", route="unmatched", status="404") == 1


@pytest.mark.slow
async def test_with_several_processes_the_numbers_are_the_sum_of_all(settings: Settings, tmp_path: Path) -> None:
    # Given the API as two processes sharing one port
    # When 40 requests are spread over fresh connections (the kernel balances them over both processes)
    async with (
        api_process(settings, tmp_path / "api.log", "--workers", "2") as api,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
    ):
        for _ in range(40):
            async with session.get(api.url + "/api/categories") as r:
                assert r.status == 200
        scrapes = []
        for _ in range(4):
            async with session.get(api.url + "/metrics") as r:
                assert r.status == 200
                scrapes.append(await r.text())
        # And the pool gauges add up both processes' pools (each refreshes its own every second)
        deadline = time.monotonic() + 5
        while value(scrapes[-1], "stockroom_pg_pool_connections", state="max") != 2 * settings.pg_pool_max:
            assert time.monotonic() < deadline, scrapes[-1]
            await asyncio.sleep(0.2)
            async with session.get(api.url + "/metrics") as r:
                scrapes.append(await r.text())
    # Then every scrape, whichever process answers it, counts all 40 (the scrapes themselves are counted too)
    for text in scrapes:
        assert value(text, "stockroom_http_requests_total", route="/api/categories", status="200") == 40
    assert "process_cpu_seconds_total" not in scrapes[0]


async def _scrape_when_up(url: str, needle: str, within: float = 30.0) -> str:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as r:
                    text = await r.text()
                    if r.status == 200 and needle in text:
                        return text
            except (aiohttp.ClientError, OSError):
                pass
            assert time.monotonic() < deadline, f"no {needle} on {url}"
            await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_the_relay_and_the_workers_expose_their_own_metrics(
    settings: Settings, rabbitmq_url: str, tmp_path: Path, pg
) -> None:
    # Given the relay with its metrics port, and a cache worker with dramatiq's Prometheus middleware
    relay_port, worker_port = free_port(), free_port()
    procs = []
    for args, env in (
        (("relay",), {"RELAY_METRICS_PORT": str(relay_port)}),
        (
            ("cache", "--processes", "1", "--threads", "1"),
            {"dramatiq_prom_port": str(worker_port), "dramatiq_prom_db": str(tmp_path / "prom")},
        ),
    ):
        full = env_for(settings, RABBITMQ_URL=rabbitmq_url, **env)
        procs.append(await spawn(tmp_path / f"{args[0]}.log", "-m", "worker", *args, env=full))
    try:
        # When an event goes through the relay to the worker
        await pg.execute(
            """INSERT INTO outbox (type, aggregate, aggregate_id, version, payload, request_id)
               VALUES ('record.created', 'record', '424242', 1, '{}', 'req-metrics')"""
        )
        # Then each answers a scrape: the relay with its published events, the worker with dramatiq's counters
        relay_text = await _scrape_when_up(
            f"http://127.0.0.1:{relay_port}/metrics", needle="stockroom_relay_events_published_total{"
        )
        assert "stockroom_relay_outbox_backlog" in relay_text
        worker_text = await _scrape_when_up(f"http://127.0.0.1:{worker_port}/", needle="dramatiq_messages_total{")
        assert 'actor_name="project_record"' in worker_text
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(proc.wait(), 30) for proc in procs]
    # And both stop cleanly on SIGTERM
    assert codes == [0, 0]


@pytest.fixture
def second_vhost(rabbitmq_url: str) -> Iterator[str]:
    """A second RabbitMQ vhost, so that a second worker's queue is another queue (no message reaches it)."""
    from tests import conftest

    name = f"{conftest.RABBITMQ_VHOST}-idle"
    user = urlsplit(conftest.RABBITMQ_BASE).username or "guest"
    if shutil.which("rabbitmqctl"):
        conftest._rabbitmqctl("add_vhost", name)
        conftest._rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
    else:
        conftest._management("PUT", f"vhosts/{name}")
        conftest._management("PUT", f"permissions/{name}/{user}", {"configure": ".*", "write": ".*", "read": ".*"})
    yield conftest.RABBITMQ_BASE.rstrip("/") + "/" + name
    if shutil.which("rabbitmqctl"):
        conftest._rabbitmqctl("delete_vhost", name)
    else:
        conftest._management("DELETE", f"vhosts/{name}")


def _sum(text: str, name: str) -> float:
    return sum(s.value for s in samples(text) if s.name == name)


@pytest.mark.slow
async def test_each_worker_reports_its_own_messages_only(
    settings: Settings, rabbitmq_url: str, second_vhost: str, tmp_path: Path, pg
) -> None:
    # Given two cache workers on one host, each with its metrics port, only the first fed by a relay
    busy_port, idle_port, relay_port = free_port(), free_port(), free_port()
    procs = []
    for name, args, env in (
        ("relay", ("relay",), {"RABBITMQ_URL": rabbitmq_url, "RELAY_METRICS_PORT": str(relay_port)}),
        ("busy", ("cache", "-p", "1", "-t", "1"), {"RABBITMQ_URL": rabbitmq_url, "dramatiq_prom_port": str(busy_port)}),
        ("idle", ("cache", "-p", "1", "-t", "1"), {"RABBITMQ_URL": second_vhost, "dramatiq_prom_port": str(idle_port)}),
    ):
        procs.append(await spawn(tmp_path / f"{name}.log", "-m", "worker", *args, env=env_for(settings, **env)))
    try:
        # When three events reach the first worker
        for aggregate_id in ("9001", "9002", "9003"):
            await pg.execute(
                """INSERT INTO outbox (type, aggregate, aggregate_id, version, payload, request_id)
                   VALUES ('record.created', 'record', $1, 1, '{}', 'req-own-metrics')""",
                aggregate_id,
            )
        deadline = time.monotonic() + 30
        while True:
            busy = await _scrape_when_up(f"http://127.0.0.1:{busy_port}/", needle="# HELP")
            if _sum(busy, "stockroom_cache_events_projected_total") >= 3 and not _sum(
                busy, "dramatiq_messages_inprogress"
            ):
                break
            assert time.monotonic() < deadline, busy
            await asyncio.sleep(0.2)
        idle = await _scrape_when_up(f"http://127.0.0.1:{idle_port}/", needle="# HELP")
        folders = [_metrics_folders(proc.pid) for proc in procs[1:]]
        # Then the first counts exactly its messages (the relay sends a batch's events in one: 1 to 3 of them), and
        # nothing is in progress once they are done
        messages = _sum(busy, "dramatiq_messages_total")
        assert 1 <= messages <= 3
        assert value(busy, "dramatiq_messages_total", actor_name=CACHE_ACTOR) == messages
        assert _sum(busy, "dramatiq_messages_inprogress") == 0
        # And its own counter counts the three projections (the per-event log lines are off by default)
        assert _sum(busy, "stockroom_cache_events_projected_total") == 3
        assert value(busy, "stockroom_cache_events_projected_total", type="record.created", changed="false") == 3
        # And the second, which got nothing, shows every actor's series at 0
        for name in ("dramatiq_messages_total", "dramatiq_message_errors_total", "dramatiq_message_retries_total"):
            assert value(idle, name, actor_name=CACHE_ACTOR, queue_name="cache-warming") == 0, name
        assert value(idle, "dramatiq_messages_inprogress", actor_name="project_product") == 0
        assert _sum(idle, "dramatiq_messages_total") == 0
        assert _sum(idle, "dramatiq_messages_inprogress") == 0
        # When an event the first worker cannot project arrives (its actor raises, dramatiq retries it)
        await pg.execute(
            """INSERT INTO outbox (type, aggregate, aggregate_id, version, payload, request_id)
               VALUES ('record.created', 'record', 'not-a-number', 1, '{}', 'req-own-metrics')"""
        )
        deadline = time.monotonic() + 30
        while value(busy, "dramatiq_message_retries_total", actor_name=CACHE_ACTOR) == 0:
            assert time.monotonic() < deadline, busy
            await asyncio.sleep(0.2)
            busy = await _scrape_when_up(f"http://127.0.0.1:{busy_port}/", needle="# HELP")
        idle = await _scrape_when_up(f"http://127.0.0.1:{idle_port}/", needle="# HELP")
        # Then its failure and retry are counted by actor there, and still nothing on the second
        assert (value(busy, "dramatiq_message_errors_total", actor_name=CACHE_ACTOR) or 0) >= 1
        assert value(busy, "dramatiq_message_errors_total", actor_name="project_product") == 0
        assert _sum(idle, "dramatiq_message_errors_total") == 0
        assert _sum(idle, "dramatiq_message_retries_total") == 0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(proc.wait(), 30) for proc in procs]
    assert codes == [0, 0, 0]
    # And each worker had a folder of its own, removed at exit
    assert all(len(f) == 1 for f in folders), folders
    assert not any(_metrics_folders(proc.pid) for proc in procs[1:])
    # And the failed projection's warning names the write's request id
    failures = [line for line in (tmp_path / "busy.log").read_text().splitlines() if "projection failed" in line]
    assert failures
    assert all(json.loads(line)["request_id"] == "req-own-metrics" for line in failures), failures


def _metrics_folders(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"stockroom-cache-metrics-{pid}-*"))
