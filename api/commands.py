"""Write use cases: a command value in, one :class:`Outcome` out (:func:`run`).

Each write is one PostgreSQL statement (row + outbox row) or, with an Idempotency-Key, one transaction holding
that statement and the key's record. Once it has committed, what it wrote goes through to the read model, so the
client's next read sees at least that version however far the cache worker lags.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Protocol, TypeVar

import asyncpg

from api.schemas import CategoryIn, DataItemIn, ProductIn, validate
from shared import slugs
from shared.errors import Conflict, NotFound, PreconditionFailed, ServiceUnavailable, ValidationFailed
from shared.errors import FieldError as FE
from shared.logs import get_logger
from shared.merge_patch import apply as merge
from shared.models import Product, Versions, Written
from shared.readmodel.client import REDIS_ERRORS, FastRedis
from shared.readmodel.debts import Guard
from shared.readmodel.project import project
from shared.readmodel.read import Stats
from shared.readmodel.render import counted_versions, dumps, image, versions
from shared.storage import Storage
from shared.store import categories as cat_repo
from shared.store import idempotency, suffixes
from shared.store import images as image_repo
from shared.store import media as media_repo
from shared.store import products as prod_repo
from shared.store import records as rec_repo
from shared.store import users as user_repo
from shared.store.pool import connection

M = TypeVar("M", CategoryIn, ProductIn)
log = get_logger("api.commands")

#: How often an automatic slug or a PATCH without If-Match is retried after losing a race. Each round has a
#: winner, so the k-th of k simultaneous requests needs k attempts: the bound must exceed any plausible burst
#: (5 turned a burst of 6 same-name creates or PATCHes into 409s). An attempt is one or two cheap statements.
RETRIES = 50

#: The strong entity tags of an ``If-Match`` header, unquoted (``None``: no condition, or ``*``).
Tags = list[str] | None


@dataclass(frozen=True)
class ReadModel:
    """Where committed writes go through to: the read model's connection, and the counters a failed
    write-through is counted in."""

    redis: FastRedis
    stats: Stats
    #: Where a failed write-through is recorded as a debt (:mod:`shared.readmodel.debts`).
    guard: Guard


@dataclass(frozen=True)
class Ctx:
    """Who asks, and how: what every command needs besides its own values."""

    pool: asyncpg.Pool
    timeout: float
    request_id: str
    owner: str = "anonymous"
    idempotency_key: str | None = None
    request_hash: str = ""
    deadline: float = 1.9
    #: Where stored media are served (``MEDIA_URL``): representations link to it.
    media_url: str = "/media/"
    #: The write-through's target (None: ``READ_MODEL_WRITE_THROUGH=false``).
    read_model: ReadModel | None = None
    #: The image storage (image commands only).
    storage: Storage | None = None


@dataclass(frozen=True)
class Outcome:
    """What the client gets back: status, JSON body and ``Location``; ``replayed`` for an idempotent retry."""

    status: int
    body: bytes
    location: str | None = None
    replayed: bool = False
    #: What the command wrote (None on a replay, and for a write that changed nothing).
    written: Written | None = None


# -- the commands: each a value, and the use case it runs (:meth:`apply`) ------------------------


class Command(Protocol):
    """A write: the values it needs, and :meth:`apply`, its statement(s) on ``conn`` and the client's answer."""

    async def apply(self, conn: asyncpg.Connection, ctx: Ctx) -> Outcome: ...


