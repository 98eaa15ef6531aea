"""``/api/categories``."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from api import commands, queries
from api.auth import requires
from api.commands import Outcome
from api.handlers.common import ctx, finish, reads
from api.http import conditional, if_match_tags, json_response, loads, query_int, read_body, validate
from api.schemas import CategoryIn
from shared.models import Written
from shared.views import dumps


def _outcome(w: Written, status: int = 200) -> Outcome:
    return Outcome(
        status,
        dumps({"id": w.id, "slug": w.slug, "version": w.version}),
        location=f"/api/categories/{w.slug}",
        written=w,
    )


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
    body = validate(CategoryIn, loads(raw))
    c = ctx(request, raw)

    async def op(conn: asyncpg.Connection) -> Outcome:
        return _outcome(await commands.create_category(conn, c, body), 201)

    return await finish(request, await commands.run(c, op))


@requires("write")
async def replace(request: web.Request) -> web.Response:
    body = validate(CategoryIn, loads(await read_body(request)))
    c, slug, tags = ctx(request), request.match_info["slug"], if_match_tags(request)

    async def op(conn: asyncpg.Connection) -> Outcome:
        return _outcome(
            await commands.replace_category(conn, c, slug, body, await commands.category_versions(conn, slug, tags))
        )

    return await finish(request, await commands.run(c, op))


@requires("write")
async def patch(request: web.Request) -> web.Response:
    doc = loads(await read_body(request))
    c, slug, tags = ctx(request), request.match_info["slug"], if_match_tags(request)

    async def op(conn: asyncpg.Connection) -> Outcome:
        return _outcome(
            await commands.patch_category(conn, c, slug, doc, await commands.category_versions(conn, slug, tags))
        )

    return await finish(request, await commands.run(c, op))


@requires("write")
async def delete(request: web.Request) -> web.Response:
    c, slug, tags = ctx(request), request.match_info["slug"], if_match_tags(request)

    async def op(conn: asyncpg.Connection) -> Outcome:
        return Outcome(
            204,
            b"",
            written=await commands.delete_category(conn, c, slug, await commands.category_versions(conn, slug, tags)),
        )

    return await finish(request, await commands.run(c, op))


@requires("admin")
async def restore(request: web.Request) -> web.Response:
    c, slug, tags = ctx(request), request.match_info["slug"], if_match_tags(request)

    async def op(conn: asyncpg.Connection) -> Outcome:
        return _outcome(
            await commands.restore_category(conn, c, slug, await commands.category_versions(conn, slug, tags))
        )

    return await finish(request, await commands.run(c, op))
