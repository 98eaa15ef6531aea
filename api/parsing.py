"""Reading what a request says: its JSON body (limits, depth, exact integers, no NUL), headers (``If-Match``,
undecodable bytes) and query parameters (integers, choices, prices); each fault is a 400, 413, 415 or 422."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from shared import numbers
from shared.errors import BadRequest, FieldError, NotFound, PayloadTooLarge, UnsupportedMediaType
from shared.errors import ValidationFailed as Invalid
from shared.models import Versions
from shared.readmodel.render import versions

_JSON_TYPES = frozenset({"application/json", "application/merge-patch+json"})


async def read_body(request: web.Request) -> bytes:
    """The raw body (at most ``client_max_size``), after checking the content type is JSON (or absent)."""
    ctype = request.headers.get("Content-Type")
    if ctype is not None and request.content_type not in _JSON_TYPES and not request.content_type.endswith("+json"):
        raise UnsupportedMediaType(f"expected application/json, got {request.content_type}")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"the body is larger than {request.client_max_size} bytes") from exc


#: JSON bodies nest at most this many objects and arrays deep; deeper is 400. orjson reads 1,023 levels but writes
#: only 254, and a recursive walk (merge patch, validation) must stay far from Python's recursion limit.
MAX_JSON_DEPTH = 64
#: A run of 19 digits: the shortest text of an integer outside the signed 64-bit range (or one at its edge).
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def loads(body: bytes) -> Any:
    """Parsed JSON, or 400 (not JSON, or nested deeper than :data:`MAX_JSON_DEPTH`); 422 if a string holds
    ``\\u0000`` (PostgreSQL text and jsonb cannot store it) or an integer lies outside the signed 64-bit range
    (orjson would read it as a float: refused, never rounded). Every JSON body is parsed here."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson refuses a number that would be an infinite float: an integer of 310 digits or more is one.
        if "infinity" in str(exc) and _bracket_count(body) <= MAX_JSON_DEPTH and (loc := _big_int_loc(body)):
            raise Invalid(
                "the body holds an integer out of range", errors=[FieldError(loc=loc, msg=_INT_MSG)]
            ) from None
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    # Each check starts with a byte search that almost always settles it; only then is the document walked.
    if _bracket_count(body) > MAX_JSON_DEPTH and _too_deep(doc):
        msg = f"must not nest objects and arrays more than {MAX_JSON_DEPTH} levels deep"
        raise BadRequest(f"the body {msg}", errors=[FieldError(loc=["body"], msg=msg)])
    if b"\\u0000" in body and (loc := _first(doc, ["body"], _has_nul)) is not None:
        raise Invalid("the body holds a NUL character", errors=[FieldError(loc=loc, msg=_NUL_MSG)])
    if loc := _big_int_loc(body):
        raise Invalid("the body holds an integer out of range", errors=[FieldError(loc=loc, msg=_INT_MSG)])
    return doc


def _bracket_count(body: bytes) -> int:
    """At least the document's depth (brackets inside strings count too): below the limit, no walk is needed."""
    return body.count(b"[") + body.count(b"{")


def _exact_int(text: str) -> int:
    # Beyond 4,300 digits int() refuses to parse (Python's guard against slow conversions): out of range anyway.
    return int(text) if len(text) <= 40 else numbers.INT64_MAX + 1


_INT_MSG = f"integers must lie from {numbers.INT64_MIN} to {numbers.INT64_MAX} (send larger numbers as strings)"


def _too_deep(doc: Any) -> bool:
    """Whether ``doc`` nests deeper than :data:`MAX_JSON_DEPTH` (walked with a stack: no recursion)."""
    stack: list[tuple[Any, int]] = [(doc, 1)] if isinstance(doc, dict | list) else []
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _big_int_loc(body: bytes) -> list[str | int] | None:
    """Where in the JSON ``body`` the first integer outside the signed 64-bit range is, or ``None``. Only a body
    with a run of 19 digits can hold one; that body is parsed again by the standard library, which keeps integers
    exact (a body it cannot read is left to orjson's reading)."""
    if not _LONG_DIGITS.search(body):
        return None
    try:
        doc = json.loads(body, parse_int=_exact_int)
    except (ValueError, RecursionError):
        return None
    return _first(doc, ["body"], _out_of_range)


def _out_of_range(value: Any) -> bool:
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return not numbers.INT64_MIN <= value <= numbers.INT64_MAX


def _has_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def _first(value: Any, loc: list[str | int], at_fault: Callable[[Any], bool]) -> list[str | int] | None:
    """Where in ``value`` the first value (or object key) ``at_fault`` is, or ``None``."""
    if at_fault(value):
        return loc
    items: Iterable[tuple[str | int, Any]]
    if isinstance(value, dict):
        for key in value:
            if at_fault(key):
                return [*loc, key]
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if (found := _first(item, [*loc, key], at_fault)) is not None:
            return found
    return None


_NUL_MSG = "must not contain NUL characters (\\u0000)"


