"""``/api/categories``."""

from __future__ import annotations

from aiohttp import web

from api import commands, queries
from api.handlers.common import numbered_page, numbered_response, reads, slugged_writes, wants_numbered
from api.parsing import query_int
from api.responses import conditional, json_response
from api.schemas import CategoryIn


async def list_(request: web.Request) -> web.Response:
    if wants_numbered(request):
        page, size = numbered_page(request)
        return numbered_response(request, await queries.numbered_categories(reads(request), page, size))
    limit = query_int(request, "limit", 20, 1, 100)
    body = await queries.categories(reads(request), limit, request.query.get("cursor"))
    return json_response(body)


async def get(request: web.Request) -> web.Response:
    body, etag = await queries.category(reads(request), request.match_info["slug"])
    return conditional(request, body, etag)


#: The writes: each hands one command down (:func:`api.handlers.common.slugged_writes`).
create, replace, patch, delete, restore = slugged_writes(commands.CATEGORIES, CategoryIn, __name__)