@dataclass(frozen=True)
class Collection:
    """A resource addressed by slug (categories, products): its use cases, and how its ``If-Match`` tags name
    versions. The five commands below take one, so both resources write alike."""

    #: The path segment, and the ``kind`` of its messages.
    name: str
    create: Callable[[asyncpg.Connection, Ctx, Any], Awaitable[Written]]
    replace: Callable[[asyncpg.Connection, Ctx, str, Any, Versions | None], Awaitable[Written]]
    patch: Callable[[asyncpg.Connection, Ctx, str, Any, Versions | None], Awaitable[Written]]
    delete: Callable[[asyncpg.Connection, Ctx, str, Versions | None], Awaitable[Written]]
    restore: Callable[[asyncpg.Connection, Ctx, str, Versions | None], Awaitable[Written]]
    versions: Callable[[asyncpg.Connection, str, Tags], Awaitable[Versions | None]]

    def answer(self, w: Written, status: int = 200) -> Outcome:
        """The answer to a write: the id, slug and new version, and where the resource is."""
        body = dumps({"id": w.id, "slug": w.slug, "version": w.version})
        return Outcome(status, body, location=f"/api/{self.name}/{w.slug}", written=w)


@dataclass(frozen=True)
class Create:
    collection: Collection
    body: Any

    async def apply(self, conn: asyncpg.Connection, ctx: Ctx) -> Outcome:
        return self.collection.answer(await self.collection.create(conn, ctx, self.body), 201)


class _AtVersion(ABC):
    """A write to the resource ``slug`` of a collection, at the versions its ``If-Match`` names (read by the
    collection): :meth:`write` is the use case, which each command defines."""

    collection: Collection
    slug: str
    if_match: Tags

    async def apply(self, conn: asyncpg.Connection, ctx: Ctx) -> Outcome:
        return await self.write(conn, ctx, await self.collection.versions(conn, self.slug, self.if_match))

    @abstractmethod
    async def write(self, conn: asyncpg.Connection, ctx: Ctx, expected: Versions | None) -> Outcome: ...


@dataclass(frozen=True)
class _Addressed(_AtVersion):
    collection: Collection
    slug: str
    if_match: Tags = None


@dataclass(frozen=True)
class _AddressedWithBody(_AtVersion):
    collection: Collection
    slug: str
    body: Any
    if_match: Tags = None


class Replace(_AddressedWithBody):
    async def write(self, conn: asyncpg.Connection, ctx: Ctx, expected: Versions | None) -> Outcome:
        return self.collection.answer(await self.collection.replace(conn, ctx, self.slug, self.body, expected))


class Patch(_AddressedWithBody):
    """A JSON merge patch (RFC 7396) of the resource's fields: ``body`` is the patch."""

    async def write(self, conn: asyncpg.Connection, ctx: Ctx, expected: Versions | None) -> Outcome:
        return self.collection.answer(await self.collection.patch(conn, ctx, self.slug, self.body, expected))


class Delete(_Addressed):
    """A soft delete."""

    async def write(self, conn: asyncpg.Connection, ctx: Ctx, expected: Versions | None) -> Outcome:
        return Outcome(204, b"", written=await self.collection.delete(conn, ctx, self.slug, expected))


class Restore(_Addressed):
    async def write(self, conn: asyncpg.Connection, ctx: Ctx, expected: Versions | None) -> Outcome:
        return self.collection.answer(await self.collection.restore(conn, ctx, self.slug, expected))


@dataclass(frozen=True)
class SetImage:
    """Make the stored original ``key`` the product's image (``pending`` until its thumbnails are made)."""

    slug: str
    key: str
    if_match: Tags = None

    async def apply(self, conn: asyncpg.Connection, ctx: Ctx) -> Outcome:
        return await _set_image(conn, ctx, self.slug, self.key, _versions(self.if_match))


@dataclass(frozen=True)
class RemoveImage:
    slug: str
    if_match: Tags = None

    async def apply(self, conn: asyncpg.Connection, ctx: Ctx) -> Outcome:
        return Outcome(204, b"", written=await _remove_image(conn, ctx, self.slug, _versions(self.if_match)))


@dataclass(frozen=True)
class CreateRecord:
    data: dict[str, Any]
    #: The older ``/picus`` service answered a create with 200.
    status: int = 201

    async def apply(self, conn: asyncpg.Connection, ctx: Ctx) -> Outcome:
        w = await rec_repo.insert(conn, self.data, ctx.request_id)
        return Outcome(self.status, dumps({"id": w.id}), location=f"/api/records/{w.id}", written=w)


