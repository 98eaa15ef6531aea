"""What every handler does the same way: hand a write's command down with its context, and answer its outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, NamedTuple

from aiohttp import web
from pydantic import BaseModel

from api import commands, links
from api.auth import Principal, requires
from api.commands import Collection, Command, Ctx, Outcome, request_hash
from api.parsing import if_match_tags, loads, query_int, read_body
from api.queries import Numbered, Reads
from api.responses import JSON, json_response
from api.schemas import validate
from api.state import PG_POOL, PRINCIPAL, READS, REQUEST_ID, SETTINGS, STORAGE, TRUSTED_PROXIES, WRITE_THROUGH
from shared.errors import BadRequest, FieldError, NotFound
from shared.models import Category
from shared.readmodel import render

MAX_IDEMPOTENCY_KEY = 255

Handler = Callable[[web.Request], Awaitable[web.Response]]


def ctx(request: web.Request, body: bytes = b"") -> Ctx:
    """The command context; POSTs honour ``Idempotency-Key``."""
    settings = request.app[SETTINGS]
    key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    principal: Principal = request[PRINCIPAL]
    return Ctx(
        pool=request.app[PG_POOL],
        timeout=settings.pg_connect_timeout,
        deadline=settings.write_deadline,
        request_id=request[REQUEST_ID],
        owner=principal.owner,
        idempotency_key=key,
        request_hash=request_hash(request.method, request.path.rstrip("/"), body) if key else "",
        media_url=settings.media_url,
        read_model=request.app[WRITE_THROUGH],
        storage=request.app.get(STORAGE),
    )


def reads(request: web.Request) -> Reads:
    """The read context: PostgreSQL, Redis (through the read model's scripts) and the media URL."""
    return request.app[READS]


async def write(request: web.Request, command: Command, body: bytes = b"") -> web.Response:
    """Hand ``command`` down (``body``: the raw body an Idempotency-Key is checked against), answer its outcome."""
    return respond(await commands.run(ctx(request, body), command))


class SluggedWrites(NamedTuple):
    create: Handler
    replace: Handler
    patch: Handler
    delete: Handler
    restore: Handler


def slugged_writes(collection: Collection, model: type[BaseModel], module: str) -> SluggedWrites:
    """The five write handlers of a resource addressed by slug, each one command handed down. ``module`` names
    them as if written out in the resource's own module (the OpenAPI document's operation ids come from it)."""

    async def create(request: web.Request) -> web.Response:
        raw = await read_body(request)
        return await write(request, commands.Create(collection, validate(model, loads(raw))), raw)

    async def replace(request: web.Request) -> web.Response:
        body = validate(model, loads(await read_body(request)))
        return await write(
            request, commands.Replace(collection, request.match_info["slug"], body, if_match_tags(request))
        )

    async def patch(request: web.Request) -> web.Response:
        doc = loads(await read_body(request))
        return await write(request, commands.Patch(collection, request.match_info["slug"], doc, if_match_tags(request)))

    async def delete(request: web.Request) -> web.Response:
        return await write(request, commands.Delete(collection, request.match_info["slug"], if_match_tags(request)))

    async def restore(request: web.Request) -> web.Response:
        return await write(request, commands.Restore(collection, request.match_info["slug"], if_match_tags(request)))

    for handler in (create, replace, patch, delete, restore):
        handler.__module__ = module
        handler.__qualname__ = handler.__name__
    # Restoring a deleted resource needs the admin scope; every other write, ``write``.
    write_scope, admin_scope = requires("write"), requires("admin")
    return SluggedWrites(
        write_scope(create), write_scope(replace), write_scope(patch), write_scope(delete), admin_scope(restore)
    )


def respond(outcome: Outcome) -> web.Response:
    headers = {"Location": outcome.location} if outcome.location else {}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    elif (tag := written_etag(outcome)) is not None:
        headers["ETag"] = tag
    if outcome.status == 204:
        return web.Response(status=204, headers=headers)
    return web.Response(body=outcome.body, status=outcome.status, content_type=JSON, headers=headers)


def written_etag(outcome: Outcome) -> str | None:
    """The ETag of what a write left, as a read of it would answer: a client chains its next ``If-Match`` on it
    without a GET. None for answers without a body (a delete leaves nothing to name) and for a replay, whose
    stored answer may be older than the resource."""
    w = outcome.written
    if w is None or outcome.status == 204 or w.deleted:
        return None
    return render.category_etag(w.entity) if isinstance(w.entity, Category) else render.etag(w.version)


def record_id(request: web.Request) -> int:
    """The ``{id}`` of a record path; anything but a positive integer names no record (404)."""
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise NotFound(f"no record {raw!r}")
    return int(raw)


# -- Django REST framework's numbered pages -------------------------------------------------------

#: Query parameters that ask for Django REST framework's numbered pages instead of keyset cursors.
NUMBERED: Final = ("page", "page_size")
#: A page number with more digits than this lies past the last page of any listing (404, as any other such).
_PAGE_DIGITS: Final = 18


def wants_numbered(request: web.Request) -> bool:
    return any(name in request.query for name in NUMBERED)


def numbered_page(request: web.Request) -> tuple[int, int]:
    """``page`` (1-based; ``last``, as Django REST framework takes it, is 0) and the page size; 400 unless the page
    is a positive integer, the size one from 1 to 100, and no ``cursor`` is given with them."""
    q = request.query
    if "cursor" in q:
        msg = "cannot be combined with page or page_size (numbered pages), use one or the other"
        raise BadRequest(f"cursor {msg}", errors=[FieldError(loc=["query", "cursor"], msg=msg)])
    # A generated client sends ``limit``'s default with every call: it sizes the page unless page_size does.
    size = query_int(request, "page_size" if "page_size" in q or "limit" not in q else "limit", 20, 1, 100)
    raw = q.get("page", "1")
    if raw == "last":
        return 0, size
    if not (raw.isascii() and raw.isdigit()) or int(raw[: _PAGE_DIGITS + 1]) == 0:
        msg = "must be a positive integer (or `last`)"
        raise BadRequest(f"page {msg}", errors=[FieldError(loc=["query", "page"], msg=msg)])
    return (int(raw) if len(raw) <= _PAGE_DIGITS else 10**_PAGE_DIGITS), size


def numbered_response(request: web.Request, page: Numbered) -> web.Response:
    """Django REST framework's page: ``{"count", "next", "previous", "results"}``, with absolute URLs."""
    trusted = request.app[TRUSTED_PROXIES]
    nxt = links.with_query(request, trusted, page=str(page.page + 1)) if page.page < page.last else None
    prev = links.with_query(request, trusted, page=str(page.page - 1)) if page.page > 1 else None
    head = render.dumps({"count": page.count, "next": nxt, "previous": prev})
    return json_response(head[:-1] + b',"results":' + page.results + b"}")
