"""The dashboard and the alert rules name only metrics that a live stack exports (API, relay, cache worker), and
the relay exports the queues' depth, consumers and dead letters as RabbitMQ counts them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.events import CACHE_QUEUE, THUMBNAILS_QUEUE
from shared.settings import Settings
from tests.conftest import ADMIN
from tests.deploy.test_monitoring import dashboard_exprs, metric_names, rule_exprs
from tests.integration.test_dead_letters import dead_letter
from tests.support.processes import api_process, free_port, worker_processes
from tests.support.queues import empty_dramatiq_queues


def sample_names(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


async def scrape_until(url: str, *needles: str, within: float = 40.0) -> str:
    """The text of ``url`` once it holds every one of ``needles``."""
    deadline = time.monotonic() + within
    text = ""
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as r:
                    text = await r.text()
                    if r.status == 200 and all(n in text for n in needles):
                        return text
            missing = [n for n in needles if n not in text]
            assert time.monotonic() < deadline, f"{url} never showed {missing}"
            await asyncio.sleep(0.3)


@pytest.fixture
async def empty_queues(rabbitmq_url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    async with empty_dramatiq_queues(rabbitmq_url) as channel:
        yield channel


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_every_metric_of_the_dashboard_and_the_rules_is_exported_by_a_live_stack(
    settings: Settings,
    rabbitmq_url: str,
    tmp_path: Path,
    pg: asyncpg.Connection,
    empty_queues: aio_pika.abc.AbstractChannel,
) -> None:
    # Given a dead letter on thumbnails, and a live API (a tight read limit, so a 429 happens), relay and cache worker
    await dead_letter(empty_queues, THUMBNAILS_QUEUE, "make_thumbnails", "OSError: disk full")
    relay_port, worker_port = free_port(), free_port()
    limits = {"RATE_LIMIT_READS_PER_SECOND": "1", "RATE_LIMIT_READS_BURST": "2", "RABBITMQ_URL": rabbitmq_url}
    runs = (
        (("relay",), {"RELAY_METRICS_PORT": str(relay_port)}),
        (
            ("cache", "--processes", "1", "--threads", "1"),
            {"dramatiq_prom_port": str(worker_port), "dramatiq_prom_db": str(tmp_path / "prom")},
        ),
    )
    async with (
        api_process(settings, tmp_path / "api.log", **limits) as api,
        worker_processes(settings, rabbitmq_url, tmp_path, *runs),
        aiohttp.ClientSession() as session,
    ):
        # When traffic goes through: writes, reads (some refused with 429), and one event whose projection fails
        async with session.post(api.url + "/api/categories", json={"name": "Tools"}, headers=ADMIN) as r:
            assert r.status == 201
        statuses = []
        for _ in range(5):
            async with session.get(api.url + "/api/categories/tools") as r:
                statuses.append(r.status)
        assert 429 in statuses
        await pg.execute(
            """INSERT INTO outbox (type, aggregate, aggregate_id, version, payload, request_id)
               VALUES ('record.created', 'record', 'not-a-number', 1, '{}', 'req-fails')"""
        )
        # Then the relay, the worker and the API each export their series
        relay_text = await scrape_until(
            f"http://127.0.0.1:{relay_port}/metrics",
            "stockroom_relay_events_published_total{",
            'stockroom_queue_consumers{queue="cache-warming"} 1.0',
            'stockroom_queue_dead_letters{queue="thumbnails"} 1.0',
        )
        worker_text = await scrape_until(
            f"http://127.0.0.1:{worker_port}/",
            "dramatiq_message_errors_total{",
            "dramatiq_message_retries_total{",
            "dramatiq_message_duration_milliseconds_bucket{",
        )
        api_text = await scrape_until(api.url + "/metrics", "stockroom_rate_limited_total{")
    exported = {**sample_names(api_text), **sample_names(relay_text), **sample_names(worker_text)}
    # And every metric the dashboard and the alert rules read is among them
    used = metric_names(dashboard_exprs()) | metric_names(rule_exprs())
    assert used - set(exported) == set()
    # And the queue series are RabbitMQ's own counts: one consumer on cache-warming, none on thumbnails
    consumers = {labels["queue"]: v for labels, v in exported["stockroom_queue_consumers"]}
    assert consumers[CACHE_QUEUE] == 1
    assert consumers[THUMBNAILS_QUEUE] == 0
    assert {labels["queue"]: v for labels, v in exported["stockroom_queue_dead_letters"]} == {
        CACHE_QUEUE: 0,
        THUMBNAILS_QUEUE: 1,
    }
    assert exported["stockroom_queue_metrics_up"] == [({}, 1.0)]