@dataclass(frozen=True)
class CreateLegacyRecord:
    """A document of an older service's own collection: ``/picus/put`` answers ``{"id"}``, ``POST /data`` the older
    service's message with the item as sent."""

    collection: str
    data: dict[str, Any]

    async def apply(self, conn: asyncpg.Connection, ctx: Ctx) -> Outcome:
        w = await create_legacy_record(conn, ctx, self.collection, self.data)
        answer = (
            {"message": "Item criado com sucesso", "item": self.data} if self.collection == "data" else {"id": w.id}
        )
        return Outcome(201, dumps(answer), location=f"/api/records/{w.id}", written=w)


@dataclass(frozen=True)
class ReplaceRecord:
    record_id: int
    data: dict[str, Any]
    if_match: Tags = None

    async def apply(self, conn: asyncpg.Connection, ctx: Ctx) -> Outcome:
        w = await replace_record(conn, ctx, self.record_id, self.data, _versions(self.if_match))
        return Outcome(200, dumps({"id": w.id, "version": w.version}), written=w)


@dataclass(frozen=True)
class DeleteRecord:
    record_id: int
    if_match: Tags = None

    async def apply(self, conn: asyncpg.Connection, ctx: Ctx) -> Outcome:
        return Outcome(204, b"", written=await delete_record(conn, ctx, self.record_id, _versions(self.if_match)))


@dataclass(frozen=True)
class UpsertUser:
    username: str
    born: dt.date

    async def apply(self, conn: asyncpg.Connection, ctx: Ctx) -> Outcome:
        user = await user_repo.upsert(conn, self.username, self.born, ctx.request_id)
        return Outcome(204, b"", written=Written(user))


async def run(ctx: Ctx, command: Command) -> Outcome:
    """Run ``command`` within the write deadline (503 past it), then write what it wrote through to the read
    model. With an Idempotency-Key, inside a transaction that records (or replays) the answer."""
    try:
        async with asyncio.timeout(ctx.deadline):
            outcome = await _run(ctx, command)
    except TimeoutError as exc:
        raise ServiceUnavailable("PostgreSQL did not answer in time") from exc
    if outcome.written is not None and not outcome.replayed and ctx.read_model is not None:
        await _write_through(ctx.read_model, outcome.written, ctx.media_url)
    return outcome


async def _write_through(rm: ReadModel, w: Written, media_url: str) -> None:
    """A failed write-through is no failed write, but a debt: recorded in PostgreSQL before the answer, and
    repaid before any process reads Redis again (:mod:`shared.readmodel.debts`)."""
    try:
        await project(rm.redis.run_script, w.entity, media_url, deleted=w.deleted, from_write=True)
    except REDIS_ERRORS as exc:
        rm.stats.errors += 1
        log.debug("redis_fill_failed", error=type(exc).__name__)
        await rm.guard.owe(w)


async def _run(ctx: Ctx, command: Command) -> Outcome:
    async with connection(ctx.pool, ctx.timeout) as conn:
        if ctx.idempotency_key is None:
            return await command.apply(conn, ctx)
        async with conn.transaction():
            if not await idempotency.claim(conn, ctx.owner, ctx.idempotency_key, ctx.request_hash):
                stored = await idempotency.get(conn, ctx.owner, ctx.idempotency_key)
                if stored is None or stored.status is None or stored.body is None:
                    raise Conflict("a request with this Idempotency-Key is still in progress")
                if stored.request_hash != ctx.request_hash:
                    raise ValidationFailed(
                        "this Idempotency-Key was used with another request",
                        errors=[FE(loc=["header", "Idempotency-Key"], msg="was used with another request body")],
                    )
                return Outcome(stored.status, stored.body, stored.location, replayed=True)
            outcome = await command.apply(conn, ctx)
            await idempotency.save(conn, ctx.owner, ctx.idempotency_key, outcome.status, outcome.body, outcome.location)
            return outcome


