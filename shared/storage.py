"""Image storage behind one interface: a local directory (default) or an S3-compatible bucket.

Keys are content addresses: ``<prefix>/ab/cd/<sha256 of the bytes>.<ext>``, so a stored object never changes
(it can be cached forever) and storing the same bytes twice is one object. Storing bytes that are there already
refreshes the time of last write: the collector (``worker.thumbnails.collect``) only removes objects older than its
grace period, so an upload in flight of the same bytes keeps its file. Uploads are streamed: the local
store writes a temporary file and renames it into place; the S3 store spools to a temporary file (the key is
only known once the last byte is hashed) and then uploads that file. Neither holds a whole upload in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import IO, Any, Final, Protocol

from shared.settings import Settings

#: File extension -> content type, for every type stored (the uploads' four, and the thumbnails').
CONTENT_TYPES: Final = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}
#: How many leading bytes :func:`sniff` needs.
SNIFF_BYTES: Final = 12
#: What a stored object may be cached for: its key changes whenever its content does.
CACHE_CONTROL: Final = "public, max-age=31536000, immutable"
#: Every key this module makes, and nothing else: the only names ``GET /media/{key}`` will look up.
KEY_PATTERN: Final = re.compile(r"^(?:originals|thumbs)/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}\.(?:jpg|png|webp|gif)$")
#: Bytes per chunk when reading or copying.
CHUNK: Final = 256 * 1024


def sniff(head: bytes) -> str | None:
    """The file extension of an image from its first bytes (magic numbers), or ``None`` if it is none we take."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def is_key(key: str) -> bool:
    """Whether ``key`` is a well-formed storage key (no traversal, no other names)."""
    return KEY_PATTERN.fullmatch(key) is not None


def content_key(prefix: str, digest: str, ext: str) -> str:
    return f"{prefix}/{digest[:2]}/{digest[2:4]}/{digest}.{ext}"


def content_type(key: str) -> str:
    return CONTENT_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")


class NotStored(Exception):
    """No object under that key."""


class Storage(Protocol):
    """Where originals and thumbnails live. Every method is safe to call again with the same arguments."""

    async def save_stream(self, chunks: AsyncIterable[bytes], *, prefix: str, ext: str) -> str:
        """Store the bytes ``chunks`` yields and return their key. If iterating raises, nothing is stored."""
        ...

    async def save_bytes(self, data: bytes, *, prefix: str, ext: str) -> str:
        """Store ``data`` (a thumbnail) and return its key."""
        ...

    async def read(self, key: str) -> bytes:
        """The whole object; :class:`NotStored` if there is none."""
        ...

    def open(self, key: str) -> AsyncIterator[bytes]:
        """The object in chunks; :class:`NotStored` (on the first iteration) if there is none."""
        ...

    def path(self, key: str) -> Path | None:
        """The local file of ``key``, if this storage has local files."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove the object; no error if there is none."""
        ...

    def listing(self, prefix: str) -> AsyncIterator[tuple[str, float]]:
        """Every stored key under ``prefix`` (``originals`` or ``thumbs``) with its last write (epoch seconds)."""
        ...

    async def modified(self, key: str) -> float | None:
        """When ``key`` was last written (epoch seconds); ``None`` if there is no such object."""
        ...


# -- local directory ---------------------------------------------------------------------------------------


