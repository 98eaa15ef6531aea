"""The API representation of each resource, as dicts and as the exact JSON bytes the API sends.

The read model in Redis stores these same bytes, so a cache hit is written to the socket unparsed; a product's
bytes are stored packed (:func:`pack`), its field names and the commonest values as one byte each.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Final

import orjson

from shared.models import Category, Product, Record, Versions

#: Datetimes as ISO 8601 with ``Z``; dataclasses are never passed in, dicts only.
_OPTS = orjson.OPT_UTC_Z


def dumps(value: Any) -> bytes:
    """JSON bytes the way every response is encoded."""
    return orjson.dumps(value, option=_OPTS)


def category(c: Category) -> dict[str, Any]:
    return {
        "id": c.id,
        "slug": c.slug,
        "name": c.name,
        "description": c.description,
        "parent": c.parent,
        "product_count": c.product_count,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "version": c.version,
    }


def media_link(media_url: str, key: str | None) -> str | None:
    return None if key is None else media_url.rstrip("/") + "/" + key


def _linked(media_url: str, stored: dict[str, Any]) -> dict[str, Any]:
    """A stored thumbnail entry with its storage ``key`` (and its fallback's) turned into a ``url``."""
    out: dict[str, Any] = {"url": media_link(media_url, stored["key"])} if "key" in stored else {}
    out.update((k, v) for k, v in stored.items() if k != "key")
    if isinstance(stored.get("fallback"), dict):
        out["fallback"] = _linked(media_url, stored["fallback"])
    return out


def image(p: Product, media_url: str) -> dict[str, Any]:
    thumbs = {size: _linked(media_url, t) for size, t in (p.image_thumbnails or {}).items()}
    return {
        "status": p.image_status,
        "original": media_link(media_url, p.image_original),
        "thumbnails": thumbs,
        "error": p.image_error,
    }


def product(p: Product, media_url: str) -> dict[str, Any]:
    return {
        "id": p.id,
        "slug": p.slug,
        "name": p.name,
        "description": p.description,
        "price": f"{p.price:.2f}",
        "currency": p.currency,
        "category": p.category,
        "stock": p.stock,
        "attributes": p.attributes,
        "is_active": p.is_active,
        "image": image(p, media_url),
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "version": p.version,
    }


#: Fragments of a product's JSON as orjson writes it (keys in :func:`product`'s order) -> the byte that stands for
#: each in the stored form, longest first where one begins another. JSON as orjson writes it never holds a
#: control byte unescaped, so the bytes 0x01-0x1f other than the newline (the stored copy's separator) are free:
#: packing is lossless whatever the text holds, and about 210 of a seeded product's 470 bytes.
_FRAGMENTS: Final = (
    (b',"image":{"status":"none","original":null,"thumbnails":{},"error":null}', b"\x01"),
    (b'{"id":', b"\x02"),
    (b',"slug":', b"\x03"),
    (b',"name":', b"\x04"),
    (b',"description":', b"\x05"),
    (b',"price":', b"\x06"),
    (b',"currency":"EUR"', b"\x07"),
    (b',"currency":', b"\x08"),
    (b',"category":', b"\x0b"),
    (b',"stock":', b"\x0c"),
    (b',"attributes":{}', b"\x0e"),
    (b',"attributes":', b"\x0f"),
    (b',"is_active":true', b"\x10"),
    (b',"is_active":', b"\x11"),
    (b',"image":', b"\x12"),
    (b',"created_at":', b"\x13"),
    (b',"updated_at":', b"\x14"),
    (b',"version":', b"\x15"),
)
#: A packed product begins with these, its decimal id between them (the scripts check who owns a stored copy).
PACKED_ID: Final = _FRAGMENTS[1][1]
PACKED_SLUG: Final = _FRAGMENTS[2][1]


def pack(body: bytes) -> bytes:
    """A product's JSON bytes in their stored form; :func:`unpack` gives them back exactly."""
    for fragment, byte in _FRAGMENTS:
        body = body.replace(fragment, byte)
    return body


#: Packed bytes up to this long are remembered with their JSON (:func:`unpack`): one product's copy; a page of
#: several joined is mostly longer, and is not.
UNPACKED_ITEM_MAX: Final = 4096
#: Bytes of packed copies and their JSON remembered per process, at most (the oldest are forgotten first).
UNPACKED_BYTES: Final = 8 * 1024 * 1024

#: Packed copy -> its JSON. The stored bytes name their JSON exactly (nothing else goes into it), so an entry is
#: never stale: a write stores other bytes. The 18 replacements cost a cached read by slug about 15k
#: instructions (5 % of it, measured in bench/); a lookup of bytes the process has seen costs well under 1k.
_unpacked: OrderedDict[bytes, bytes] = OrderedDict()
_unpacked_bytes = 0


def unpack(stored: bytes) -> bytes:
    """The JSON bytes of one packed product, or of several joined by any JSON punctuation."""
    global _unpacked_bytes
    body = _unpacked.get(stored)
    if body is not None:
        return body
    body = stored
    for fragment, byte in _FRAGMENTS:
        body = body.replace(byte, fragment)
    if len(stored) <= UNPACKED_ITEM_MAX:
        _unpacked[stored] = body
        _unpacked_bytes += len(stored) + len(body)
        while _unpacked_bytes > UNPACKED_BYTES:
            old, old_body = _unpacked.popitem(last=False)
            _unpacked_bytes -= len(old) + len(old_body)
    return body


def record(r: Record) -> dict[str, Any]:
    return {
        "id": r.id,
        "data": r.data,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "version": r.version,
    }


def category_etag(c: Category) -> str:
    """Strong ETag: the version, and the live product count (which changes without a category write)."""
    return f'"{c.version}.{c.product_count}"'


def etag(version: int) -> str:
    return f'"{version}"'


#: A version as :func:`etag` writes it: no sign, no leading zero, within PostgreSQL's integer.
_VERSION_TAG = re.compile(r"[1-9][0-9]{0,8}")
#: A category's ETag as :func:`category_etag` writes it (no sign, no leading zeros).
_COUNTED_TAG = re.compile(r"[1-9][0-9]{0,8}\.(?:0|[1-9][0-9]{0,17})")


def versions(tags: Iterable[str]) -> Versions:
    """The versions that ``tags`` (opaque tags, without quotes) name exactly as :func:`etag` writes them."""
    return tuple(sorted({int(tag) for tag in tags if _VERSION_TAG.fullmatch(tag)}))


def counted_versions(tags: Iterable[str]) -> set[tuple[int, int]]:
    """(version, live products) of each tag that is a category's ETag as :func:`category_etag` writes it."""
    return {(int(v), int(n)) for v, _, n in (t.partition(".") for t in tags if _COUNTED_TAG.fullmatch(t))}