def _versions(tags: Tags) -> Versions | None:
    """The versions that strong ``If-Match`` tags name (None: no condition). A weak tag was dropped already, and a
    tag that is no ETag this service issues for a version (``"1.5"``, ``"03"``) names none: the write is a 412."""
    return None if tags is None else versions(tags)


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def _savepoint(conn: asyncpg.Connection) -> contextlib.AbstractAsyncContextManager[Any]:
    # A failed statement aborts a transaction: inside one, each attempt gets a savepoint.
    return conn.transaction() if conn.is_in_transaction() else contextlib.nullcontext()


async def insert_with_slug(
    conn: asyncpg.Connection,
    explicit: str | None,
    name: str,
    kind: str,
    taken: suffixes.Taken,
    insert: Callable[[str], Awaitable[Written | None]],
) -> Written | None:
    """Insert under ``explicit`` (409 if taken) or under a slug made from ``name``: the base, or ``-2``, ``-3``...
    when it is taken, the number from the base's counter (:mod:`shared.store.suffixes`)."""
    if explicit is not None:
        try:
            async with _savepoint(conn):
                return await insert(explicit)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"slug {explicit!r} is already taken") from exc
    base = slugs.base_slug(name, kind)
    candidate = base
    for attempt in range(RETRIES):
        try:
            async with _savepoint(conn):
                return await insert(candidate)
        except asyncpg.UniqueViolationError:
            # The base taken: the counter's next number; that number taken too (by an explicit slug): past them all.
            number = suffixes.next_number if attempt == 0 else suffixes.renumber
            candidate = slugs.with_suffix(base, await number(conn, kind, base, taken))
    raise Conflict("could not find a free slug; try again")


async def _renamed(attempt: Awaitable[Written | None], new_slug: str) -> Written | None:
    try:
        return await attempt
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"slug {new_slug!r} is already taken") from exc


def _check_version(expected: Versions | None, actual: int) -> None:
    if expected is not None and actual not in expected:
        raise PreconditionFailed(precondition_failed(expected, actual))


def precondition_failed(expected: Versions, actual: int) -> str:
    """Why an ``If-Match`` did not match, for the 412's detail."""
    named = ", ".join(str(v) for v in expected) or "no version of it (a weak or unknown entity tag)"
    return f"the resource is at version {actual}; If-Match named {named}"


def _live_or_refuse(state: Any, kind: str, name: object, expected: Versions | None) -> Any:
    """Why a write to a live resource did nothing: 404 if there is none, 412 if ``If-Match`` names another
    version; otherwise ``state``, for the caller to say what else stood in the way."""
    if state is None or state["deleted"]:
        raise NotFound(f"no {kind} {name!r}")
    _check_version(expected, state["version"])
    return state


def _deleted_or_refuse(state: Any, kind: str, slug: str, expected: Versions | None) -> Any:
    """Why a restore did nothing: 404 if there is no such resource, 409 if it is not deleted, 412 if ``If-Match``
    names another version; otherwise ``state``."""
    if state is None:
        raise NotFound(f"no {kind} {slug!r}")
    if not state["deleted"]:
        raise Conflict(f"{kind} {slug!r} is not deleted")
    _check_version(expected, state["version"])
    return state


def _fields(body: CategoryIn | ProductIn, slug: str | None) -> dict[str, Any]:
    """The body's fields as the repository writes them, under ``slug``."""
    fields = body.model_dump()
    fields["slug"] = slug
    return fields


async def create_category(conn: asyncpg.Connection, ctx: Ctx, body: CategoryIn) -> Written:
    async def insert(slug: str) -> Written | None:
        return await cat_repo.insert(conn, fields=_fields(body, slug), request_id=ctx.request_id)

    written = await insert_with_slug(conn, body.slug, body.name, "category", cat_repo.slugs_like, insert)
    if written is None:
        raise _no_parent(body.parent)
    return written


