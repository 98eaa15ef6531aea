"""``PUT`` / ``DELETE /api/products/{slug}/image`` and ``GET /media/{key}``.

An upload is streamed into storage chunk by chunk (never held whole), its type sniffed from its first bytes
(whatever its Content-Type says) and its size counted as it arrives (the app's 1 MiB ``client_max_size`` is for
JSON; it does not apply to ``request.content`` or ``request.multipart()``). Only then does one statement make it
the product's original, ``pending``, with its ``product.image_uploaded`` event; the thumbnail worker does the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from api import commands
from api.auth import requires
from api.handlers.common import ctx, write
from api.parsing import if_match_tags
from api.state import SETTINGS, STORAGE
from shared.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from shared.settings import Settings
from shared.storage import (
    CACHE_CONTROL,
    SNIFF_BYTES,
    NotStored,
    content_type,
    is_key,
    sniff,
)

#: Multipart framing (boundaries, part headers) allowed on top of the image's own limit.
MULTIPART_OVERHEAD: Final = 64 * 1024
#: What a refused upload is told.
ACCEPTED: Final = "JPEG, PNG, WebP or GIF"

#: What aiohttp's multipart reader raises on a malformed body: ValueError, or (for a part's headers, e.g. a
#: control character in a field name) its HTTP parser's errors. Both are the client's fault: 400, not 500.
MALFORMED_MULTIPART: Final = (ValueError, HttpProcessingError)

Read = Callable[[], Awaitable[bytes]]


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


@requires("write")
async def put(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    slug, tags = request.match_info["slug"], if_match_tags(request)
    await commands.refuse_image(ctx(request), slug, tags)
    ext, chunks = await _sniffed(await _source(request, settings), settings.image_max_bytes)
    key = await request.app[STORAGE].save_stream(chunks, prefix="originals", ext=ext)
    return await write(request, commands.SetImage(slug, key, tags))


@requires("write")
async def delete(request: web.Request) -> web.Response:
    return await write(request, commands.RemoveImage(request.match_info["slug"], if_match_tags(request)))


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
