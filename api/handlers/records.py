"""``/api/records`` and the legacy ``/picus`` and ``/data`` routes over the same records."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

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


Handler = Callable[[web.Request], Awaitable[web.Response]]

#: What the older ``/picus`` service answered while its database was not there (503, with ``Retry-After``).
DATABASE_NOT_READY: Final = b'{"error":"Database not ready"}'
PICUS, DATA = "picus", "data"


def _legacy_unavailable(handler: Handler) -> Handler:
    """Mark ``handler``: a 503 there is the older service's ``{"error": "Database not ready"}``
    (:func:`api.edge.unavailable_body`), not a problem document."""
    handler.__dict__["unavailable_body"] = DATABASE_NOT_READY
    return handler


async def _create_legacy(request: web.Request, collection: str, doc: dict[str, Any]) -> web.Response:
    return await write(request, commands.CreateLegacyRecord(collection, doc), await read_body(request))


@_legacy_unavailable
@requires("write")
async def picus_put(request: web.Request) -> web.Response:
    doc = _object(await read_body(request))
    commands.check_collection(PICUS, doc)
    return await _create_legacy(request, PICUS, doc)


def _with_id(rows: list[Record]) -> list[dict[str, Any]]:
    return [{**r.data, "id": r.id} for r in rows]


def _data(rows: list[Record]) -> list[Any]:
    return [r.data for r in rows]


async def _legacy_list(request: web.Request, shape: Callable[[list[Record]], Any], collection: str) -> web.Response:
    """A JSON array as the older services answered, bounded (``queries.LEGACY_MAX_ITEMS``, by default and at
    most, and ``queries.LEGACY_MAX_BYTES``); when more follow, ``Link: <...>; rel="next"`` names the next page."""
    limit = query_int(request, "limit", queries.LEGACY_MAX_ITEMS, 1, queries.LEGACY_MAX_ITEMS)
    body, nxt = await queries.legacy_records(reads(request), shape, limit, request.query.get("cursor"), collection)
    response = json_response(body)
    if nxt is not None:
        url = request.rel_url.with_query({"cursor": nxt, "limit": str(limit)})
        response.headers["Link"] = f'<{url}>; rel="next"'
    return response


@_legacy_unavailable
async def picus_list(request: web.Request) -> web.Response:
    return await _legacy_list(request, _with_id, PICUS)


@_legacy_unavailable
async def picus_get(request: web.Request) -> web.Response:
    rec, etag = await queries.legacy_record(reads(request), PICUS, record_id(request))
    return conditional(request, dumps({**rec.data, "id": rec.id}), etag)


@requires("write")
async def data_post(request: web.Request) -> web.Response:
    doc = _object(await read_body(request))
    commands.check_collection(DATA, doc)  # before the idempotency key is looked at, as for every body
    return await _create_legacy(request, DATA, doc)


async def data_list(request: web.Request) -> web.Response:
    return await _legacy_list(request, _data, DATA)