def _no_parent(parent: str | None) -> ValidationFailed:
    return ValidationFailed(
        "parent is not a live category",
        errors=[FE(loc=["body", "parent"], msg=f"no live category {parent!r}")],
    )


async def replace_category(
    conn: asyncpg.Connection, ctx: Ctx, slug: str, body: CategoryIn, expected: Versions | None
) -> Written:
    new_slug = body.slug or slug
    if body.parent is not None:
        current = await cat_repo.state(conn, slug)
        if current is None or current["deleted"]:
            raise NotFound(f"no category {slug!r}")
        if body.parent in (slug, new_slug) or await cat_repo.would_cycle(conn, current["id"], body.parent):
            raise ValidationFailed(
                "a category cannot be its own ancestor",
                errors=[FE(loc=["body", "parent"], msg="would make the category its own ancestor")],
            )
    written = await _renamed(
        cat_repo.update(
            conn, slug, fields=_fields(body, new_slug), expected_version=expected, request_id=ctx.request_id
        ),
        new_slug,
    )
    if written is not None:
        return written
    _live_or_refuse(await cat_repo.state(conn, slug), "category", slug, expected)
    raise _no_parent(body.parent)


async def category_versions(conn: asyncpg.Connection, slug: str, tags: Tags) -> Versions | None:
    """The versions of category ``slug`` that the strong ``If-Match`` ``tags`` name (``None``: no condition).

    A category's ETag is ``"<version>.<live products>"`` (``render.category_etag``): such a tag matches only
    while both are current. The version is then compared again by the write's own statement; the count, which
    products change, is read here just before. A bare ``"<version>"`` names the version alone, as a write's
    ``version`` field does.
    """
    if tags is None:
        return None
    named = set(versions(tags))
    counted = counted_versions(tags)
    if counted:
        state = await cat_repo.state(conn, slug)
        if state is not None and (state["version"], state["live_products"]) in counted:
            named.add(state["version"])
    return tuple(sorted(named))


async def delete_category(conn: asyncpg.Connection, ctx: Ctx, slug: str, expected: Versions | None) -> Written:
    async with conn.transaction():  # soft_delete's lock and its product check, together
        written = await cat_repo.soft_delete(conn, slug, expected, ctx.request_id)
    if written is not None:
        return written
    state = _live_or_refuse(await cat_repo.state(conn, slug), "category", slug, expected)
    raise Conflict(f"category {slug!r} still has {state['live_products']} live product(s)")


async def restore_category(conn: asyncpg.Connection, ctx: Ctx, slug: str, expected: Versions | None) -> Written:
    try:
        written = await cat_repo.restore(conn, slug, expected, ctx.request_id)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"slug {slug!r} was taken by another category meanwhile") from exc
    if written is not None:
        return written
    _deleted_or_refuse(await cat_repo.state(conn, slug), "category", slug, expected)
    raise Conflict(f"category {slug!r} cannot be restored")


