"""The make_thumbnails actor's code, run in this process against real PostgreSQL and storage.

Each test uploads through the API (so the product row and its outbox event are what production writes), then
runs the job the relay would deliver for that event.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from shared.settings import Settings
from tests.conftest import ADMIN
from tests.support import images as gen
from worker.thumbnails import actors as thumbnails
from worker.thumbnails import regenerate

s3_endpoint = gen.s3_endpoint
s3_settings = gen.s3_settings


worker = gen.worker


async def new_product(client: TestClient, name: str = "Desk Lamp") -> dict[str, Any]:
    if (await client.get("/api/categories/lamps")).status == 404:
        assert (await client.post("/api/categories", json={"name": "Lamps"}, headers=ADMIN)).status == 201
    r = await client.post("/api/products", json={"name": name, "price": "30", "category": "lamps"}, headers=ADMIN)
    assert r.status == 201
    body: dict[str, Any] = await r.json()
    return body


async def upload(client: TestClient, slug: str, data: bytes) -> dict[str, Any]:
    r = await client.put(f"/api/products/{slug}/image", data=data, headers={**ADMIN, "Content-Type": "image/jpeg"})
    assert r.status == 202, await r.text()
    body: dict[str, Any] = await r.json()
    return body


async def latest_job(pg: asyncpg.Connection, product_id: int) -> dict[str, Any]:
    return gen.job((await gen.image_events(pg, product_id, "product.image_uploaded"))[-1])


async def run(job: dict[str, Any]) -> None:
    await asyncio.to_thread(thumbnails.make_thumbnails.fn, job)


async def row(pg: asyncpg.Connection, product_id: int) -> asyncpg.Record:
    found = await pg.fetchrow(
        "SELECT image_status, image_original, image_thumbnails, image_error, version FROM products WHERE id = $1",
        product_id,
    )
    assert found is not None
    return found


async def count(pg: asyncpg.Connection, product_id: int, event_type: str) -> int:
    return len(await gen.image_events(pg, product_id, event_type))


async def test_a_job_makes_every_size_and_writes_one_ready_event(
    client: TestClient, pg: asyncpg.Connection, settings: Settings, worker: None
) -> None:
    p = await new_product(client)
    up = await upload(client, p["slug"], gen.jpeg(2000, 1000))
    await run(await latest_job(pg, p["id"]))
    r = await row(pg, p["id"])
    assert r["image_status"] == "ready"
    assert r["version"] == up["version"] + 1
    thumbs = r["image_thumbnails"]
    assert {k: (v["width"], v["height"], v["format"], v["fallback"]["format"]) for k, v in thumbs.items()} == {
        "small": (160, 80, "webp", "jpeg"),
        "medium": (480, 240, "webp", "jpeg"),
        "large": (1024, 512, "webp", "jpeg"),
    }
    for v in thumbs.values():
        assert (Path(settings.media_root) / v["key"]).is_file()
        assert (Path(settings.media_root) / v["fallback"]["key"]).is_file()
    assert await count(pg, p["id"], "product.thumbnails_ready") == 1


async def test_a_redelivered_job_changes_nothing(client: TestClient, pg: asyncpg.Connection, worker: None) -> None:
    # Given a job that already made the product ready
    p = await new_product(client)
    await upload(client, p["slug"], gen.jpeg())
    job = await latest_job(pg, p["id"])
    await run(job)
    before = await row(pg, p["id"])
    # When the same message is delivered again
    await run(job)
    # Then nothing changes and no second event is written
    assert await row(pg, p["id"]) == before
    assert await count(pg, p["id"], "product.thumbnails_ready") == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (gen.truncated_jpeg(), "the image cannot be decoded"),
        (gen.pixel_bomb(), "too many pixels"),
        (gen.jpeg()[:20] + gen.not_an_image(), "not an image"),
    ],
)
async def test_a_corrupt_image_ends_failed_with_a_reason_and_is_not_retried(
    client: TestClient, pg: asyncpg.Connection, settings: Settings, worker: None, data: bytes, reason: str
) -> None:
    # Given an upload that passes the API's sniffing but cannot be decoded
    p = await new_product(client)
    await upload(client, p["slug"], data)
    # When its job runs: it returns (a handled outcome: acknowledged, neither retried nor dead-lettered)
    await run(await latest_job(pg, p["id"]))
    assert not thumbnails.make_thumbnails.options.get("throws")
    # Then the product is failed with a readable reason, and one product.thumbnails_failed event is written
    r = await row(pg, p["id"])
    assert r["image_status"] == "failed"
    assert reason in r["image_error"]
    assert await count(pg, p["id"], "product.thumbnails_failed") == 1
    # And readers see it once the cache worker projected that event
    await gen.project(settings, p["id"])
    image = (await (await client.get(f"/api/products/{p['slug']}")).json())["image"]
    assert image["status"] == "failed"
    assert reason in image["error"]


async def test_a_job_for_a_replaced_image_does_nothing(
    client: TestClient, pg: asyncpg.Connection, worker: None
) -> None:
    # Given an image A, replaced by an image B before A's job ran
    p = await new_product(client)
    await upload(client, p["slug"], gen.jpeg(200, 100))
    job_a = await latest_job(pg, p["id"])
    up_b = await upload(client, p["slug"], gen.jpeg(100, 200))
    job_b = await latest_job(pg, p["id"])
    # When A's job runs
    await run(job_a)
    # Then it changed nothing
    r = await row(pg, p["id"])
    assert (r["image_status"], r["version"]) == ("pending", up_b["version"])
    assert await count(pg, p["id"], "product.thumbnails_ready") == 0
    # And B's job makes B's thumbnails (portrait)
    await run(job_b)
    r = await row(pg, p["id"])
    assert r["image_status"] == "ready"
    assert (r["image_thumbnails"]["small"]["width"], r["image_thumbnails"]["small"]["height"]) == (80, 160)


async def test_a_job_for_a_removed_image_or_a_deleted_product_does_nothing(
    client: TestClient, pg: asyncpg.Connection, worker: None
) -> None:
    p = await new_product(client)
    await upload(client, p["slug"], gen.jpeg())
    job = await latest_job(pg, p["id"])
    assert (await client.delete(f"/api/products/{p['slug']}/image", headers=ADMIN)).status == 204
    await run(job)
    assert (await row(pg, p["id"]))["image_status"] == "none"

    q = await new_product(client, "Floor Lamp")
    await upload(client, q["slug"], gen.jpeg())
    job = await latest_job(pg, q["id"])
    assert (await client.delete(f"/api/products/{q['slug']}", headers=ADMIN)).status == 204
    await run(job)
    assert (await row(pg, q["id"]))["image_status"] == "pending"
    assert await count(pg, q["id"], "product.thumbnails_ready") == 0


def _fifo_has_reader(path: Path) -> int | None:
    """A write end of the FIFO ``path`` if a reader has it open (the job is blocked reading), else None."""
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return None
        raise


async def wait_for_reader(path: Path, within: float = 20.0) -> int:
    deadline = time.monotonic() + within
    while (fd := _fifo_has_reader(path)) is None:
        assert time.monotonic() < deadline, "the job never started reading its original"
        await asyncio.sleep(0.02)
    return fd


@contextlib.contextmanager
def original_as_fifo(settings: Settings, key: str) -> Iterator[Path]:
    """Replace the stored original by a FIFO: a job that reads it blocks until the test writes the bytes."""
    path = Path(settings.media_root) / key
    path.unlink()
    os.mkfifo(path)
    try:
        yield path
    finally:
        # Never leave a reader blocked: give it EOF.
        with contextlib.suppress(OSError):
            fd = _fifo_has_reader(path)
            if fd is not None:
                os.close(fd)


async def test_replacing_the_image_while_its_job_runs_the_newest_wins(
    client: TestClient, pg: asyncpg.Connection, settings: Settings, worker: None
) -> None:
    # Given image A, whose job is running (blocked while reading A's original)
    p = await new_product(client)
    data_a = gen.jpeg(200, 100)
    up_a = await upload(client, p["slug"], data_a)
    key_a = up_a["image"]["original"].removeprefix("/media/")
    job_a = await latest_job(pg, p["id"])
    with original_as_fifo(settings, key_a) as fifo:
        running = asyncio.create_task(run(job_a))
        fd = await wait_for_reader(fifo)
        # When image B replaces A meanwhile
        up_b = await upload(client, p["slug"], gen.jpeg(100, 200))
        # And A's job then finishes its work
        with os.fdopen(fd, "wb") as w:
            w.write(data_a)
        await running
    # Then A's job wrote nothing: the product is still pending on B
    r = await row(pg, p["id"])
    assert (r["image_status"], r["image_original"]) == ("pending", up_b["image"]["original"].removeprefix("/media/"))
    assert await count(pg, p["id"], "product.thumbnails_ready") == 0
    # And B's job makes B's thumbnails, once
    await run(await latest_job(pg, p["id"]))
    r = await row(pg, p["id"])
    assert r["image_status"] == "ready"
    assert (r["image_thumbnails"]["small"]["width"], r["image_thumbnails"]["small"]["height"]) == (80, 160)
    assert await count(pg, p["id"], "product.thumbnails_ready") == 1


async def test_when_retries_run_out_the_product_fails_with_a_reason(
    client: TestClient, pg: asyncpg.Connection, worker: None
) -> None:
    # Given a job whose retries ran out (dramatiq sends thumbnails_gave_up the message and the retry count)
    p = await new_product(client)
    await upload(client, p["slug"], gen.jpeg())
    job = await latest_job(pg, p["id"])
    message = {
        "args": [job],
        "options": {"traceback": "Traceback ...\nasyncpg.exceptions.ConnectionDoesNotExistError: connection lost"},
    }
    # When the give-up actor runs
    await asyncio.to_thread(thumbnails.thumbnails_gave_up.fn, message, {"retries": 8, "max_retries": 8})
    # Then the product is failed with a reason naming the attempts and the error type (not its message)
    r = await row(pg, p["id"])
    assert r["image_status"] == "failed"
    assert r["image_error"] == (
        "thumbnails could not be made after 9 attempts (last error: ConnectionDoesNotExistError); try regenerating"
    )
    assert await count(pg, p["id"], "product.thumbnails_failed") == 1


async def test_actor_options_keep_retries_short_and_bounded() -> None:
    options = thumbnails.make_thumbnails.options
    assert options["max_retries"] == thumbnails.MAX_RETRIES
    assert options["max_backoff"] < 30 * 60 * 1000  # under RabbitMQ's consumer_timeout
    assert options["time_limit"] == 10 * 60 * 1000
    assert options["on_retry_exhausted"] == "thumbnails_gave_up"
    assert thumbnails.make_thumbnails.queue_name == "thumbnails"


async def test_regenerate_all_after_changing_the_sizes_rebuilds_every_thumbnail(
    client: TestClient, pg: asyncpg.Connection, settings: Settings
) -> None:
    # Given two products with thumbnails at the default sizes
    products = [await new_product(client, name) for name in ("Desk Lamp", "Floor Lamp")]
    thumbnails.configure(settings)
    try:
        for p in products:
            await upload(client, p["slug"], gen.jpeg(1200, 600))
            await run(await latest_job(pg, p["id"]))
    finally:
        thumbnails.close_resources()
    # When the sizes change and regenerate --all runs
    resized = settings.model_copy(update={"thumbnail_sizes": "tiny=64,large=800"})
    assert await regenerate.regenerate(resized, "all", None, progress=False) == 2
    # Then each product is pending again with a new product.image_uploaded event on its current original
    for p in products:
        r = await row(pg, p["id"])
        assert r["image_status"] == "pending"
        (_, again) = await gen.image_events(pg, p["id"], "product.image_uploaded")
        assert orjson.loads(again["payload"]) == {"original": r["image_original"], "regenerate": True}
    # And the jobs rebuild every thumbnail at the new sizes
    thumbnails.configure(resized)
    try:
        for p in products:
            await run(await latest_job(pg, p["id"]))
    finally:
        thumbnails.close_resources()
    for p in products:
        r = await row(pg, p["id"])
        assert r["image_status"] == "ready"
        assert {k: v["width"] for k, v in r["image_thumbnails"].items()} == {"tiny": 64, "large": 800}


async def test_regenerate_selects_failed_and_missing(
    client: TestClient, pg: asyncpg.Connection, settings: Settings, worker: None
) -> None:
    # Given a ready product, a failed one and one without an image
    ready, failed, bare = [await new_product(client, n) for n in ("Ready Lamp", "Failed Lamp", "Bare Lamp")]
    await upload(client, ready["slug"], gen.jpeg())
    await run(await latest_job(pg, ready["id"]))
    await upload(client, failed["slug"], gen.truncated_jpeg())
    await run(await latest_job(pg, failed["id"]))
    # Then --failed selects only the failed one, --product narrows, --missing finds nothing at the same sizes
    assert await regenerate.regenerate(settings, "missing", None, progress=False) == 0
    assert await regenerate.regenerate(settings, "failed", "ready-lamp", progress=False) == 0
    assert await regenerate.regenerate(settings, "failed", None, progress=False) == 1
    assert (await row(pg, failed["id"]))["image_status"] == "pending"
    # And --missing picks up a size added to the settings (and the pending one)
    more = settings.model_copy(update={"thumbnail_sizes": "small=160,medium=480,large=1024,xl=2048"})
    assert await regenerate.regenerate(more, "missing", None, progress=False) == 2
    assert (await row(pg, bare["id"]))["image_status"] == "none"


def test_regenerate_command_line() -> None:
    assert regenerate.parse_args([]).mode == "missing"
    assert regenerate.parse_args(["--all", "--product", "lamp"]).mode == "all"
    assert regenerate.parse_args(["--all", "--product", "lamp"]).product == "lamp"
    with pytest.raises(SystemExit):
        regenerate.parse_args(["--all", "--failed"])


async def test_on_s3_storage_the_job_reads_and_writes_the_bucket(
    aiohttp_client: Any, s3_settings: Settings, pg: asyncpg.Connection
) -> None:
    client = await aiohttp_client(create_app(s3_settings))
    p = await new_product(client)
    await upload(client, p["slug"], gen.png_rgba())
    thumbnails.configure(s3_settings)
    try:
        await run(await latest_job(pg, p["id"]))
    finally:
        thumbnails.close_resources()
    r = await row(pg, p["id"])
    assert r["image_status"] == "ready"
    assert not await asyncio.to_thread(lambda: list(Path(s3_settings.media_root).rglob("*.webp")))
    url = "/media/" + r["image_thumbnails"]["large"]["key"]
    got = await client.get(url)
    assert got.status == 200
    assert got.headers["Content-Type"] == "image/webp"
