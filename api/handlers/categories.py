"""``/api/categories``."""

from __future__ import annotations

from aiohttp import web

from api import commands, queries
from api.auth import requires
from api.handlers.common import reads, write
from api.parsing import if_match_tags, loads, query_int, read_body
from api.responses import conditional, json_response
from api.schemas import CategoryIn, validate


async def list_(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 20, 1, 100)
    body = await queries.categories(reads(request), limit, request.query.get("cursor"))
    return json_response(body)


async def get(request: web.Request) -> web.Response:
    body, etag = await queries.category(reads(request), request.match_info["slug"])
    return conditional(request, body, etag)


@requires("write")
async def create(request: web.Request) -> web.Response:
    raw = await read_body(request)
    return await write(request, commands.CreateCategory(validate(CategoryIn, loads(raw))), raw)


@requires("write")
async def replace(request: web.Request) -> web.Response:
    body = validate(CategoryIn, loads(await read_body(request)))
    return await write(request, commands.ReplaceCategory(request.match_info["slug"], body, if_match_tags(request)))


@requires("write")
async def patch(request: web.Request) -> web.Response:
    doc = loads(await read_body(request))
    return await write(request, commands.PatchCategory(request.match_info["slug"], doc, if_match_tags(request)))


@requires("write")
async def delete(request: web.Request) -> web.Response:
    return await write(request, commands.DeleteCategory(request.match_info["slug"], if_match_tags(request)))


@requires("admin")
async def restore(request: web.Request) -> web.Response:
    return await write(request, commands.RestoreCategory(request.match_info["slug"], if_match_tags(request)))
