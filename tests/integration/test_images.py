"""``PUT`` / ``DELETE /api/products/{slug}/image`` and ``GET /media/{key}`` against the real app and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from api.app import create_app
from shared.settings import Settings
from shared.storage import CACHE_CONTROL
from tests.conftest import ADMIN
from tests.support import images as gen
from worker.thumbnails import actors as thumbnails

MiB = 1024 * 1024

#: Fixtures: a moto S3 server for the session, and a fresh bucket per test.
s3_endpoint = gen.s3_endpoint
s3_settings = gen.s3_settings


async def make_product(client: TestClient) -> dict[str, Any]:
    r = await client.post("/api/categories", json={"name": "Lamps"}, headers=ADMIN)
    assert r.status == 201
    r = await client.post(
        "/api/products", json={"name": "Desk Lamp", "price": "30", "category": "lamps"}, headers=ADMIN
    )
    assert r.status == 201
    body: dict[str, Any] = await r.json()
    return body


@pytest.fixture
async def product(client: TestClient) -> dict[str, Any]:
    return await make_product(client)


@pytest.fixture
def worker(settings: Settings) -> Iterator[None]:
    """The thumbnail actor's code in this process, with the test's settings."""
    thumbnails.configure(settings)
    yield
    thumbnails.close_resources()


def stored_files(settings: Settings) -> list[str]:
    root = Path(settings.media_root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


async def put_image(client: TestClient, slug: str, data: Any, ctype: str = "image/jpeg", **kw: Any) -> Any:
    kw.setdefault("headers", {**ADMIN, "Content-Type": ctype})
    if isinstance(data, bytes) and len(data) > MiB:
        data = io.BytesIO(data)
    return await client.put(f"/api/products/{slug}/image", data=data, **kw)


async def test_a_raw_jpeg_upload_is_stored_and_pending(
    client: TestClient, product: dict[str, Any], settings: Settings, pg: asyncpg.Connection
) -> None:
    # Given a JPEG
    data = gen.jpeg()
    # When it is PUT as the raw body
    r = await put_image(client, product["slug"], data)
    # Then 202 with the product pending on the stored original
    assert r.status == 202, await r.text()
    body = await r.json()
    digest = hashlib.sha256(data).hexdigest()
    key = f"originals/{digest[:2]}/{digest[2:4]}/{digest}.jpg"
    assert body["id"] == product["id"]
    assert body["version"] == product["version"] + 1
    assert body["image"] == {"status": "pending", "original": f"/media/{key}", "thumbnails": {}, "error": None}
    assert (Path(settings.media_root) / key).read_bytes() == data
    # And one product.image_uploaded event naming that original, in the same write
    events = await gen.image_events(pg, product["id"], "product.image_uploaded")
    assert [(e["version"], orjson.loads(e["payload"])) for e in events] == [(body["version"], {"original": key})]


@pytest.mark.parametrize(
    ("data", "ext"),
    [(gen.png_rgba(), "png"), (gen.webp(), "webp"), (gen.gif_animated(), "gif"), (gen.png_palette(), "png")],
)
async def test_the_type_comes_from_the_bytes(
    client: TestClient, product: dict[str, Any], data: bytes, ext: str
) -> None:
    # Even under a Content-Type that names another image type
    r = await put_image(client, product["slug"], data, ctype="image/jpeg")
    assert r.status == 202
    assert (await r.json())["image"]["original"].endswith(f".{ext}")


async def test_a_multipart_upload_uses_the_image_field(client: TestClient, product: dict[str, Any]) -> None:
    form = aiohttp.FormData()
    form.add_field("note", "ignored")
    form.add_field("image", gen.png_rgba(), filename="lamp.png", content_type="image/png")
    r = await client.put(f"/api/products/{product['slug']}/image", data=form, headers=ADMIN)
    assert r.status == 202, await r.text()
    assert (await r.json())["image"]["original"].endswith(".png")


async def test_multipart_without_an_image_field_is_400(client: TestClient, product: dict[str, Any]) -> None:
    form = aiohttp.FormData()
    form.add_field("file", gen.png_rgba(), filename="lamp.png", content_type="image/png")
    r = await client.put(f"/api/products/{product['slug']}/image", data=form, headers=ADMIN)
    assert r.status == 400


async def test_bytes_that_are_not_an_image_are_415_whatever_the_content_type(
    client: TestClient, product: dict[str, Any], settings: Settings, pg: asyncpg.Connection
) -> None:
    r = await put_image(client, product["slug"], gen.not_an_image(), ctype="image/jpeg")
    assert r.status == 415
    assert r.content_type == "application/problem+json"
    assert stored_files(settings) == []
    assert await gen.image_events(pg, product["id"], "product.image_uploaded") == []


async def test_a_body_that_is_not_an_image_type_is_415(client: TestClient, product: dict[str, Any]) -> None:
    r = await put_image(client, product["slug"], gen.jpeg(), ctype="text/plain")
    assert r.status == 415


async def test_21_mib_is_413_and_nothing_is_stored(
    client: TestClient, product: dict[str, Any], settings: Settings, pg: asyncpg.Connection
) -> None:
    # A valid JPEG start, padded past the limit
    data = gen.jpeg() + b"\0" * (21 * MiB)
    r = await put_image(client, product["slug"], data)
    assert r.status == 413
    assert stored_files(settings) == []
    assert await gen.image_events(pg, product["id"], "product.image_uploaded") == []


async def test_a_chunked_upload_is_cut_off_at_the_limit(
    client: TestClient, product: dict[str, Any], settings: Settings
) -> None:
    # Given a body without Content-Length, streamed in chunks: the limit is counted as it arrives
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield gen.jpeg()
        for _ in range(21 * 4):
            sent += 256 * 1024
            yield b"\0" * (256 * 1024)

    try:
        r = await put_image(client, product["slug"], body())  # type: ignore[arg-type]
        status = r.status
    except aiohttp.ClientError:
        status = 413  # the server may close the connection while the client is still sending
    assert status == 413
    assert stored_files(settings) == []


async def test_20_mib_is_accepted(client: TestClient, product: dict[str, Any]) -> None:
    data = gen.jpeg()
    data += b"\0" * (20 * MiB - len(data))
    r = await put_image(client, product["slug"], data)
    assert r.status == 202


async def test_writes_need_a_key(client: TestClient, product: dict[str, Any]) -> None:
    r = await client.put(
        f"/api/products/{product['slug']}/image", data=gen.jpeg(), headers={"Content-Type": "image/jpeg"}
    )
    assert r.status == 401
    r = await client.delete(f"/api/products/{product['slug']}/image")
    assert r.status == 401


async def test_an_unknown_product_is_404_and_nothing_is_stored(client: TestClient, settings: Settings) -> None:
    r = await put_image(client, "no-such-product", gen.jpeg())
    assert r.status == 404
    assert stored_files(settings) == []


async def test_if_match_with_another_version_is_412(client: TestClient, product: dict[str, Any]) -> None:
    r = await put_image(
        client, product["slug"], gen.jpeg(), headers={**ADMIN, "Content-Type": "image/jpeg", "If-Match": '"99"'}
    )
    assert r.status == 412


async def test_delete_removes_the_image(client: TestClient, product: dict[str, Any], pg: asyncpg.Connection) -> None:
    # Given a product with an image
    assert (await put_image(client, product["slug"], gen.jpeg())).status == 202
    # When the image is deleted
    r = await client.delete(f"/api/products/{product['slug']}/image", headers=ADMIN)
    # Then 204, no image, and one product.image_removed event
    assert r.status == 204
    got = await (await client.get(f"/api/products/{product['slug']}")).json()
    assert got["image"] == {"status": "none", "original": None, "thumbnails": {}, "error": None}
    assert len(await gen.image_events(pg, product["id"], "product.image_removed")) == 1
    # And deleting again changes nothing
    assert (await client.delete(f"/api/products/{product['slug']}/image", headers=ADMIN)).status == 204
    assert len(await gen.image_events(pg, product["id"], "product.image_removed")) == 1
    assert (await client.delete("/api/products/nope/image", headers=ADMIN)).status == 404


async def test_upload_then_thumbnails_ready_then_files_served(
    client: TestClient, product: dict[str, Any], pg: asyncpg.Connection, settings: Settings, worker: None
) -> None:
    # Given an uploaded photo
    r = await put_image(client, product["slug"], gen.jpeg_with_orientation(6, 1600, 1200))
    assert r.status == 202
    # When the thumbnail job its event carries runs
    (event,) = await gen.image_events(pg, product["id"], "product.image_uploaded")
    await asyncio.to_thread(thumbnails.make_thumbnails.fn, gen.job(event))
    # And the cache worker projects the product.thumbnails_ready event it writes
    await gen.project(settings, product["id"])
    # Then the product is ready with three sizes, each a WebP with a JPEG fallback
    got = await (await client.get(f"/api/products/{product['slug']}")).json()
    image = got["image"]
    assert image["status"] == "ready"
    assert image["error"] is None
    assert set(image["thumbnails"]) == {"small", "medium", "large"}
    assert image["thumbnails"]["large"]["width"] == 1024
    assert image["thumbnails"]["large"]["height"] == 768
    # And every file is served, with its type and an immutable Cache-Control
    for thumb in image["thumbnails"].values():
        for url, fmt, ctype in ((thumb["url"], "WEBP", "image/webp"), (thumb["fallback"]["url"], "JPEG", "image/jpeg")):
            r = await client.get(url)
            assert r.status == 200
            assert r.headers["Content-Type"] == ctype
            assert r.headers["Cache-Control"] == CACHE_CONTROL
            im = Image.open(io.BytesIO(await r.read()))
            assert (im.format, im.size) == (fmt, (thumb["width"], thumb["height"]))
    r = await client.get(image["original"])
    assert r.status == 200
    assert r.headers["Content-Type"] == "image/jpeg"
    # And exactly one thumbnails_ready event was written
    assert len(await gen.image_events(pg, product["id"], "product.thumbnails_ready")) == 1


@pytest.mark.parametrize(
    "path",
    [
        "/media/../../etc/passwd",
        "/media/..%2F..%2Fetc%2Fpasswd",
        "/media/%2e%2e/%2e%2e/etc/passwd",
        "/media/originals/../../../etc/passwd",
        "/media/.tmp/x",
        "/media//etc/passwd",
        "/media/originals/00/00/" + "0" * 64 + ".jpg",
    ],
)
async def test_media_never_leaves_its_keys(client: TestClient, path: str) -> None:
    r = await client.get(path)
    assert r.status == 404


async def test_with_s3_storage_uploads_go_to_the_bucket_and_are_served(
    aiohttp_client: Any, s3_settings: Settings
) -> None:
    # Given the API on S3 storage (a real S3-compatible server)
    client = await aiohttp_client(create_app(s3_settings))
    slug = (await make_product(client))["slug"]
    data = gen.png_rgba()
    # When an image is uploaded
    r = await put_image(client, slug, data, ctype="image/png")
    assert r.status == 202
    url = (await r.json())["image"]["original"]
    # Then it is in the bucket, not on disk, and GET /media serves it
    assert stored_files(s3_settings) == []
    r = await client.get(url)
    assert r.status == 200
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["Cache-Control"] == CACHE_CONTROL
    assert await r.read() == data


async def test_with_s3_storage_head_of_media_sends_no_body(aiohttp_client: Any, s3_settings: Settings) -> None:
    # Given an image in the bucket
    client = await aiohttp_client(create_app(s3_settings))
    slug = (await make_product(client))["slug"]
    data = gen.png_rgba()
    url = (await (await put_image(client, slug, data, ctype="image/png")).json())["image"]["original"]

    # When it is asked with HEAD, then with GET on the same connection
    head = await client.head(url)
    head_body = await head.read()
    got = await client.get(url)

    # Then HEAD had GET's status and headers and no body (the body would have corrupted the connection)
    assert (head.status, head_body) == (200, b"")
    assert head.headers["Content-Type"] == got.headers["Content-Type"] == "image/png"
    assert got.status == 200
    assert await got.read() == data