class LocalStorage:
    """Objects as files under ``root``; written to ``root/.tmp`` first, fsynced, then renamed into place."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self._tmp = self.root / ".tmp"

    def path(self, key: str) -> Path:
        if not is_key(key):
            raise NotStored(key)
        return self.root / key

    async def save_stream(self, chunks: AsyncIterable[bytes], *, prefix: str, ext: str) -> str:
        await asyncio.to_thread(self._tmp.mkdir, parents=True, exist_ok=True)
        tmp = self._tmp / uuid.uuid4().hex
        digest = hashlib.sha256()
        f = await asyncio.to_thread(tmp.open, "wb")
        try:
            try:
                async for chunk in chunks:
                    digest.update(chunk)
                    await asyncio.to_thread(f.write, chunk)
                await asyncio.to_thread(_flush, f)
            finally:
                f.close()
            key = content_key(prefix, digest.hexdigest(), ext)
            await asyncio.to_thread(self._place, tmp, key)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return key

    async def save_bytes(self, data: bytes, *, prefix: str, ext: str) -> str:
        key = content_key(prefix, hashlib.sha256(data).hexdigest(), ext)
        if not await asyncio.to_thread(self._touch, key):
            await asyncio.to_thread(self._write, key, data)
        return key

    def _touch(self, key: str) -> bool:
        try:
            os.utime(self.path(key))
        except FileNotFoundError:
            return False
        return True

    def _write(self, key: str, data: bytes) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / uuid.uuid4().hex
        try:
            with tmp.open("wb") as f:
                f.write(data)
                _flush(f)
            self._place(tmp, key)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _place(self, tmp: Path, key: str) -> None:
        # The rename is atomic: a reader sees the whole file or none. Same content, same key: an object that
        # is already there is never rewritten.
        final = self.path(key)
        if final.exists():
            os.utime(final)  # a fresh time of last write: the collector leaves it alone (module docstring)
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        _fsync_dir(final.parent)

    async def read(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except FileNotFoundError as exc:
            raise NotStored(key) from exc

    async def open(self, key: str) -> AsyncIterator[bytes]:
        try:
            f = await asyncio.to_thread(self.path(key).open, "rb")
        except FileNotFoundError as exc:
            raise NotStored(key) from exc
        try:
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                yield chunk
        finally:
            f.close()

    async def exists(self, key: str) -> bool:
        return is_key(key) and await asyncio.to_thread(self.path(key).is_file)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self.path(key).unlink)

    async def listing(self, prefix: str) -> AsyncIterator[tuple[str, float]]:
        for key, mtime in await asyncio.to_thread(self._walk, prefix):
            yield key, mtime

    def _walk(self, prefix: str) -> list[tuple[str, float]]:
        found = []
        for path in (self.root / prefix).rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if is_key(key):
                with contextlib.suppress(FileNotFoundError):
                    found.append((key, path.stat().st_mtime))
        return found

    async def modified(self, key: str) -> float | None:
        try:
            return (await asyncio.to_thread(self.path(key).stat)).st_mtime
        except (FileNotFoundError, NotStored):
            return None


def _flush(f: IO[bytes]) -> None:
    f.flush()
    os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    # The rename itself survives a crash only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- S3-compatible -----------------------------------------------------------------------------------------


class S3Storage:
    """Objects in an S3-compatible bucket (aiobotocore). ``client`` is an open aiobotocore S3 client."""

    def __init__(self, client: Any, bucket: str, spool_dir: str | None = None) -> None:
        self._client = client
        self.bucket = bucket
        self._spool_dir = spool_dir

    def path(self, key: str) -> None:
        return None

    async def save_stream(self, chunks: AsyncIterable[bytes], *, prefix: str, ext: str) -> str:
        digest = hashlib.sha256()
        # The key is the hash of the whole content: spool to disk (not memory) until the last byte is in.
        with tempfile.TemporaryFile(dir=self._spool_dir) as f:
            async for chunk in chunks:
                digest.update(chunk)
                await asyncio.to_thread(f.write, chunk)
            size = f.tell()
            key = content_key(prefix, digest.hexdigest(), ext)
            if not await self._touch(key):
                f.seek(0)
                await self._client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=f,
                    ContentLength=size,
                    ContentType=content_type(key),
                    CacheControl=CACHE_CONTROL,
                )
        return key

    async def save_bytes(self, data: bytes, *, prefix: str, ext: str) -> str:
        key = content_key(prefix, hashlib.sha256(data).hexdigest(), ext)
        if not await self._touch(key):
            await self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type(key), CacheControl=CACHE_CONTROL
            )
        return key

    async def _get(self, key: str) -> Any:
        if not is_key(key):
            raise NotStored(key)
        try:
            return await self._client.get_object(Bucket=self.bucket, Key=key)
        except self._client.exceptions.NoSuchKey as exc:
            raise NotStored(key) from exc

    async def read(self, key: str) -> bytes:
        resp = await self._get(key)
        async with resp["Body"] as body:
            data: bytes = await body.read()
        return data

    async def open(self, key: str) -> AsyncIterator[bytes]:
        resp = await self._get(key)
        async with resp["Body"] as body:
            while chunk := await body.read(CHUNK):
                yield chunk

    async def exists(self, key: str) -> bool:
        if not is_key(key):
            return False
        try:
            await self._client.head_object(Bucket=self.bucket, Key=key)
        except self._client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        if is_key(key):
            await self._client.delete_object(Bucket=self.bucket, Key=key)

    async def _touch(self, key: str) -> bool:
        """Refresh an existing object's LastModified (a copy onto itself); whether there was one."""
        if not await self.exists(key):
            return False
        await self._client.copy_object(
            Bucket=self.bucket,
            Key=key,
            CopySource={"Bucket": self.bucket, "Key": key},
            MetadataDirective="REPLACE",
            ContentType=content_type(key),
            CacheControl=CACHE_CONTROL,
        )
        return True

    async def listing(self, prefix: str) -> AsyncIterator[tuple[str, float]]:
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix + "/"):
            for obj in page.get("Contents", []):
                if is_key(obj["Key"]):
                    yield obj["Key"], obj["LastModified"].timestamp()

    async def modified(self, key: str) -> float | None:
        if not is_key(key):
            return None
        try:
            head = await self._client.head_object(Bucket=self.bucket, Key=key)
        except self._client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        when: float = head["LastModified"].timestamp()
        return when


@contextlib.asynccontextmanager
async def open_storage(settings: Settings) -> AsyncIterator[Storage]:
    """The storage ``settings`` name: S3 when ``S3_BUCKET`` is set, else ``MEDIA_ROOT``. Closed on exit.

    S3 clients belong to the event loop they were made on: open one per loop.
    """
    if not settings.s3_bucket:
        yield LocalStorage(settings.media_root)
        return
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    session = get_session()
    config = AioConfig(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"})
    async with session.create_client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=config,
    ) as client:
        yield S3Storage(client, settings.s3_bucket)
