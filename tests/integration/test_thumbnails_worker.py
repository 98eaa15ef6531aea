"""``python -m worker thumbnails`` as a real process, fed by the real relay: a worker killed mid-job."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from shared.events import THUMBNAILS_QUEUE
from shared.settings import Settings
from tests.conftest import ADMIN
from tests.integration.test_thumbnails import count, new_product, original_as_fifo, row, upload, wait_for_reader
from tests.support import images as gen
from worker import relay

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pipeline_settings(settings: Settings, rabbitmq_url: str) -> Settings:
    return settings.model_copy(update={"rabbitmq_url": rabbitmq_url, "relay_poll_interval": 0.2})


@pytest.fixture
async def relay_running(pipeline_settings: Settings) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(pipeline_settings, stop))
    yield
    stop.set()
    await asyncio.wait_for(task, 10)


class Workers:
    """``python -m worker thumbnails`` processes, each in a process group of its own."""

    def __init__(self, settings: Settings) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "RABBITMQ_URL": settings.rabbitmq_url,
            "MEDIA_ROOT": settings.media_root,
            "LOG_FORMAT": "console",
            "PYTHONUNBUFFERED": "1",
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, log: Path | None = None) -> subprocess.Popen[bytes]:
        """One worker; its output goes to ``log`` if given."""
        out = log.open("wb") if log is not None else subprocess.DEVNULL
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "thumbnails", "--processes", "1", "--threads", "1"],
            cwd=ROOT,
            env=self.env,
            start_new_session=True,
            stdout=out,
            stderr=out,
        )
        if log is not None:
            out.close()  # type: ignore[union-attr]
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.kill(proc)


@pytest.fixture
def workers(pipeline_settings: Settings) -> Iterator[Workers]:
    w = Workers(pipeline_settings)
    yield w
    w.stop_all()


async def wait_status(pg: asyncpg.Connection, product_id: int, status: str, within: float = 40.0) -> Any:
    deadline = time.monotonic() + within
    while (r := await row(pg, product_id))["image_status"] != status:
        assert time.monotonic() < deadline, f"still {r['image_status']!r} after {within} s"
        await asyncio.sleep(0.1)
    return r


async def test_a_worker_killed_mid_job_is_redelivered_and_the_product_ends_ready_once(
    client: TestClient,
    pg: asyncpg.Connection,
    pipeline_settings: Settings,
    relay_running: None,
    workers: Workers,
) -> None:
    # Given an upload whose job blocks while reading its original (a FIFO stands in for the file)
    p = await new_product(client)
    data = gen.jpeg(800, 400)
    up = await upload(client, p["slug"], data)
    key = up["image"]["original"].removeprefix("/media/")
    with original_as_fifo(pipeline_settings, key) as fifo:
        first = workers.start()
        fd = await wait_for_reader(fifo, within=40)
        # When the worker process is killed (SIGKILL) in the middle of that job
        await asyncio.to_thread(workers.kill, first)
        os.close(fd)
    assert (await row(pg, p["id"]))["image_status"] == "pending"
    # And the original is back, and another worker starts
    tmp = Path(pipeline_settings.media_root) / ".tmp" / "restore"
    await asyncio.to_thread(tmp.write_bytes, data)
    await asyncio.to_thread(os.replace, tmp, Path(pipeline_settings.media_root) / key)
    workers.start()
    # Then RabbitMQ redelivers the unacknowledged job and the product ends ready, exactly once
    r = await wait_status(pg, p["id"], "ready")
    assert r["version"] == up["version"] + 1
    assert set(r["image_thumbnails"]) == {"small", "medium", "large"}
    await asyncio.sleep(1)  # a duplicate delivery would have landed by now
    assert await count(pg, p["id"], "product.thumbnails_ready") == 1
    assert (await row(pg, p["id"]))["version"] == up["version"] + 1


async def test_upload_to_ready_through_the_relay_and_a_worker_process(
    client: TestClient, pg: asyncpg.Connection, pipeline_settings: Settings, relay_running: None, workers: Workers
) -> None:
    # Given a running thumbnail worker and the relay
    workers.start()
    p = await new_product(client)
    # When an image is uploaded, then replaced at once
    await upload(client, p["slug"], gen.jpeg(400, 200))
    newest = await upload(client, p["slug"], gen.jpeg(200, 400))
    # Then the product ends ready on the newest image, with one thumbnails_ready event
    r = await wait_status(pg, p["id"], "ready")
    assert r["image_original"] == newest["image"]["original"].removeprefix("/media/")
    assert (r["image_thumbnails"]["small"]["width"], r["image_thumbnails"]["small"]["height"]) == (80, 160)
    await asyncio.sleep(1)
    assert await count(pg, p["id"], "product.thumbnails_ready") == 1
    # And once projected (the cache worker's job), readers see it and its files are served
    await gen.project(pipeline_settings, p["id"])
    image = (await (await client.get(f"/api/products/{p['slug']}", headers=ADMIN)).json())["image"]
    assert image["status"] == "ready"
    assert (await client.get(image["thumbnails"]["large"]["url"])).status == 200


async def _depth(rabbitmq_url: str, queue: str) -> int:
    conn = await aio_pika.connect(rabbitmq_url)
    async with conn:
        declared = await (await conn.channel()).declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def _settled(rabbitmq_url: str, within: float = 20.0) -> None:
    """Wait until the live thumbnails queue is drained (the worker acknowledged or dead-lettered its message)."""
    deadline = time.monotonic() + within
    while await _depth(rabbitmq_url, THUMBNAILS_QUEUE) or await _depth(rabbitmq_url, f"{THUMBNAILS_QUEUE}.DQ"):
        assert time.monotonic() < deadline, "the thumbnails queue never drained"
        await asyncio.sleep(0.1)


async def test_a_corrupt_upload_ends_failed_and_is_not_dead_lettered(
    client: TestClient, pg: asyncpg.Connection, pipeline_settings: Settings, relay_running: None, workers: Workers
) -> None:
    # Given a running worker and an upload that passes the API's sniffing but cannot be decoded
    workers.start()
    p = await new_product(client)
    await upload(client, p["slug"], gen.truncated_jpeg())
    # When its job has run
    r = await wait_status(pg, p["id"], "failed")
    # Then the product is failed with its reason: a handled outcome, so thumbnails.XQ stays empty
    assert "the image cannot be decoded" in r["image_error"]
    await _settled(pipeline_settings.rabbitmq_url)
    await asyncio.sleep(1)  # a rejection would have reached the dead-letter queue by now
    assert await _depth(pipeline_settings.rabbitmq_url, f"{THUMBNAILS_QUEUE}.XQ") == 0
    assert await count(pg, p["id"], "product.thumbnails_failed") == 1


async def test_a_transient_fault_is_still_retried_and_the_product_ends_ready(
    client: TestClient,
    pg: asyncpg.Connection,
    pipeline_settings: Settings,
    relay_running: None,
    workers: Workers,
    tmp_path: Path,
) -> None:
    # Given an upload whose original cannot be read for now (a directory stands where the file is: an OSError)
    p = await new_product(client)
    data = gen.jpeg(400, 200)
    up = await upload(client, p["slug"], data)
    path = Path(pipeline_settings.media_root) / up["image"]["original"].removeprefix("/media/")
    await asyncio.to_thread(path.unlink)
    await asyncio.to_thread(path.mkdir)
    # When the worker tries it (and fails), and then the file is back
    log = tmp_path / "worker.log"
    workers.start(log)
    deadline = time.monotonic() + 40
    while "IsADirectoryError" not in await asyncio.to_thread(log.read_text, errors="replace"):
        assert time.monotonic() < deadline, "the worker never tried the job"
        await asyncio.sleep(0.05)
    assert (await row(pg, p["id"]))["image_status"] == "pending"
    await asyncio.to_thread(path.rmdir)
    await asyncio.to_thread(path.write_bytes, data)
    # Then the retry makes the thumbnails, and nothing was dead-lettered
    await wait_status(pg, p["id"], "ready")
    assert await _depth(pipeline_settings.rabbitmq_url, f"{THUMBNAILS_QUEUE}.XQ") == 0
