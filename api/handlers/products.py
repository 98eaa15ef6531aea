"""``/api/products``."""

from __future__ import annotations

from aiohttp import web

from api import commands, queries
from api.handlers.common import reads, slugged_writes
from api.parsing import one_of, parse_price, query_int
from api.problems import problem_response
from api.responses import conditional, json_response
from api.schemas import ProductIn
from shared.errors import BadRequest, FieldError
from shared.store.products import SORTS, Filters

_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def filters(request: web.Request) -> Filters:
    q = request.query
    in_stock = q.get("in_stock")
    if in_stock is not None and in_stock.lower() not in _BOOLS:
        raise BadRequest(
            "in_stock must be true or false",
            errors=[FieldError(loc=["query", "in_stock"], msg="must be true or false")],
        )
    min_price = parse_price(q.get("min_price"), "min_price")
    max_price = parse_price(q.get("max_price"), "max_price")
    text = q.get("q")
    if text is not None and len(text) > 200:
        raise BadRequest(
            "q must be at most 200 characters",
            errors=[FieldError(loc=["query", "q"], msg="must be at most 200 characters")],
        )
    return Filters(
        category=q.get("category") or None,
        min_price=min_price,
        max_price=max_price,
        in_stock=None if in_stock is None else _BOOLS[in_stock.lower()],
        q=text.strip() or None if text is not None else None,
    )


async def list_(request: web.Request) -> web.Response:
    body = await queries.products(
        reads(request),
        filters(request),
        one_of(request, "sort", "-created_at", SORTS),
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
