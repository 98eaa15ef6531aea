"""``/api/products``."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from api import commands, links, queries
from api.handlers.common import reads, slugged_writes
from api.parsing import parse_price, query_int
from api.responses import conditional, json_response
from api.schemas import ProductIn
from api.state import TRUSTED_PROXIES
from shared.errors import BadRequest, FieldError
from shared.readmodel.render import dumps
from shared.store.products import SORTS, Filters

_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def _bool(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is not None and raw.lower() not in _BOOLS:
        raise BadRequest(
            f"{name} must be true or false", errors=[FieldError(loc=["query", name], msg="must be true or false")]
        )
    return None if raw is None else _BOOLS[raw.lower()]


def _alias(request: web.Request, name: str, alias: str) -> str | None:
    """``name``'s value, or its Django REST framework ``alias``'s (``search`` for ``q``); 400 when both differ."""
    value, other = request.query.get(name), request.query.get(alias)
    if value is not None and other is not None and value != other:
        msg = f"is {name!r} by another name: give one of them (or both the same)"
        raise BadRequest(f"{alias} {msg}", errors=[FieldError(loc=["query", alias], msg=msg)])
    return value if value is not None else other


def filters(request: web.Request) -> Filters:
    q = request.query
    min_price = parse_price(q.get("min_price"), "min_price")
    max_price = parse_price(q.get("max_price"), "max_price")
    text = _alias(request, "q", "search")
    if text is not None and len(text) > 200:
        name = "q" if "q" in q else "search"
        raise BadRequest(
            f"{name} must be at most 200 characters",
            errors=[FieldError(loc=["query", name], msg="must be at most 200 characters")],
        )
    is_active = _bool(request, "is_active")
    return Filters(
        category=q.get("category") or None,
        min_price=min_price,
        max_price=max_price,
        in_stock=_bool(request, "in_stock"),
        q=text.strip() or None if text is not None else None,
        # Public listings show active products only, unless the client asks for inactive ones.
        is_active=True if is_active is None else is_active,
    )


def sort(request: web.Request) -> str:
    """``sort``, or Django REST framework's ``ordering`` (the same names, ``-`` for descending); 400 for an order
    the service cannot serve (DRF's ``-name``, ``id``, several fields), naming the parameter it came in."""
    chosen = _alias(request, "sort", "ordering")
    name = "sort" if "sort" in request.query else "ordering"
    if chosen is None:
        return "-created_at"
    if chosen not in SORTS:
        msg = f"must be one of {', '.join(SORTS)}"
        raise BadRequest(f"{name} {msg}", errors=[FieldError(loc=["query", name], msg=msg)])
    return chosen


#: Query parameters that ask for Django REST framework's numbered pages instead of keyset cursors.
NUMBERED: Final = ("page", "page_size")
#: A page number with more digits than this lies past the last page of any listing (404, as any other such).
_PAGE_DIGITS: Final = 18


def page_number(request: web.Request) -> int:
    """``page``: 1-based, ``last`` (as Django REST framework takes it) is 0; 400 unless a positive integer."""
    raw = request.query.get("page", "1")
    if raw == "last":
        return 0
    if not (raw.isascii() and raw.isdigit()) or int(raw[: _PAGE_DIGITS + 1]) == 0:
        msg = "must be a positive integer (or `last`)"
        raise BadRequest(f"page {msg}", errors=[FieldError(loc=["query", "page"], msg=msg)])
    return int(raw) if len(raw) <= _PAGE_DIGITS else 10**_PAGE_DIGITS


async def numbered(request: web.Request) -> web.Response:
    """Django REST framework's page: ``{"count", "next", "previous", "results"}``, with absolute URLs."""
    q = request.query
    if "cursor" in q:
        msg = "cannot be combined with page or page_size (numbered pages), use one or the other"
        raise BadRequest(f"cursor {msg}", errors=[FieldError(loc=["query", "cursor"], msg=msg)])
    # A generated client sends ``limit``'s default with every call: it sizes the page unless page_size does.
    size_param = "page_size" if "page_size" in q or "limit" not in q else "limit"
    size = query_int(request, size_param, 20, 1, 100)
    page = await queries.numbered_products(reads(request), filters(request), sort(request), page_number(request), size)
    trusted = request.app[TRUSTED_PROXIES]
    nxt = links.with_query(request, trusted, page=str(page.page + 1)) if page.page < page.last else None
    prev = links.with_query(request, trusted, page=str(page.page - 1)) if page.page > 1 else None
    head = dumps({"count": page.count, "next": nxt, "previous": prev})
    return json_response(head[:-1] + b',"results":' + page.results + b"}")


async def list_(request: web.Request) -> web.Response:
    if any(name in request.query for name in NUMBERED):
        return await numbered(request)
    body = await queries.products(
        reads(request),
        filters(request),
        sort(request),
        query_int(request, "limit", 20, 1, 100),
        request.query.get("cursor"),
    )
    return json_response(body)


async def get(request: web.Request) -> web.Response:
    body, etag = await queries.product(reads(request), request.match_info["slug"])
    return conditional(request, body, etag)


#: The writes: each hands one command down (:func:`api.handlers.common.slugged_writes`).
create, replace, patch, delete, restore = slugged_writes(commands.PRODUCTS, ProductIn, __name__)
