"""``PUT`` / ``DELETE /api/products/{slug}/image`` and ``GET /media/{key}``.

An upload is streamed into storage chunk by chunk (never held whole), its type sniffed from its first bytes
(whatever its Content-Type says) and its size counted as it arrives (the app's 1 MiB ``client_max_size`` is for
JSON; it does not apply to ``request.content`` or ``request.multipart()``). Only then does one statement make it
the product's original, ``pending``, with its ``product.image_uploaded`` event; the thumbnail worker does the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import asyncpg
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from api import commands
from api.auth import requires
from api.commands import Outcome
from api.handlers.common import ctx, finish
from api.http import if_match
from api.keys import SETTINGS
from shared.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from shared.models import Versions, Written
from shared.settings import Settings
from shared.storage import (
    CACHE_CONTROL,
    SNIFF_BYTES,
    NotStored,
    Storage,
    content_type,
    is_key,
    open_storage,
    sniff,
)
from shared.store import images as repo
from shared.store import media as media_repo
from shared.store import products as prod_repo
from shared.store.pool import connection
from shared.views import dumps, image

STORAGE: Final = web.AppKey[Storage]("storage")
#: Multipart framing (boundaries, part headers) allowed on top of the image's own limit.
MULTIPART_OVERHEAD: Final = 64 * 1024
#: What a refused upload is told.
ACCEPTED: Final = "JPEG, PNG, WebP or GIF"

#: What aiohttp's multipart reader raises on a malformed body: ValueError, or (for a part's headers, e.g. a
#: control character in a field name) its HTTP parser's errors. Both are the client's fault: 400, not 500.
MALFORMED_MULTIPART: Final = (ValueError, HttpProcessingError)

Read = Callable[[], Awaitable[bytes]]


async def storage_context(app: web.Application) -> AsyncIterator[None]:
    """The app's image storage (a cleanup context: an S3 client is opened on the app's loop and closed)."""
    async with open_storage(app[SETTINGS]) as storage:
        app[STORAGE] = storage
        yield


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the image is larger than {limit} bytes ({limit // (1024 * 1024)} MiB)")


def _field_reader(field: BodyPartReader) -> Read:
    async def read() -> bytes:
        try:
            return await field.read_chunk(BodyPartReader.chunk_size * 8)
        except MALFORMED_MULTIPART as exc:
            raise BadRequest(f"the multipart body is malformed: {exc}") from exc

    return read


async def _source(request: web.Request, settings: Settings) -> Read:
    """How to read the image's bytes: the raw body, or the multipart field ``image``."""
    limit = settings.image_max_bytes
    ctype = request.content_type
    length = request.content_length
    if ctype == "multipart/form-data":
        if length is not None and length > limit + MULTIPART_OVERHEAD:
            raise _too_large(limit)
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if isinstance(part, BodyPartReader) and part.name == "image":
                    return _field_reader(part)
                await part.release()
        except MALFORMED_MULTIPART as exc:
            raise BadRequest(f"the multipart body is malformed: {exc}") from exc
        raise BadRequest("the multipart body has no field named 'image'")
    if ctype.startswith("image/"):
        if length is not None and length > limit:
            raise _too_large(limit)
        return request.content.readany
    raise UnsupportedMediaType(f"send the image as image/* or multipart/form-data, not {ctype or 'nothing'}")


async def _sniffed(read: Read, limit: int) -> tuple[str, AsyncIterator[bytes]]:
    """The image's file extension, from its first bytes, and all its bytes (413 past ``limit``)."""
    head = b""
    while len(head) < SNIFF_BYTES:
        chunk = await read()
        if not chunk:
            break
        head += chunk
    ext = sniff(head)
    if ext is None:
        raise UnsupportedMediaType(f"the body is not a {ACCEPTED} image")

    async def chunks() -> AsyncIterator[bytes]:
        total = len(head)
        if total > limit:
            raise _too_large(limit)
        yield head
        while chunk := await read():
            total += len(chunk)
            if total > limit:
                raise _too_large(limit)
            yield chunk

    return ext, chunks()


def _accepted(w: Written, media_url: str) -> Outcome:
    body = {"id": w.id, "slug": w.slug, "version": w.version, "image": image(w.entity, media_url)}
    return Outcome(202, dumps(body), written=w)


@requires("write")
async def put(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    c, slug, expected = ctx(request), request.match_info["slug"], if_match(request)
    # Refuse early (404, 412) rather than store an image nobody will use: every refusal leaves no file behind. A
    # write that slips in between still refuses the upload below; its file is then the collector's.
    async with connection(c.pool, c.timeout) as conn:
        await _why_not(conn, slug, expected)
    ext, chunks = await _sniffed(await _source(request, settings), settings.image_max_bytes)
    storage = request.app[STORAGE]
    key = await storage.save_stream(chunks, prefix="originals", ext=ext)

    async def op(conn: asyncpg.Connection) -> Outcome:
        async with conn.transaction():
            # Ordered against the collector (shared.store.media): the file is there, and stays, once locked.
            await media_repo.hold_for_use(conn, [key])
            if not await storage.exists(key):
                raise ServiceUnavailable("the stored image was collected meanwhile; send it again")
            written = await repo.set_original(conn, slug, key, expected, c.request_id)
            if written is None:
                await _why_not(conn, slug, expected)
                raise Conflict(f"product {slug!r} changed meanwhile; try again")
        return _accepted(written, settings.media_url)

    return await finish(request, await commands.run(c, op))


@requires("write")
async def delete(request: web.Request) -> web.Response:
    c, slug, expected = ctx(request), request.match_info["slug"], if_match(request)

    async def op(conn: asyncpg.Connection) -> Outcome:
        written = await repo.remove(conn, slug, expected, c.request_id)
        if written is None:
            # Either an error, or there was no image: removing nothing is done already.
            await _why_not(conn, slug, expected)
        return Outcome(204, b"", written=written)

    return await finish(request, await commands.run(c, op))


async def _why_not(conn: asyncpg.Connection, slug: str, expected: Versions | None) -> None:
    state = await prod_repo.state(conn, slug)
    if state is None or state["deleted"]:
        raise NotFound(f"no product {slug!r}")
    if expected is not None and state["version"] not in expected:
        raise PreconditionFailed(commands.precondition_failed(expected, state["version"]))


async def media(request: web.Request) -> web.StreamResponse:
    """A stored original or thumbnail. Keys are content addresses, so the answer may be cached forever."""
    key = request.match_info["key"]
    if not is_key(key):  # only the exact shape this service writes: no "..", no other names
        raise NotFound("no such media")
    storage = request.app[STORAGE]
    headers = {"Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff", "Content-Type": content_type(key)}
    path = storage.path(key)
    if path is not None:
        if not path.is_file():
            raise NotFound("no such media")
        return web.FileResponse(path, headers=headers)
    if request.method == "HEAD":
        # Status and headers only: aiohttp leaves a streamed body to the handler, and it would follow them onto
        # the wire (the client then reads the image's bytes as the next response's status line).
        if not await storage.exists(key):
            raise NotFound("no such media")
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        await response.write_eof()
        return response
    chunks = storage.open(key)
    try:
        first = await anext(chunks)
    except (NotStored, StopAsyncIteration) as exc:
        raise NotFound("no such media") from exc
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response
