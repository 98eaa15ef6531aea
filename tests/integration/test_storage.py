"""shared.storage: the local directory, and S3 against a real S3-compatible server (moto's server mode)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.settings import Settings
from shared.storage import CACHE_CONTROL, LocalStorage, NotStored, S3Storage, Storage, is_key, open_storage
from tests.support import images as gen

DATA = bytes(range(256)) * 4096  # 1 MiB

#: Fixtures: a moto S3 server for the session, and a fresh bucket per test.
s3_endpoint = gen.s3_endpoint
s3_settings = gen.s3_settings


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def failing(data: bytes) -> AsyncIterator[bytes]:
    yield data[:1000]
    raise RuntimeError("the client went away")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Storage needs no database: only a media directory (this overrides conftest's ``settings``)."""
    return Settings(media_root=str(tmp_path), _env_file=None)  # type: ignore[call-arg]


@pytest.fixture(params=["local", "s3"])
async def storage(request: pytest.FixtureRequest, settings: Settings, s3_settings: Settings) -> AsyncIterator[Storage]:
    chosen = settings if request.param == "local" else s3_settings
    async with open_storage(chosen) as s:
        yield s


async def test_a_stream_is_stored_under_its_content_hash(storage: Storage) -> None:
    key = await storage.save_stream(chunked(DATA), prefix="originals", ext="jpg")
    digest = hashlib.sha256(DATA).hexdigest()
    assert key == f"originals/{digest[:2]}/{digest[2:4]}/{digest}.jpg"
    assert await storage.exists(key)
    assert await storage.read(key) == DATA
    assert b"".join([c async for c in storage.open(key)]) == DATA


async def test_the_same_bytes_twice_are_one_object(storage: Storage) -> None:
    first = await storage.save_stream(chunked(DATA), prefix="originals", ext="png")
    second = await storage.save_stream(chunked(DATA, 1000), prefix="originals", ext="png")
    again = await storage.save_bytes(DATA, prefix="originals", ext="png")
    assert first == second == again


async def test_a_stream_that_fails_stores_nothing(storage: Storage, settings: Settings) -> None:
    with pytest.raises(RuntimeError):
        await storage.save_stream(failing(DATA), prefix="originals", ext="jpg")
    if isinstance(storage, LocalStorage):
        leftovers = [p for p in storage.root.rglob("*") if p.is_file()]
        assert leftovers == []


async def test_missing_objects(storage: Storage) -> None:
    key = "thumbs/00/00/" + "0" * 64 + ".webp"
    assert not await storage.exists(key)
    with pytest.raises(NotStored):
        await storage.read(key)
    with pytest.raises(NotStored):
        [c async for c in storage.open(key)]
    await storage.delete(key)  # no error


async def test_delete(storage: Storage) -> None:
    key = await storage.save_bytes(b"thumbnail", prefix="thumbs", ext="webp")
    await storage.delete(key)
    assert not await storage.exists(key)


async def test_names_that_are_not_keys_are_never_looked_up(storage: Storage) -> None:
    for name in ("../etc/passwd", "originals/../../x.jpg", "/etc/passwd", "originals/ab/cd/x.jpg"):
        assert not is_key(name)
        assert not await storage.exists(name)
        with pytest.raises(NotStored):
            await storage.read(name)


async def test_local_files_are_written_atomically_into_place(settings: Settings) -> None:
    storage = LocalStorage(settings.media_root)
    key = await storage.save_bytes(DATA, prefix="thumbs", ext="webp")
    assert storage.path(key).read_bytes() == DATA
    # Only the final file is left: the temporary one was renamed into place.
    assert [p.relative_to(storage.root).as_posix() for p in storage.root.rglob("*") if p.is_file()] == [key]


async def test_s3_objects_carry_their_type_and_cache_control(s3_settings: Settings) -> None:
    async with open_storage(s3_settings) as storage:
        assert isinstance(storage, S3Storage)
        key = await storage.save_stream(chunked(DATA), prefix="originals", ext="webp")
        head = await storage._client.head_object(Bucket=storage.bucket, Key=key)
    assert head["ContentType"] == "image/webp"
    assert head["CacheControl"] == CACHE_CONTROL
    assert head["ContentLength"] == len(DATA)


async def test_listing_names_every_object_under_a_prefix_with_its_time(storage: Storage) -> None:
    original = await storage.save_stream(chunked(DATA), prefix="originals", ext="jpg")
    thumb = await storage.save_bytes(DATA[:1000], prefix="thumbs", ext="webp")
    listed = {key: when async for key, when in storage.listing("originals")}
    assert set(listed) == {original}
    assert [key async for key, _ in storage.listing("thumbs")] == [thumb]
    assert listed[original] == await storage.modified(original)
    assert await storage.modified("thumbs/00/00/" + "0" * 64 + ".webp") is None


async def test_storing_bytes_that_are_there_refreshes_their_time(storage: Storage) -> None:
    # (what keeps an upload in flight of the same content safe from the collector)
    key = await storage.save_bytes(DATA, prefix="originals", ext="png")
    first = await storage.modified(key)
    assert first is not None
    await asyncio.sleep(1.1)  # S3 keeps whole seconds
    await storage.save_stream(chunked(DATA), prefix="originals", ext="png")
    after_stream = await storage.modified(key)
    assert after_stream is not None
    assert after_stream > first
    await asyncio.sleep(1.1)
    await storage.save_bytes(DATA, prefix="originals", ext="png")
    after_bytes = await storage.modified(key)
    assert after_bytes is not None
    assert after_bytes > after_stream
    assert await storage.read(key) == DATA
