"""``/api/records`` and the legacy ``/picus`` and ``/data`` routes over the same records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from api import commands, queries
from api.auth import requires
from api.handlers.common import reads, record_id, write
from api.parsing import if_match_tags, loads, query_int, read_body
from api.responses import conditional, json_response
from shared.errors import FieldError, ValidationFailed
from shared.models import Record
from shared.readmodel.render import dumps


def _object(raw: bytes) -> dict[str, Any]:
    doc = loads(raw)
    if not isinstance(doc, dict):
        raise ValidationFailed(
            "a record must be a JSON object", errors=[FieldError(loc=["body"], msg="must be an object")]
        )
    return doc


async def _create(request: web.Request, status: int) -> web.Response:
    raw = await read_body(request)
    return await write(request, commands.CreateRecord(_object(raw), status), raw)


async def list_(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 20, 1, 100)
    return json_response(await queries.records(reads(request), limit, request.query.get("cursor")))


async def get(request: web.Request) -> web.Response:
    body, etag = await queries.record(reads(request), record_id(request))
    return conditional(request, body, etag)


@requires("write")
async def create(request: web.Request) -> web.Response:
    return await _create(request, 201)


@requires("write")
async def replace(request: web.Request) -> web.Response:
    doc = _object(await read_body(request))
    return await write(request, commands.ReplaceRecord(record_id(request), doc, if_match_tags(request)))


@requires("write")
async def delete(request: web.Request) -> web.Response:
    return await write(request, commands.DeleteRecord(record_id(request), if_match_tags(request)))


# -- legacy routes: the seeds' /picus and /data services ------------------------------------------


@requires("write")
async def picus_put(request: web.Request) -> web.Response:
    return await _create(request, 200)


def _id_and_data(rows: list[Record]) -> list[dict[str, Any]]:
    return [{"id": r.id, "data": r.data} for r in rows]


def _data(rows: list[Record]) -> list[Any]:
    return [r.data for r in rows]


async def _legacy_list(request: web.Request, shape: Callable[[list[Record]], Any]) -> web.Response:
    """A JSON array as the older services answered, bounded (``queries.LEGACY_MAX_ITEMS``, by default and at
    most, and ``queries.LEGACY_MAX_BYTES``); when more follow, ``Link: <...>; rel="next"`` names the next page."""
    limit = query_int(request, "limit", queries.LEGACY_MAX_ITEMS, 1, queries.LEGACY_MAX_ITEMS)
    body, nxt = await queries.legacy_records(reads(request), shape, limit, request.query.get("cursor"))
    response = json_response(body)
    if nxt is not None:
        url = request.rel_url.with_query({"cursor": nxt, "limit": str(limit)})
        response.headers["Link"] = f'<{url}>; rel="next"'
    return response


async def picus_list(request: web.Request) -> web.Response:
    return await _legacy_list(request, _id_and_data)


async def picus_get(request: web.Request) -> web.Response:
    body, etag = await queries.record(reads(request), record_id(request))
    return conditional(request, dumps(orjson.loads(body)["data"]), etag)


@requires("write")
async def data_post(request: web.Request) -> web.Response:
    return await _create(request, 201)


async def data_list(request: web.Request) -> web.Response:
    return await _legacy_list(request, _data)