def _as_sent(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


async def _merge_patch(
    conn: asyncpg.Connection,
    ctx: Ctx,
    slug: str,
    patch: Any,
    expected: Versions | None,
    kind: str,
    load: Callable[[asyncpg.Connection, str], Awaitable[Any]],
    model: type[M],
    replace: Callable[[asyncpg.Connection, Ctx, str, M, Versions | None], Awaitable[Written]],
) -> Written:
    """JSON merge patch: applied to the current fields, validated whole, written at the version read (re-read and
    tried again if another write won meanwhile, unless the client named the version with If-Match)."""
    for _ in range(RETRIES):
        current = await load(conn, slug)
        if current is None:
            raise NotFound(f"no {kind} {slug!r}")
        _check_version(expected, current.version)
        # The model's fields as a client would send them (a price as its decimal string).
        doc = {f: _as_sent(getattr(current, f)) for f in model.model_fields}
        body = validate(model, merge(doc, patch))
        try:
            return await replace(conn, ctx, slug, body, (current.version,))
        except PreconditionFailed:
            if expected is not None:
                raise
    raise Conflict(f"{kind} {slug!r} kept changing; try again")


async def patch_category(
    conn: asyncpg.Connection, ctx: Ctx, slug: str, patch: Any, expected: Versions | None
) -> Written:
    return await _merge_patch(
        conn, ctx, slug, patch, expected, "category", cat_repo.get_by_slug, CategoryIn, replace_category
    )


# -- products ------------------------------------------------------------------------------------


def _no_category(category: str) -> ValidationFailed:
    return ValidationFailed(
        "category is not a live category",
        errors=[FE(loc=["body", "category"], msg=f"no live category {category!r}")],
    )


async def create_product(conn: asyncpg.Connection, ctx: Ctx, body: ProductIn) -> Written:
    async def insert(slug: str) -> Written | None:
        return await prod_repo.insert(conn, fields=_fields(body, slug), request_id=ctx.request_id)

    written = await insert_with_slug(conn, body.slug, body.name, "product", prod_repo.slugs_like, insert)
    if written is None:
        raise _no_category(body.category)
    return written


async def replace_product(
    conn: asyncpg.Connection, ctx: Ctx, slug: str, body: ProductIn, expected: Versions | None
) -> Written:
    new_slug = body.slug or slug
    written = await _renamed(
        prod_repo.update(
            conn,
            slug,
            fields=_fields(body, new_slug),
            expected_version=expected,
            request_id=ctx.request_id,
        ),
        new_slug,
    )
    if written is not None:
        return written
    _live_or_refuse(await prod_repo.state(conn, slug), "product", slug, expected)
    raise _no_category(body.category)


async def delete_product(conn: asyncpg.Connection, ctx: Ctx, slug: str, expected: Versions | None) -> Written:
    written = await prod_repo.soft_delete(conn, slug, expected, ctx.request_id)
    if written is not None:
        return written
    _live_or_refuse(await prod_repo.state(conn, slug), "product", slug, expected)
    raise Conflict(f"product {slug!r} cannot be deleted")


async def restore_product(conn: asyncpg.Connection, ctx: Ctx, slug: str, expected: Versions | None) -> Written:
    try:
        written = await prod_repo.restore(conn, slug, expected, ctx.request_id)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"slug {slug!r} was taken by another product meanwhile") from exc
    if written is not None:
        return written
    state = _deleted_or_refuse(await prod_repo.state(conn, slug), "product", slug, expected)
    if not state["category_live"]:
        raise Conflict(f"the category of product {slug!r} is deleted; restore it first")
    raise Conflict(f"product {slug!r} cannot be restored")


async def patch_product(
    conn: asyncpg.Connection, ctx: Ctx, slug: str, patch: Any, expected: Versions | None
) -> Written:
    return await _merge_patch(
        conn, ctx, slug, patch, expected, "product", prod_repo.get_by_slug, ProductIn, replace_product
    )


# -- records -------------------------------------------------------------------------------------


def check_collection(collection: str, data: dict[str, Any]) -> None:
    """The rules of an older service's collection, for every write into it (``/data``'s ``POST``, ``/picus/put``
    and ``PUT /api/records/{id}`` alike): a ``data`` item is exactly ``{id, name, value}``; a ``picus`` document
    carries no ``"id"`` (the service assigns it). 422 otherwise."""
    if collection == "data":
        validate(DataItemIn, data)
    elif collection == "picus" and "id" in data:
        raise ValidationFailed(
            "the service gives the id; a document carries none",
            errors=[FE(loc=["body", "id"], msg="must not be given: the service assigns the id")],
        )


