"""Images the tests make themselves, and small helpers to drive thumbnail jobs."""

from __future__ import annotations

import contextlib
import io
import struct
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from PIL import Image

from shared.settings import Settings
from worker.thumbnails import actors as thumbnails

#: Quadrant colours of :func:`quadrants`: top-left, top-right, bottom-left, bottom-right.
RED, GREEN, BLUE, YELLOW = (220, 20, 20), (20, 200, 20), (20, 20, 220), (230, 220, 20)

#: EXIF orientation -> the transpose that *undoes* it (applied to the upright image before saving).
_STORE_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def quadrants(width: int = 240, height: int = 160) -> Image.Image:
    """An upright landscape image with four coloured quadrants, so any rotation or flip is visible."""
    im = Image.new("RGB", (width, height))
    w, h = width // 2, height // 2
    for color, box in ((RED, (0, 0, w, h)), (GREEN, (w, 0, width, h)), (BLUE, (0, h, w, height))):
        im.paste(color, box)
    im.paste(YELLOW, (w, h, width, height))
    return im


def encode(im: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def jpeg_with_orientation(orientation: int, width: int = 240, height: int = 160) -> bytes:
    """A JPEG whose pixels are stored so that EXIF ``orientation`` shows :func:`quadrants` upright."""
    im = quadrants(width, height)
    method = _STORE_AS[orientation]
    stored = im if method is None else im.transpose(method)
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Stockroom Test Camera"  # Make: metadata that must not survive
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def jpeg(width: int = 240, height: int = 160, quality: int = 90) -> bytes:
    return encode(quadrants(width, height), "JPEG", quality=quality)


def photo(width: int = 4000, height: int = 3000, quality: int = 90) -> bytes:
    """A photo-like JPEG (noise over a gradient: hard to compress, like a real photo); 12 MP by default."""
    noise = Image.effect_noise((width, height), 40).convert("RGB")
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    return encode(Image.blend(noise, gradient, 0.5), "JPEG", quality=quality)


def png_rgba() -> bytes:
    """A PNG whose left half is fully transparent and right half opaque red."""
    im = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (100, 0, 200, 100))
    return encode(im, "PNG")


def png_palette(transparent: bool = True) -> bytes:
    """A palette PNG: left half palette index 0 (transparent, if asked), right half blue."""
    im = Image.new("P", (200, 100), 0)
    im.putpalette([255, 255, 255, 0, 0, 255] + [0] * (256 * 3 - 6))
    im.paste(1, (100, 0, 200, 100))
    return encode(im, "PNG", transparency=0) if transparent else encode(im, "PNG")


def gif_animated() -> bytes:
    """A three-frame animated GIF: red, then green, then blue."""
    frames = [Image.new("RGB", (120, 80), c).convert("P") for c in (RED, GREEN, BLUE)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def webp() -> bytes:
    return encode(quadrants(), "WEBP", quality=90)


def truncated_jpeg() -> bytes:
    data = jpeg(640, 480)
    return data[: len(data) // 2]


def pixel_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (3.6 gigapixels by default).

    Made by rewriting the IHDR chunk of a 1x1 PNG: decoding it for real would need gigabytes.
    """
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = 8  # after the signature: length (4), b"IHDR" (4), then width and height
    struct.pack_into(">II", data, ihdr + 8, width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 8 + 13]))
    struct.pack_into(">I", data, ihdr + 8 + 13, crc)
    return bytes(data)


def not_an_image() -> bytes:
    return b"%PDF-1.7\n" + b"this is not an image at all\n" * 100


def color_at(im: Image.Image, fx: float, fy: float) -> tuple[int, ...]:
    """The pixel at fractions ``fx``, ``fy`` of the width and height."""
    px = im.getpixel((int(im.width * fx), int(im.height * fy)))
    assert isinstance(px, tuple)
    return px


def close_to(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=False))


async def image_events(pg: asyncpg.Connection, product_id: int, event_type: str) -> list[dict[str, Any]]:
    """The outbox rows of ``event_type`` for the product, oldest first, as dramatiq job arguments."""
    rows = await pg.fetch(
        """SELECT event_id::text AS id, type, aggregate, aggregate_id, version, request_id, payload::text AS payload
           FROM outbox WHERE aggregate = 'product' AND aggregate_id = $1 AND type = $2 ORDER BY outbox.id""",
        str(product_id),
        event_type,
    )
    return [dict(r) for r in rows]


def job(event: dict[str, Any]) -> dict[str, Any]:
    """What the relay sends ``make_thumbnails`` for an outbox row (``shared.events.actor_args``)."""
    return {k: event[k] for k in ("id", "type", "aggregate", "aggregate_id", "version", "request_id")}


# -- S3: a real S3-compatible server (moto's server mode) on a free local port ------------------------------


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """A moto S3 server in a thread; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as url:
        yield url


@pytest.fixture
async def s3_settings(settings: Settings, s3_endpoint: str) -> Settings:
    """The test's settings with a fresh bucket on the moto server."""
    bucket = f"media-{uuid.uuid4().hex[:12]}"
    s3 = settings.model_copy(
        update={
            "s3_bucket": bucket,
            "s3_endpoint_url": s3_endpoint,
            "s3_region": "us-east-1",
            "s3_access_key_id": "testing",
            "s3_secret_access_key": "testing",
        }
    )
    from aiobotocore.session import get_session

    async with get_session().create_client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ) as client:
        await client.create_bucket(Bucket=bucket)
    return s3


async def project(settings: Settings, product_id: int) -> None:
    """What the cache worker does on a product event, run here: PostgreSQL's state of the product into Redis."""
    import redis.asyncio as aioredis

    from shared.readmodel.client import redis_runner
    from shared.store.pool import create_pool
    from worker.readmodel.refresh import Resources, project_product

    pool = await create_pool(settings, max_size=1)
    client = aioredis.from_url(settings.redis_url)
    try:
        await project_product(Resources(pool, redis_runner(client), settings.media_url), product_id)
    finally:
        await client.aclose()
        await pool.close()


@pytest.fixture
def worker(settings: Settings) -> Iterator[None]:
    """The thumbnail actors configured in-process for one test, their resources closed after it."""
    thumbnails.configure(settings)
    yield
    thumbnails.close_resources()
