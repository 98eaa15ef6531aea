"""``/api/products``."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from api import commands, queries
from api.auth import requires
from api.commands import Outcome
from api.handlers.common import ctx, finish, reads
from api.http import conditional, if_match, json_response, loads, one_of, query_int, read_body, validate
from api.schemas import ProductIn
from shared.errors import BadRequest, FieldError
from shared.models import Written
from shared.store.products import SORTS, Filters
from shared.views import dumps

_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def _outcome(w: Written, status: int = 200) -> Outcome:
    return Outcome(
        status, dumps({"id": w.id, "slug": w.slug, "version": w.version}), location=f"/api/products/{w.slug}", written=w
    )


def filters(request: web.Request) -> Filters:
    q = request.query
    in_stock = q.get("in_stock")
    if in_stock is not None and in_stock.lower() not in _BOOLS:
        raise BadRequest(
            "in_stock must be true or false",
            errors=[FieldError(loc=["query", "in_stock"], msg="must be true or false")],
        )
    min_price = queries.parse_price(q.get("min_price"), "min_price")
    max_price = queries.parse_price(q.get("max_price"), "max_price")
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
    body, etag = await queries.product(reads(request), request.match_info["slug"])
    return conditional(request, body, etag)


@requires("write")
async def create(request: web.Request) -> web.Response:
    raw = await read_body(request)
    body = validate(ProductIn, loads(raw))
    c = ctx(request, raw)

    async def op(conn: asyncpg.Connection) -> Outcome:
        return _outcome(await commands.create_product(conn, c, body), 201)

    return await finish(request, await commands.run(c, op))


@requires("write")
async def replace(request: web.Request) -> web.Response:
    body = validate(ProductIn, loads(await read_body(request)))
    c, slug, expected = ctx(request), request.match_info["slug"], if_match(request)

    async def op(conn: asyncpg.Connection) -> Outcome:
        return _outcome(await commands.replace_product(conn, c, slug, body, expected))

    return await finish(request, await commands.run(c, op))


@requires("write")
async def patch(request: web.Request) -> web.Response:
    doc = loads(await read_body(request))
    c, slug, expected = ctx(request), request.match_info["slug"], if_match(request)

    async def op(conn: asyncpg.Connection) -> Outcome:
        return _outcome(await commands.patch_product(conn, c, slug, doc, expected))

    return await finish(request, await commands.run(c, op))


@requires("write")
async def delete(request: web.Request) -> web.Response:
    c, slug, expected = ctx(request), request.match_info["slug"], if_match(request)

    async def op(conn: asyncpg.Connection) -> Outcome:
        return Outcome(204, b"", written=await commands.delete_product(conn, c, slug, expected))

    return await finish(request, await commands.run(c, op))


@requires("admin")
async def restore(request: web.Request) -> web.Response:
    c, slug, expected = ctx(request), request.match_info["slug"], if_match(request)

    async def op(conn: asyncpg.Connection) -> Outcome:
        return _outcome(await commands.restore_product(conn, c, slug, expected))

    return await finish(request, await commands.run(c, op))