async def create_legacy_record(conn: asyncpg.Connection, ctx: Ctx, collection: str, data: dict[str, Any]) -> Written:
    """A record of an older service's own collection (``picus``, ``data``); 409 for a ``/data`` id taken."""
    check_collection(collection, data)
    try:
        async with _savepoint(conn):
            return await rec_repo.insert(conn, data, ctx.request_id, collection)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"an item with id {data.get('id')!r} already exists") from exc


async def replace_record(
    conn: asyncpg.Connection, ctx: Ctx, record_id: int, data: dict[str, Any], expected: Versions | None
) -> Written:
    if (collection := await rec_repo.collection_of(conn, record_id)) is not None:
        check_collection(collection, data)
    try:
        async with _savepoint(conn):
            written = await rec_repo.update(conn, record_id, data, expected, ctx.request_id)
    except asyncpg.UniqueViolationError as exc:  # a /data item given another item's id
        raise Conflict(f"another /data item has the id {data.get('id')!r}") from exc
    return written or await _record_refusal(conn, record_id, expected)


async def delete_record(conn: asyncpg.Connection, ctx: Ctx, record_id: int, expected: Versions | None) -> Written:
    written = await rec_repo.soft_delete(conn, record_id, expected, ctx.request_id)
    return written or await _record_refusal(conn, record_id, expected)


async def _record_refusal(conn: asyncpg.Connection, record_id: int, expected: Versions | None) -> Written:
    """Why a record's write did nothing: 404, 412, or a write that slipped in between (409)."""
    version = await rec_repo.live_version(conn, record_id)
    if version is None:
        raise NotFound(f"no record {record_id}")
    _check_version(expected, version)
    raise Conflict(f"record {record_id} changed meanwhile")


# -- images --------------------------------------------------------------------------------------


async def refuse_image(ctx: Ctx, slug: str, tags: Tags) -> None:
    """Refuse an upload early (404, 412) rather than store an image nobody will use: every refusal leaves no
    file behind. A write that slips in between still refuses it in :class:`SetImage`; its file is then the
    collector's."""
    async with connection(ctx.pool, ctx.timeout) as conn:
        await _image_refusal(conn, slug, _versions(tags))


async def _image_refusal(conn: asyncpg.Connection, slug: str, expected: Versions | None) -> None:
    _live_or_refuse(await prod_repo.state(conn, slug), "product", slug, expected)


async def _set_image(conn: asyncpg.Connection, ctx: Ctx, slug: str, key: str, expected: Versions | None) -> Outcome:
    storage = ctx.storage
    assert storage is not None, "image commands need the storage in their context"
    async with conn.transaction():
        # Ordered against the collector (shared.store.media): the file is there, and stays, once locked.
        await media_repo.hold_for_use(conn, [key])
        if not await storage.exists(key):
            raise ServiceUnavailable("the stored image was collected meanwhile; send it again")
        w = await image_repo.set_original(conn, slug, key, expected, ctx.request_id)
        if w is None:
            await _image_refusal(conn, slug, expected)
            raise Conflict(f"product {slug!r} changed meanwhile; try again")
    product = w.entity
    assert isinstance(product, Product)  # an image write returns its product
    body = {"id": w.id, "slug": w.slug, "version": w.version, "image": image(product, ctx.media_url)}
    return Outcome(202, dumps(body), written=w)


async def _remove_image(conn: asyncpg.Connection, ctx: Ctx, slug: str, expected: Versions | None) -> Written | None:
    written = await image_repo.remove(conn, slug, expected, ctx.request_id)
    if written is None:
        # Either an error, or there was no image: removing nothing is done already.
        await _image_refusal(conn, slug, expected)
    return written


async def _product_versions(conn: asyncpg.Connection, slug: str, tags: Tags) -> Versions | None:
    return _versions(tags)


CATEGORIES: Final = Collection(
    "categories",
    create_category,
    replace_category,
    patch_category,
    delete_category,
    restore_category,
    category_versions,
)
PRODUCTS: Final = Collection(
    "products", create_product, replace_product, patch_product, delete_product, restore_product, _product_versions
)
