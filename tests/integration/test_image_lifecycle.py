"""Images follow their product's life: restore finishes a pending image, refused uploads store nothing, and the
collector removes what no product references (``python -m worker thumbnails collect``)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from shared.settings import Settings
from shared.storage import open_storage
from shared.store import images as image_repo
from shared.store import media
from tests.conftest import ADMIN
from tests.support import images as gen
from tests.support.processes import env_for, run_python
from worker.thumbnails import actors as thumbnails
from worker.thumbnails.collect import collect

s3_endpoint = gen.s3_endpoint
s3_settings = gen.s3_settings


worker = gen.worker


async def make_product(client: TestClient, name: str = "Desk Lamp") -> dict[str, Any]:
    r = await client.post("/api/categories", json={"name": "Lamps"}, headers=ADMIN)
    assert r.status in (201, 409)
    r = await client.post("/api/products", json={"name": name, "price": "30", "category": "lamps"}, headers=ADMIN)
    assert r.status == 201
    body: dict[str, Any] = await r.json()
    return body


async def put_image(client: TestClient, slug: str, data: bytes, **headers: str) -> Any:
    return await client.put(
        f"/api/products/{slug}/image", data=data, headers={**ADMIN, "Content-Type": "image/jpeg", **headers}
    )


def stored_files(settings: Settings) -> list[str]:
    root = Path(settings.media_root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


async def stored_keys(settings: Settings) -> set[str]:
    async with open_storage(settings) as storage:
        return {key for prefix in ("originals", "thumbs") async for key, _ in storage.listing(prefix)}


async def run_latest_job(pg: asyncpg.Connection, product_id: int) -> None:
    event = (await gen.image_events(pg, product_id, "product.image_uploaded"))[-1]
    await asyncio.to_thread(thumbnails.make_thumbnails.fn, gen.job(event))


async def image_of(client: TestClient, slug: str) -> dict[str, Any]:
    r = await client.get(f"/api/products/{slug}")
    assert r.status == 200
    body: dict[str, Any] = await r.json()
    return body["image"]


# -- restore -----------------------------------------------------------------------------------------------


async def test_an_image_pending_when_its_product_was_deleted_is_finished_after_the_restore(
    client: TestClient, pg: asyncpg.Connection, worker: None
) -> None:
    # Given a product with an uploaded image, deleted before its thumbnail job ran
    p = await make_product(client)
    assert (await put_image(client, p["slug"], gen.jpeg())).status == 202
    assert (await client.delete(f"/api/products/{p['slug']}", headers=ADMIN)).status == 204
    await run_latest_job(pg, p["id"])  # finds the product gone: does nothing
    # When the product is restored
    r = await client.post(f"/api/products/{p['slug']}/restore", headers=ADMIN)
    assert r.status == 200
    # Then a new thumbnail job is queued through the outbox, and running it makes the image ready
    assert len(await gen.image_events(pg, p["id"], "product.image_uploaded")) == 2
    await run_latest_job(pg, p["id"])
    row = await pg.fetchrow("SELECT image_status, image_thumbnails FROM products WHERE id = $1", p["id"])
    assert row["image_status"] == "ready"
    assert set(row["image_thumbnails"]) == {"small", "medium", "large"}


async def test_restoring_a_product_whose_image_is_ready_queues_no_job(
    client: TestClient, pg: asyncpg.Connection, worker: None
) -> None:
    p = await make_product(client)
    assert (await put_image(client, p["slug"], gen.jpeg())).status == 202
    await run_latest_job(pg, p["id"])
    assert (await client.delete(f"/api/products/{p['slug']}", headers=ADMIN)).status == 204
    assert (await client.post(f"/api/products/{p['slug']}/restore", headers=ADMIN)).status == 200
    assert len(await gen.image_events(pg, p["id"], "product.image_uploaded")) == 1
    assert (await image_of(client, p["slug"]))["status"] == "ready"


# -- refused uploads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "status"),
    [("stale If-Match", 412), ("deleted product", 404), ("not an image", 415), ("no image field", 400)],
)
async def test_a_refused_upload_leaves_no_file_behind(
    client: TestClient, settings: Settings, case: str, status: int
) -> None:
    # Given a product (deleted, for one case)
    p = await make_product(client)
    if case == "deleted product":
        assert (await client.delete(f"/api/products/{p['slug']}", headers=ADMIN)).status == 204
    # When an upload is refused
    if case == "stale If-Match":
        r = await put_image(client, p["slug"], gen.jpeg(), **{"If-Match": '"99"'})
    elif case == "not an image":
        r = await put_image(client, p["slug"], gen.not_an_image())
    elif case == "no image field":
        r = await client.put(f"/api/products/{p['slug']}/image", data={"other": gen.jpeg()}, headers=ADMIN)
    else:
        r = await put_image(client, p["slug"], gen.jpeg())
    # Then nothing is stored
    assert r.status == status
    assert stored_files(settings) == []


# -- the collector -----------------------------------------------------------------------------------------


async def replace_five_times(
    client: TestClient, pg: asyncpg.Connection, settings: Settings, slug: str, product_id: int
) -> None:
    for i in range(5):
        # Larger than the largest thumbnail: three distinct sizes, each a WebP and a JPEG.
        assert (await put_image(client, slug, gen.jpeg(1200 + 10 * i, 900))).status == 202
        await run_latest_job(pg, product_id)
    await gen.project(settings, product_id)


def current_keys(image: dict[str, Any], media_url: str) -> set[str]:
    urls = [image["original"]]
    for thumb in image["thumbnails"].values():
        urls += [thumb["url"], thumb["fallback"]["url"]]
    return {u.removeprefix(media_url) for u in urls}


@pytest.mark.parametrize("backend", ["local", "s3"])
async def test_five_replacements_of_one_image_leave_only_the_current_files(
    aiohttp_client: Any, settings: Settings, s3_settings: Settings, pg: asyncpg.Connection, backend: str
) -> None:
    chosen = settings if backend == "local" else s3_settings
    thumbnails.configure(chosen)
    try:
        client = await aiohttp_client(create_app(chosen))
        # Given one product whose image was replaced five times, thumbnails made each time
        p = await make_product(client)
        await replace_five_times(client, pg, chosen, p["slug"], p["id"])
        image = await image_of(client, p["slug"])
        keep = current_keys(image, chosen.media_url)
        assert len(keep) == 7
        assert len(await stored_keys(chosen)) == 5 * 7
        # When the collector runs (no grace period)
        result = await collect(chosen, grace=0)
        # Then only the current original and its thumbnails are left, and they are still served
        assert await stored_keys(chosen) == keep
        assert result.removed == 4 * 7
        for key in keep:
            assert (await client.get(chosen.media_url + key)).status == 200
    finally:
        thumbnails.close_resources()


async def test_the_collector_keeps_files_of_deleted_products_and_young_files_and_a_dry_run_removes_nothing(
    client: TestClient, settings: Settings, pg: asyncpg.Connection, worker: None
) -> None:
    # Given a deleted product with an image, and a replaced (unreferenced) original
    gone = await make_product(client, "Old Lamp")
    assert (await put_image(client, gone["slug"], gen.jpeg(300, 200))).status == 202
    assert (await client.delete(f"/api/products/{gone['slug']}", headers=ADMIN)).status == 204
    p = await make_product(client)
    assert (await put_image(client, p["slug"], gen.jpeg(310, 200))).status == 202
    assert (await put_image(client, p["slug"], gen.jpeg(320, 200))).status == 202
    before = await stored_keys(settings)
    assert len(before) == 3
    # When the collector runs with a grace period longer than the files' age, or as a dry run
    assert (await collect(settings, grace=3600)).removed == 0
    dry = await collect(settings, grace=0, dry_run=True)
    # Then nothing is removed
    assert (dry.unreferenced, dry.removed) == (1, 0)
    assert await stored_keys(settings) == before
    # And a real run removes only the replaced original
    assert (await collect(settings, grace=0)).removed == 1
    assert len(await stored_keys(settings)) == 2
    # And the deleted product, restored, still has its image
    assert (await client.post(f"/api/products/{gone['slug']}/restore", headers=ADMIN)).status == 200
    original = (await image_of(client, gone["slug"]))["original"]
    assert (await client.get(original)).status == 200


async def test_an_upload_in_flight_of_bytes_the_collector_would_remove_keeps_its_file(
    client: TestClient, settings: Settings, pg: asyncpg.Connection
) -> None:
    # Given an unreferenced original, long past the grace period
    data = gen.jpeg(333, 222)
    p = await make_product(client)
    assert (await put_image(client, p["slug"], data)).status == 202
    assert (await put_image(client, p["slug"], gen.jpeg(334, 222))).status == 202
    orphan = (await pg.fetch("SELECT payload->>'original' AS k FROM outbox WHERE type = 'product.image_uploaded'"))[0][
        "k"
    ]
    path = Path(settings.media_root) / orphan
    old = time.time() - 7200
    os.utime(path, (old, old))
    # When an upload of the same bytes has stored its file but not yet committed, and the collector runs
    async with open_storage(settings) as storage:

        async def chunks() -> Any:
            yield data

        key = await storage.save_stream(chunks(), prefix="originals", ext="jpg")
    assert key == orphan
    assert (await collect(settings, grace=3600)).removed == 0
    # Then the file is still there for the upload to reference
    assert path.is_file()


async def test_the_collector_waits_for_a_writer_holding_the_key_and_then_sees_its_reference(
    client: TestClient, settings: Settings, pg: asyncpg.Connection, database_url: str
) -> None:
    # Given an unreferenced original, and a writer that has locked it to reference it (as an upload does)
    p = await make_product(client)
    assert (await put_image(client, p["slug"], gen.jpeg(335, 222))).status == 202
    assert (await put_image(client, p["slug"], gen.jpeg(336, 222))).status == 202
    first = (await pg.fetch("SELECT payload->>'original' AS k FROM outbox WHERE type = 'product.image_uploaded'"))[0][
        "k"
    ]
    writer = await asyncpg.connect(database_url)
    try:
        tx = writer.transaction()
        await tx.start()
        await media.hold_for_use(writer, [first])
        # When the collector runs meanwhile (no grace period)
        run = asyncio.create_task(collect(settings, grace=0))
        await asyncio.sleep(1.0)
        assert not run.done(), "the collector did not wait for the writer's lock"
        assert await image_repo.set_original(writer, p["slug"], first, None, "test") is not None
        await tx.commit()
        result = await asyncio.wait_for(run, 10)
    finally:
        await writer.close()
    # Then it removed nothing the writer referenced: the file is there
    # (the second original, which the writer's commit made unreferenced, was still referenced when listed)
    assert (result.unreferenced, result.removed) == (1, 0)
    assert (Path(settings.media_root) / first).is_file()


def test_the_collect_command_runs_with_its_options(settings: Settings) -> None:
    env = env_for(settings)
    done = run_python("-m", "worker", "thumbnails", "collect", "--grace", "0", "--dry-run", env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "would remove 0" in done.stderr