def reject_nul(request: web.Request) -> None:
    """PostgreSQL text cannot hold NUL: a path with one names nothing (404), a query parameter with one is 400."""
    if "\x00" in request.path:
        raise NotFound("no resource has a NUL character in its path")
    qs = request.query_string
    # Parsing the query on every request costs; a NUL can only arrive percent-encoded (or raw) in the string.
    if not qs or ("%00" not in qs and "\x00" not in qs):
        return
    for name, value in request.query.items():
        if "\x00" in name or "\x00" in value:
            raise BadRequest(
                f"query parameter {name!r} holds a NUL character",
                errors=[FieldError(loc=["query", name], msg=_NUL_MSG)],
            )


def reject_undecodable_headers(request: web.Request) -> None:
    """400 for a header that is not UTF-8. aiohttp decodes header bytes with ``surrogateescape``: such a value
    reaches handlers as a string that cannot be encoded again (for a hash, a log line or PostgreSQL)."""
    for name, value in request.raw_headers:
        if not (name.isascii() and value.isascii()):
            try:
                name.decode()
                value.decode()
            except UnicodeDecodeError:
                shown = name.decode("ascii", "backslashreplace")
                raise BadRequest(
                    f"header {shown} is not valid UTF-8",
                    errors=[FieldError(loc=["header", shown], msg="must be valid UTF-8")],
                ) from None


def if_match(request: web.Request) -> Versions | None:
    """The versions an ``If-Match`` header names, compared strongly (RFC 9110 13.1.1): ``None`` when it is absent
    or ``*`` (a resource that is not there is a 404 anyway); 400 when it is no list of entity tags.

    A weak tag (``W/"3"``) never matches, nor does a tag that is no ETag this service issues for a version
    (``"1.5"``, ``"03"``): such a header yields no version, and the write answers 412.
    """
    tags = if_match_tags(request)
    return None if tags is None else versions(tags)


def if_match_tags(request: web.Request) -> list[str] | None:
    """The strong entity tags of ``If-Match`` (weak ones never match a strong comparison: dropped); ``None`` when
    the header is absent or ``*``; 400 when it is no list of entity tags."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip(" \t") == "*":
        return None
    tags = entity_tags(raw)
    if not tags:
        raise BadRequest(
            'If-Match must be "*" or a list of entity tags such as "3"',
            errors=[FieldError(loc=["header", "If-Match"], msg='must be "*" or a list of entity tags such as "3"')],
        )
    return [tag for weak, tag in tags if not weak]


#: One entity tag (RFC 9110 8.8.3): an optional weak mark, then DQUOTE *etagc DQUOTE.
_ENTITY_TAG = re.compile(r'[ \t]*(W/)?"([\x21\x23-\x7e\x80-\U0010ffff]*)"[ \t]*')


def entity_tags(raw: str) -> list[tuple[bool, str]]:
    """``(weak, opaque tag)`` for each entity tag of a list header (``If-Match``, ``If-None-Match``); empty when
    the value is no such list. Empty list elements are ignored, as RFC 9110 5.6.1 says; a tag may hold a comma."""
    tags: list[tuple[bool, str]] = []
    pos, end = 0, len(raw)
    while pos < end:
        if raw[pos] in " \t,":
            pos += 1
            continue
        m = _ENTITY_TAG.match(raw, pos)
        if m is None or (m.end() < end and raw[m.end()] != ","):
            return []
        tags.append((m.group(1) is not None, m.group(2)))
        pos = m.end()
    return tags


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise BadRequest(
            f"{name} must be an integer from {lo} to {hi}",
            errors=[FieldError(loc=["query", name], msg=f"must be an integer from {lo} to {hi}")],
        )
    return value


def one_of(request: web.Request, name: str, default: str, allowed: Iterable[str]) -> str:
    raw = request.query.get(name, default)
    allowed = list(allowed)
    if raw not in allowed:
        raise BadRequest(
            f"{name} must be one of {', '.join(allowed)}",
            errors=[FieldError(loc=["query", name], msg=f"must be one of {', '.join(allowed)}")],
        )
    return raw


def parse_price(raw: str | None, name: str) -> Decimal | None:
    """A price filter, by the same rule as a body's ``price`` (:func:`shared.numbers.price`); 400 otherwise."""
    if raw is None:
        return None
    try:
        return numbers.price(raw)
    except ValueError as exc:
        msg = f"must be a price (a decimal number >= 0 with at most 2 places): {exc}"
        raise BadRequest(f"{name} {msg}", errors=[FieldError(loc=["query", name], msg=msg)]) from exc


def known_query(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]], known: frozenset[str]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``handler``, refusing with 400 a query parameter that is not in ``known`` (the route's declared ones,
    from the OpenAPI document), naming it: a client's ``?page=2`` or ``?colour=red`` is never silently ignored."""

    # A plain function returning the handler's coroutine, not a coroutine awaiting it: one frame fewer on every
    # request's way in and out (each suspension of a read resumes every frame on its stack).
    def checked(request: web.Request) -> Awaitable[web.StreamResponse]:
        if request.query_string and (unknown := sorted(set(request.query) - known)):
            takes = ", ".join(f"`{n}`" for n in sorted(known)) or "none"
            raise BadRequest(
                f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
                f" (this route takes: {takes})",
                errors=[FieldError(loc=["query", name], msg="unknown query parameter") for name in unknown],
            )
        return handler(request)

    return functools.wraps(handler)(checked)
