"""``/api/products``."""

from __future__ import annotations

from aiohttp import web

from api import commands, queries
from api.handlers.common import numbered_page, numbered_response, reads, slugged_writes, wants_numbered
from api.parsing import parse_price, query_int
from api.problems import problem_response
from api.responses import conditional, json_response
from api.schemas import ProductIn
from shared.errors import BadRequest, FieldError
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


async def numbered(request: web.Request) -> web.Response:
    """Django REST framework's page of products (``page``, ``page_size``)."""
    page, size = numbered_page(request)
    found = await queries.numbered_products(reads(request), filters(request), sort(request), page, size)
    return numbered_response(request, found)


async def list_(request: web.Request) -> web.Response:
    if wants_numbered(request):
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
    slug = request.match_info["slug"]
    found = await queries.product(reads(request), slug)
    if found is None:
        return problem_response(404, "Not Found", f"no product {slug!r}")
    return conditional(request, *found)


#: The writes: each hands one command down (:func:`api.handlers.common.slugged_writes`).
create, replace, patch, delete, restore = slugged_writes(commands.PRODUCTS, ProductIn, __name__)
