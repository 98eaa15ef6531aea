"""Write use cases. Each is one PostgreSQL statement (row + outbox row) or, with an Idempotency-Key,
one transaction holding that statement and the key's record."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg

from api.http import validate, versions
from api.schemas import CategoryIn, DataItemIn, ProductIn
from shared import slugs
from shared.db import connection
from shared.errors import Conflict, NotFound, PreconditionFailed, ServiceUnavailable, ValidationFailed
from shared.errors import FieldError as FE
from shared.merge_patch import apply as merge
from shared.models import User, Versions, Written
from shared.repo import categories as cat_repo
from shared.repo import idempotency
from shared.repo import products as prod_repo
from shared.repo import records as rec_repo
from shared.repo import users as user_repo

M = TypeVar("M", CategoryIn, ProductIn)

#: How often an automatic slug or a PATCH without If-Match is retried after losing a race. Each round has a
#: winner, so the k-th of k simultaneous requests needs k attempts: the bound must exceed any plausible burst
#: (5 turned a burst of 6 same-name creates or PATCHes into 409s). An attempt is one or two cheap statements.
RETRIES = 50


@dataclass(frozen=True)
class Ctx:
    """Who asks, and how: what every command needs besides its arguments."""

    pool: asyncpg.Pool
    timeout: float
    request_id: str
    owner: str = "anonymous"
    idempotency_key: str | None = None
    request_hash: str = ""
    deadline: float = 1.9


@dataclass(frozen=True)
class Outcome:
    """What the client gets back: status, JSON body and ``Location``; ``replayed`` for an idempotent retry."""

    status: int
    body: bytes
    location: str | None = None
    replayed: bool = False
    #: What the command wrote, for the read model's write-through (None on a replay).
    written: Written | None = None


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def _savepoint(conn: asyncpg.Connection) -> contextlib.AbstractAsyncContextManager[Any]:
    # A failed statement aborts a transaction: inside one, each attempt gets a savepoint.
    return conn.transaction() if conn.is_in_transaction() else contextlib.nullcontext()


async def run(ctx: Ctx, op: Callable[[asyncpg.Connection], Awaitable[Outcome]]) -> Outcome:
    """Run ``op`` within the write deadline (503 past it); with an Idempotency-Key, inside a transaction that
    records (or replays) the answer."""
    try:
        async with asyncio.timeout(ctx.deadline):
            return await _run(ctx, op)
    except TimeoutError as exc:
        raise ServiceUnavailable("PostgreSQL did not answer in time") from exc


async def _run(ctx: Ctx, op: Callable[[asyncpg.Connection], Awaitable[Outcome]]) -> Outcome:
    async with connection(ctx.pool, ctx.timeout) as conn:
        if ctx.idempotency_key is None:
            return await op(conn)
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
            outcome = await op(conn)
            await idempotency.save(conn, ctx.owner, ctx.idempotency_key, outcome.status, outcome.body, outcome.location)
            return outcome


async def insert_with_slug(
    conn: asyncpg.Connection,
    explicit: str | None,
    name: str,
    fallback: str,
    taken: Callable[[asyncpg.Connection, str], Awaitable[list[str]]],
    insert: Callable[[str], Awaitable[Written | None]],
) -> Written | None:
    """Insert under ``explicit`` (409 if taken) or under a slug made from ``name`` (``-2``, ``-3``... on collision)."""
    if explicit is not None:
        try:
            async with _savepoint(conn):
                return await insert(explicit)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"slug {explicit!r} is already taken") from exc
    base = slugs.base_slug(name, fallback)
    candidate = base
    for _ in range(RETRIES):
        try:
            async with _savepoint(conn):
                return await insert(candidate)
        except asyncpg.UniqueViolationError:
            candidate = slugs.next_free(base, await taken(conn, base))
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


# -- categories ----------------------------------------------------------------------------------


async def create_category(conn: asyncpg.Connection, ctx: Ctx, body: CategoryIn) -> Written:
    async def insert(slug: str) -> Written | None:
        return await cat_repo.insert(
            conn,
            slug=slug,
            name=body.name,
            description=body.description,
            parent=body.parent,
            request_id=ctx.request_id,
        )

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
            conn,
            slug,
            slug=new_slug,
            name=body.name,
            description=body.description,
            parent=body.parent,
            expected_version=expected,
            request_id=ctx.request_id,
        ),
        new_slug,
    )
    if written is not None:
        return written
    state = await cat_repo.state(conn, slug)
    if state is None or state["deleted"]:
        raise NotFound(f"no category {slug!r}")
    _check_version(expected, state["version"])
    raise _no_parent(body.parent)


async def category_versions(conn: asyncpg.Connection, slug: str, tags: list[str] | None) -> Versions | None:
    """The versions of category ``slug`` that the strong ``If-Match`` ``tags`` name (``None``: no condition).

    A category's ETag is ``"<version>.<live products>"`` (``shared.views.category_etag``): such a tag matches only
    while both are current. The version is then compared again by the write's own statement; the count, which
    products change, is read here just before. A bare ``"<version>"`` names the version alone, as a write's
    ``version`` field does.
    """
    if tags is None:
        return None
    named = set(versions(tags))
    counted = {tuple(int(n) for n in tag.split(".")) for tag in tags if _COUNTED_TAG.fullmatch(tag)}
    if counted:
        state = await cat_repo.state(conn, slug)
        if state is not None and (state["version"], state["live_products"]) in counted:
            named.add(state["version"])
    return tuple(sorted(named))


#: A category's ETag as ``shared.views.category_etag`` writes it (no sign, no leading zeros).
_COUNTED_TAG = re.compile(r"[1-9][0-9]{0,8}\.(?:0|[1-9][0-9]{0,17})")


async def delete_category(conn: asyncpg.Connection, ctx: Ctx, slug: str, expected: Versions | None) -> Written:
    written = await cat_repo.soft_delete(conn, slug, expected, ctx.request_id)
    if written is not None:
        return written
    state = await cat_repo.state(conn, slug)
    if state is None or state["deleted"]:
        raise NotFound(f"no category {slug!r}")
    _check_version(expected, state["version"])
    raise Conflict(f"category {slug!r} still has {state['live_products']} live product(s)")


async def restore_category(conn: asyncpg.Connection, ctx: Ctx, slug: str, expected: Versions | None) -> Written:
    try:
        written = await cat_repo.restore(conn, slug, expected, ctx.request_id)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"slug {slug!r} was taken by another category meanwhile") from exc
    if written is not None:
        return written
    state = await cat_repo.state(conn, slug)
    if state is None:
        raise NotFound(f"no category {slug!r}")
    if not state["deleted"]:
        raise Conflict(f"category {slug!r} is not deleted")
    _check_version(expected, state["version"])
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


def _product_fields(body: ProductIn, slug: str | None) -> dict[str, Any]:
    fields = body.model_dump()
    fields["slug"] = slug
    return fields


def _no_category(category: str) -> ValidationFailed:
    return ValidationFailed(
        "category is not a live category",
        errors=[FE(loc=["body", "category"], msg=f"no live category {category!r}")],
    )


async def create_product(conn: asyncpg.Connection, ctx: Ctx, body: ProductIn) -> Written:
    async def insert(slug: str) -> Written | None:
        return await prod_repo.insert(conn, fields=_product_fields(body, slug), request_id=ctx.request_id)

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
            fields=_product_fields(body, new_slug),
            expected_version=expected,
            request_id=ctx.request_id,
        ),
        new_slug,
    )
    if written is not None:
        return written
    state = await prod_repo.state(conn, slug)
    if state is None or state["deleted"]:
        raise NotFound(f"no product {slug!r}")
    _check_version(expected, state["version"])
    raise _no_category(body.category)


async def delete_product(conn: asyncpg.Connection, ctx: Ctx, slug: str, expected: Versions | None) -> Written:
    written = await prod_repo.soft_delete(conn, slug, expected, ctx.request_id)
    if written is not None:
        return written
    state = await prod_repo.state(conn, slug)
    if state is None or state["deleted"]:
        raise NotFound(f"no product {slug!r}")
    _check_version(expected, state["version"])
    raise Conflict(f"product {slug!r} cannot be deleted")


async def restore_product(conn: asyncpg.Connection, ctx: Ctx, slug: str, expected: Versions | None) -> Written:
    try:
        written = await prod_repo.restore(conn, slug, expected, ctx.request_id)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"slug {slug!r} was taken by another product meanwhile") from exc
    if written is not None:
        return written
    state = await prod_repo.state(conn, slug)
    if state is None:
        raise NotFound(f"no product {slug!r}")
    if not state["deleted"]:
        raise Conflict(f"product {slug!r} is not deleted")
    _check_version(expected, state["version"])
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


async def create_record(conn: asyncpg.Connection, ctx: Ctx, data: dict[str, Any]) -> Written:
    return await rec_repo.insert(conn, data, ctx.request_id)


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
    if written is not None:
        return written
    version = await rec_repo.live_version(conn, record_id)
    if version is None:
        raise NotFound(f"no record {record_id}")
    _check_version(expected, version)
    raise Conflict(f"record {record_id} changed meanwhile")


async def delete_record(conn: asyncpg.Connection, ctx: Ctx, record_id: int, expected: Versions | None) -> Written:
    written = await rec_repo.soft_delete(conn, record_id, expected, ctx.request_id)
    if written is not None:
        return written
    version = await rec_repo.live_version(conn, record_id)
    if version is None:
        raise NotFound(f"no record {record_id}")
    _check_version(expected, version)
    raise Conflict(f"record {record_id} changed meanwhile")


# -- birthdays -----------------------------------------------------------------------------------


async def upsert_user(conn: asyncpg.Connection, ctx: Ctx, name: str, born: dt.date) -> User:
    return await user_repo.upsert(conn, name, born, ctx.request_id)
