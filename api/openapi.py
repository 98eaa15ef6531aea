"""The OpenAPI 3.1 document, generated: never a second, hand-written copy of the API that could drift from it.

* Paths and methods come from the route table (:data:`api.routes.ROUTES`), path parameters from its ``{name}``s.
* Request and response bodies are the JSON schemas of the pydantic models in :mod:`api.schemas`: the very models
  that validate requests, and the response models a test holds against the views' real output.
* Security comes from the handlers' ``@requires(scope)`` marks.
* What the table and the models cannot say (summary, query parameters, which statuses each operation answers,
  its conditional headers) is one declarative :class:`Op` per handler in :data:`SPECS`. A route whose handler has
  no spec is still documented, generically, and a unit test fails on it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from api import auth, schemas
from api.handlers import birthdays, categories, docs, health, images, products, records
from api.problems import STATUS
from api.routes import ROUTES, Handler
from shared.readmodel.render import dumps
from shared.storage import CONTENT_TYPES
from shared.store.products import SORTS

API_VERSION: Final = "1.0"
REF: Final = "#/components/schemas/{model}"
PROBLEM: Final = "application/problem+json"
JSON: Final = "application/json"
IMAGE_TYPES: Final = tuple(sorted(set(CONTENT_TYPES.values())))

Schema: TypeAlias = dict[str, Any]


@dataclass(frozen=True)
class ListOf:
    """A JSON array of ``model`` (the legacy list routes answer bare arrays)."""

    model: type[BaseModel]


@dataclass(frozen=True)
class MergePatch:
    """A JSON merge patch (RFC 7396) of ``model``: any of its fields; the result is validated as ``model``."""

    model: type[BaseModel]


@dataclass(frozen=True)
class OneOf:
    """Exactly one of ``models`` (a listing answers keyset pages or, when asked, numbered ones)."""

    models: tuple[type[BaseModel], ...]


#: A body: a model, an array of one, a merge patch of one, one of several, a literal JSON schema, or an image.
Body: TypeAlias = type[BaseModel] | ListOf | MergePatch | OneOf | Schema | Literal["image"]


@dataclass(frozen=True)
class Param:
    """A query parameter."""

    name: str
    schema: Schema
    description: str


@dataclass(frozen=True)
class Ok:
    """A success response."""

    status: int
    body: Body | None
    description: str
    #: Response headers, by name from :data:`HEADERS`; ``True`` when the header is always sent.
    headers: Mapping[str, bool] = field(default_factory=dict)
    content_type: str = JSON


@dataclass(frozen=True)
class Op:
    """What the route table and the models do not tell about an operation."""

    summary: str
    tag: str
    ok: tuple[Ok, ...]
    description: str = ""
    body: Body | None = None
    body_example: Any = None
    query: tuple[Param, ...] = ()
    #: Statuses beyond those derived from the rest (400 for query parameters and bodies, 404 for path
    #: parameters, 401/403 for a scope, 412 for If-Match...), e.g. 409.
    errors: frozenset[int] = frozenset()
    #: Statuses that do not apply although derived (e.g. no 404 for a PUT that creates).
    not_errors: frozenset[int] = frozenset()
    #: A GET answering with a strong ``ETag`` and honouring ``If-None-Match`` (304).
    conditional: bool = False
    #: A write honouring ``If-Match`` (412).
    if_match: bool = False
    #: A POST honouring ``Idempotency-Key``.
    idempotent: bool = False
    #: Whether the operation reads or writes PostgreSQL (503 with ``Retry-After`` when it is unreachable).
    database: bool = True
    #: Whether the operation is rate limited (429 with ``Retry-After``).
    rate_limited: bool = True


# -- the building blocks --------------------------------------------------------------------------

_LEGACY_PAGING = (
    "A JSON array, as the older service answered: at most 100 items and 2 MiB of documents. When more follow, "
    'the `Link` header names the next page (`<...?cursor=...&limit=...>; rel="next"`); the last page has none.'
)
#: The legacy list routes' page: a bare array of at most 100 items (and 2 MiB of documents), ``Link`` for more.
LEGACY_PAGE = (
    Param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": 100, "default": 100},
        "Items at most (the answer also stops before 2 MiB of documents, always with at least one item).",
    ),
    Param(
        "cursor",
        {"type": "string", "minLength": 1},
        'Where the page starts: taken from the `Link: <...>; rel="next"` header of the previous page.',
    ),
)

LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Items per page.")
CURSOR = Param(
    "cursor",
    {"type": "string", "minLength": 1},
    "The `next_cursor` of the previous page (opaque, signed with the service's `CURSOR_SECRET`; a cursor that "
    "was altered, made with another key or for another listing or sort order, or whose values are out of range, "
    "is a 400).",
)
PRODUCT_FILTERS = (
    Param("category", {"type": "string"}, "Only products of this category (slug)."),
    Param(
        "min_price",
        {"type": "number", "minimum": 0, "maximum": 999_999_999_999.99},
        "Only products at this price or more (a price as in a body: at most 2 decimal places, else 400).",
    ),
    Param(
        "max_price",
        {"type": "number", "minimum": 0, "maximum": 999_999_999_999.99},
        "Only products at this price or less (a price as in a body: at most 2 decimal places, else 400).",
    ),
    Param("in_stock", {"type": "boolean"}, "`true`: only products with stock > 0; `false`: only those without."),
    Param("q", {"type": "string", "maxLength": 200}, "Full-text search over name and description."),
    Param("sort", {"type": "string", "enum": list(SORTS), "default": "-created_at"}, "Order (`-` for descending)."),
)

#: Django REST framework's numbered pages, on the catalog's listings (no default: a generated client sends neither
#: unasked, and without them the listing answers keyset pages as before).
NUMBERED_PAGE = (
    Param(
        "page",
        {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "enum": ["last"]}]},
        "A numbered page (1-based, or `last`): the answer is then Django REST framework's "
        '`{"count", "next", "previous", "results"}` with absolute URLs; a page past the last is 404 '
        '("Invalid page."). Not with `cursor` (400).',
    ),
    Param(
        "page_size",
        {"type": "integer", "minimum": 1, "maximum": 100},
        "Items per numbered page (20 when neither it nor `limit` is given); alone, it asks for numbered pages too "
        "(page 1).",
    ),
)
_WINDOW = (
    "Where PostgreSQL counts a numbered page, it counts and pages through the first 10,000 items at most: `count` "
    "is then at most 10,000, and the last page ends there."
)
#: Django REST framework's names for the products' filters and order (no default, as above).
DRF_PRODUCTS = (
    Param("search", {"type": "string", "maxLength": 200}, "The same as `q` (Django REST framework's name)."),
    Param(
        "ordering",
        {"type": "string", "enum": list(SORTS)},
        "The same as `sort` (Django REST framework's name, `-` for descending); any other order (`-name`, `id`, "
        "several fields) is a 400 naming it.",
    ),
    Param(
        "is_active",
        {"type": "boolean"},
        "`true`: active products only (the default: public listings show active products only); `false`: only "
        "the inactive ones.",
    ),
)

#: Response headers, described once (``components.headers``).
HEADERS: Final[dict[str, Schema]] = {
    "ETag": {
        "description": "The representation's version, a strong entity tag: send it back in `If-None-Match` (reads) "
        "or `If-Match` (writes). Every write that leaves a representation answers with its new ETag (not a replay "
        "of an `Idempotency-Key`), so conditional writes chain without a GET.",
        "schema": {"type": "string", "examples": ['"3"']},
    },
    "Location": {"description": "The URL of the resource written.", "schema": {"type": "string"}},
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "string", "pattern": r"^[0-9]+$"},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "RateLimit-Limit": {
        "description": "The burst this client may send at once (rate limits: reads per client address, writes "
        "per API key).",
        "schema": {"type": "string", "pattern": r"^[0-9]+$"},
    },
    "RateLimit-Remaining": {
        "description": "Requests this client may still send at once.",
        "schema": {"type": "string", "pattern": r"^[0-9]+$"},
    },
    "RateLimit-Reset": {
        "description": "Seconds until the whole burst is available again.",
        "schema": {"type": "string", "pattern": r"^[0-9]+$"},
    },
    "Link": {
        "description": 'Sent when more items follow: `<URL of the next page>; rel="next"`.',
        "schema": {"type": "string"},
    },
    "WWW-Authenticate": {"description": "The authentication scheme: `Bearer`.", "schema": {"type": "string"}},
    "Cache-Control": {"description": "How long the response may be cached.", "schema": {"type": "string"}},
    "X-Request-ID": {
        "description": "The request's id (the client's own `X-Request-ID` if it sent a plausible one); it is in "
        "the logs and in the events the request caused.",
        "schema": {"type": "string"},
    },
}

#: Request headers (``components.parameters``).
REQUEST_HEADERS: Final[dict[str, Schema]] = {
    "IfNoneMatch": {
        "name": "If-None-Match",
        "in": "header",
        "description": "An `ETag` the client holds: 304 (no body) if it is still current.",
        "schema": {"type": "string"},
    },
    "IfMatch": {
        "name": "If-Match",
        "in": "header",
        "description": 'Write only if the resource is at this version (its `ETag`, e.g. `"3"`), or at one of a '
        'comma-separated list; 412 otherwise. Compared strongly (RFC 9110): a weak tag (`W/"3"`) or a tag that is '
        "no ETag of the resource never matches. `*`: any current version. A category's ETag "
        '(`"<version>.<live products>"`) matches while both are current; `"<version>"` names its version.',
        "schema": {
            "type": "string",
            "pattern": r'^(\*|(W/)?"[^"]*"([ \t]*,[ \t]*(W/)?"[^"]*")*)$',
            "examples": ['"3"'],
        },
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "description": "A key of the client's choosing: a retry with the same key and body returns the first "
        "answer and writes nothing; the same key with another body is 422.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    },
}

#: Why each error status happens: the problem responses in ``components.responses``.
ERRORS: Final[dict[int, str]] = {
    400: "The body is not valid JSON or nests objects and arrays more than 64 levels deep, a header is not "
    "UTF-8, or a query parameter or cursor is malformed or out of range (`errors` names it).",
    401: "No valid API key: send `Authorization: Bearer <key>`.",
    403: "The API key lacks the scope this operation needs.",
    404: "No such (live) resource.",
    409: "The state forbids it: the slug is taken, the category still has live products, the resource is not "
    "deleted (restore), or a request with the same `Idempotency-Key` is still in progress.",
    412: "`If-Match` named another version than the current one.",
    413: "The body is larger than its limit (JSON 1 MiB, images 20 MiB).",
    415: "The body's content type is not one this operation takes.",
    422: "The body is JSON but fails validation: `errors` lists every field at fault. Integers outside the "
    "signed 64-bit range and strings holding `\\u0000` are refused here, anywhere in the body.",
    429: "Too many requests: wait as `Retry-After` says.",
    503: "PostgreSQL is unreachable, its schema is not migrated, or the service is overloaded (every database "
    'connection stayed busy for the whole wait; `detail` says "overloaded" and readiness stays up): retry '
    "after `Retry-After` seconds.",
}
_TITLES: Final = dict(STATUS.values())
_ERROR_HEADERS: Final = {401: ("WWW-Authenticate",), 429: ("Retry-After",), 503: ("Retry-After",)}
#: Sent on every rate-limited answer while Redis answers (the limiter fails open without it).
RATE_LIMIT_HEADERS: Final = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")

#: What a write answers besides its body: where the resource is, and its new ETag (absent on a replay).
WRITE_HEADERS: Final = {"Location": True, "ETag": False}
WRITTEN = Ok(200, schemas.WriteResult, "Written: the id, slug and new version.", WRITE_HEADERS)
CREATED = Ok(201, schemas.WriteResult, "Created: the id, slug and version.", WRITE_HEADERS)
NO_CONTENT = Ok(204, None, "Done.")
RECORD_CREATED = Ok(201, schemas.RecordCreated, "Created.", WRITE_HEADERS)

_CATEGORY_EXAMPLE: Final = {"name": "Garden tools", "slug": "garden-tools", "description": "Spades, rakes, shears"}
_PRODUCT_EXAMPLE: Final = {
    "name": "Steel spade",
    "slug": "steel-spade",
    "description": "A spade with an ash handle",
    "price": "19.99",
    "currency": "EUR",
    "category": "garden-tools",
    "stock": 12,
    "attributes": {"weight_kg": 1.9},
    "is_active": True,
}
_RECORD_EXAMPLE: Final = {"title": "anything", "tags": ["a", "b"], "nested": {"n": 1}}
_RECORD_BODY: Final = schemas.RecordIn
_PICUS_DOC: Final = {
    "type": "object",
    "required": ["id"],
    "properties": {"id": {"type": "integer"}},
    "additionalProperties": True,
}
_NOT_READY: Final = (
    " While PostgreSQL is unreachable or not migrated, 503 with the older service's body"
    ' `{"error": "Database not ready"}` (and `Retry-After`), not a problem document.'
)


def _crud(
    tag: str,
    noun: str,
    nouns: str,
    model: type[BaseModel],
    out: type[BaseModel],
    page: type[BaseModel],
    example: dict[str, Any],
    query: tuple[Param, ...],
) -> dict[str, Op]:
    """The seven operations a category or a product has."""
    return {
        "list_": Op(
            f"List {nouns}",
            tag,
            (Ok(200, page, f"A page of {nouns}."),),
            query=(*query, LIMIT, CURSOR),
        ),
        "create": Op(
            f"Create a {noun}",
            tag,
            (CREATED,),
            description="Without `slug`, one is made from the name (`-2`, `-3`... when taken).",
            body=model,
            body_example=example,
            errors=frozenset({409}),
            idempotent=True,
        ),
        "get": Op(f"Get a {noun}", tag, (Ok(200, out, f"The {noun}.", {"ETag": True}),), conditional=True),
        "replace": Op(
            f"Replace a {noun}",
            tag,
            (WRITTEN,),
            body=model,
            body_example=example,
            errors=frozenset({409}),
            if_match=True,
        ),
        "patch": Op(
            f"Change some fields of a {noun}",
            tag,
            (WRITTEN,),
            description="A JSON merge patch (RFC 7396): the fields given replace the current ones, `null` removes "
            "one; the result is validated as a whole.",
            body=MergePatch(model),
            body_example={"description": None},
            errors=frozenset({409}),
            if_match=True,
        ),
        "delete": Op(
            f"Delete a {noun}", tag, (NO_CONTENT,), description="A soft delete.", errors=frozenset({409}), if_match=True
        ),
        "restore": Op(
            f"Restore a deleted {noun}",
            tag,
            (WRITTEN,),
            errors=frozenset({409}),
            if_match=True,
            idempotent=True,
        ),
    }


def _numbered(op: Op, keyset: type[BaseModel], numbered: type[BaseModel], names: tuple[Param, ...], cost: str) -> Op:
    """A listing ``op`` that also answers Django REST framework's numbered pages (and takes its ``names``)."""
    return dataclasses.replace(
        op,
        ok=(
            Ok(
                200,
                OneOf((keyset, numbered)),
                "A page: keyset (`items`, `next_cursor`), or numbered (Django REST framework's `count`, `next`, "
                "`previous`, `results`) when `page` or `page_size` is given.",
            ),
        ),
        description=cost,
        query=(*op.query, *names, *NUMBERED_PAGE),
        errors=frozenset({404}),
    )


def _specs() -> dict[Handler, Op]:
    cat = _crud(
        "categories",
        "category",
        "categories",
        schemas.CategoryIn,
        schemas.CategoryOut,
        schemas.CategoryPage,
        _CATEGORY_EXAMPLE,
        (),
    )
    prod = _crud(
        "products",
        "product",
        "products",
        schemas.ProductIn,
        schemas.ProductOut,
        schemas.ProductPage,
        _PRODUCT_EXAMPLE,
        PRODUCT_FILTERS,
    )
    cat["list_"] = _numbered(cat["list_"], schemas.CategoryPage, schemas.CategoryNumberedPage, (), _WINDOW)
    prod["list_"] = _numbered(
        prod["list_"],
        schemas.ProductPage,
        schemas.ProductNumberedPage,
        DRF_PRODUCTS,
        "Where the sorted sets serve the listing (no `q`, price or stock filter, active products, not by `name`) "
        f"every numbered page is cheap and `count` exact. {_WINDOW}",
    )
    health_doc = Ok(200, schemas.Health, "Every dependency answers.")
    return {
        health.live: Op(
            "Liveness",
            "health",
            (Ok(200, schemas.Health, "The process serves."),),
            database=False,
            rate_limited=False,
        ),
        health.ready: Op(
            "Readiness",
            "health",
            (health_doc, Ok(503, schemas.Health, "A dependency is down (`failed` names it).", {"Retry-After": True})),
            database=False,
            rate_limited=False,
        ),
        **{getattr(categories, name): op for name, op in cat.items()},
        **{getattr(products, name): op for name, op in prod.items()},
        images.put: Op(
            "Upload a product's image",
            "products",
            (
                Ok(
                    202,
                    schemas.ImageAccepted,
                    "Stored; thumbnails are made asynchronously (`pending`).",
                    {"ETag": False},
                ),
            ),
            description="The image as the raw body (`Content-Type: image/jpeg|png|webp|gif`) or as the "
            "`multipart/form-data` field `image`, at most 20 MiB. Its type is sniffed from its content: anything "
            "but JPEG, PNG, WebP or GIF is a 415.",
            body="image",
            errors=frozenset({400, 409, 413, 415}),
            if_match=True,
        ),
        images.delete: Op("Remove a product's image", "products", (NO_CONTENT,), if_match=True),
        images.media: Op(
            "A stored image (original or thumbnail)",
            "media",
            (
                Ok(
                    200,
                    {"type": "string", "format": "binary"},
                    "The image. Keys are content addresses: it never changes.",
                    {"Cache-Control": True},
                    content_type="image/*",
                ),
            ),
            database=False,
        ),
        records.list_: Op(
            "List records", "records", (Ok(200, schemas.RecordPage, "A page of records."),), query=(LIMIT, CURSOR)
        ),
        records.create: Op(
            "Create a record",
            "records",
            (RECORD_CREATED,),
            description="Any JSON object (at most 1 MiB).",
            body=_RECORD_BODY,
            body_example=_RECORD_EXAMPLE,
            errors=frozenset({409}),
            idempotent=True,
        ),
        records.get: Op(
            "Get a record", "records", (Ok(200, schemas.RecordOut, "The record.", {"ETag": True}),), conditional=True
        ),
        records.replace: Op(
            "Replace a record",
            "records",
            (Ok(200, schemas.WriteResult, "Written: the id and new version.", {"ETag": False}),),
            body=_RECORD_BODY,
            body_example=_RECORD_EXAMPLE,
            errors=frozenset({409}),
            if_match=True,
        ),
        records.delete: Op("Delete a record", "records", (NO_CONTENT,), errors=frozenset({409}), if_match=True),
        records.picus_put: Op(
            "Create a document (legacy `/picus`)",
            "legacy",
            (RECORD_CREATED,),
            description='Any JSON object without an `"id"` key (the service assigns it; 422 otherwise).',
            body=_RECORD_BODY,
            body_example=_RECORD_EXAMPLE,
            errors=frozenset({409}),
            idempotent=True,
        ),
        records.picus_list: Op(
            "Every `/picus` document with its `id` (legacy `/picus`)",
            "legacy",
            (
                Ok(
                    200,
                    {"type": "array", "items": _PICUS_DOC},
                    "Live `/picus` documents, by id, one bounded page.",
                    {"Link": False},
                ),
            ),
            description=_LEGACY_PAGING + _NOT_READY,
            query=LEGACY_PAGE,
        ),
        records.picus_get: Op(
            "A `/picus` document with its `id` (legacy `/picus`)",
            "legacy",
            (Ok(200, _PICUS_DOC, "The object as it was stored, with its `id`.", {"ETag": True}),),
            description=_NOT_READY.strip(),
            conditional=True,
        ),
        records.data_post: Op(
            "Create an item (legacy `/data`)",
            "legacy",
            (Ok(201, schemas.DataItemCreated, "Created: the item as sent.", WRITE_HEADERS),),
            description="Exactly `{id: int, name: str, value: number}`, nothing else (422); 409 if `id` exists.",
            body=schemas.DataItemIn,
            body_example={"id": 1, "name": "sensor", "value": 21.5},
            errors=frozenset({409}),
            idempotent=True,
        ),
        records.data_list: Op(
            "Every `/data` item as sent (legacy `/data`)",
            "legacy",
            (
                Ok(
                    200,
                    ListOf(schemas.DataItemIn),
                    "Live `/data` items, in the order they were created, one bounded page.",
                    {"Link": False},
                ),
            ),
            description=_LEGACY_PAGING,
            query=LEGACY_PAGE,
        ),
        birthdays.put: Op(
            "Save a user's date of birth",
            "birthdays",
            (Ok(204, None, "Created or replaced."),),
            description="`username` is letters only (1-64), case-insensitive; the date must be before today (UTC). "
            "Either fault is a 422.",
            body=schemas.BirthdayIn,
            body_example={"dateOfBirth": "1990-05-17"},
            not_errors=frozenset({404}),
        ),
        birthdays.get: Op(
            "Greet a user",
            "birthdays",
            (Ok(200, schemas.Greeting, "`Hello, <username>! Your birthday is in N day(s)` or `... Happy birthday!`"),),
            description="`username` is letters only (1-64, the whole path segment): anything else is a 422.",
            errors=frozenset({422}),
        ),
        birthdays.today_list: Op(
            "Whose birthday is today (UTC)",
            "birthdays",
            (Ok(200, schemas.BirthdaysToday, "Today's date and the users born on this day."),),
            description="Those born on 29 February are listed on 28 February in common years.",
        ),
    }


#: Handler -> its operation's spec.
SPECS: Final = _specs()


def query_parameters(handler: Handler) -> frozenset[str] | None:
    """The query parameters the document declares for ``handler`` (the one source of truth for which a route
    takes: :func:`api.parsing.known_query` refuses the others), or None for a route it does not describe."""
    op = SPECS.get(handler)
    return None if op is None else frozenset(p.name for p in op.query)


#: The documentation's own routes, which the document leaves out.
HIDDEN: Final = frozenset({docs.openapi_json, docs.asyncapi_json, docs.swagger_ui, docs.redoc, docs.asset})

_TAGS: Final = [
    {"name": "categories", "description": "Categories, addressed by slug."},
    {"name": "products", "description": "Products, addressed by slug, and their images."},
    {"name": "media", "description": "Stored images (originals and thumbnails)."},
    {"name": "records", "description": "Schemaless JSON documents."},
    {"name": "legacy", "description": "Routes kept for existing clients of the `/picus` and `/data` services."},
    {"name": "birthdays", "description": "The birthday greeting service."},
    {"name": "health", "description": "Liveness and readiness."},
]

_PATH_PARAM: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^{}]*)?\}")


def openapi_path(path: str) -> str:
    """An aiohttp path (``/media/{key:.+}``) as OpenAPI writes it (``/media/{key}``)."""
    return _PATH_PARAM.sub(r"{\1}", path)


def _path_param(path: str, name: str) -> Schema:
    schema: Schema
    if name == "slug":
        example = "garden-tools" if path.startswith("/api/categories") else "steel-spade"
        schema = {"type": "string", "pattern": schemas.SLUG_PATTERN, "maxLength": 100, "examples": [example]}
        description = "The resource's slug."
    elif name == "id":
        schema = {"type": "integer", "minimum": 1, "examples": [1]}
        description = "The record's id."
    elif name == "username":
        schema = {"type": "string", "pattern": schemas.USERNAME_PATTERN, "examples": ["Ann"]}
        description = "Letters only, case-insensitive."
    elif name == "key":
        # No "pattern": a path parameter cannot hold "/" in OpenAPI, so generators (schemathesis) could make no
        # value matching one. The shape is told in words; any other key is a 404.
        schema = {"type": "string"}
        description = (
            "The storage key, as the product's image URLs name it: "
            "`originals|thumbs/<2 hex>/<2 hex>/<sha256>.jpg|png|webp|gif` (it contains `/`)."
        )
    else:
        schema = {"type": "string"}
        description = ""
    param: Schema = {"name": name, "in": "path", "required": True, "schema": schema}
    if description:
        param["description"] = description
    return param


# -- assembling -----------------------------------------------------------------------------------


def _models(ops: Iterable[Op]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Every model the operations name, with the mode its schema is for (requests validate, responses serialize)."""
    found: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(schemas.Problem, "serialization"): None}

    def add(body: Body | None, mode: JsonSchemaMode) -> None:
        if isinstance(body, ListOf | MergePatch):
            found[(body.model, mode)] = None
        elif isinstance(body, OneOf):
            found.update(dict.fromkeys((model, mode) for model in body.models))
        elif isinstance(body, type) and issubclass(body, BaseModel):
            found[(body, mode)] = None

    for op in ops:
        add(op.body, "validation")
        for ok in op.ok:
            add(ok.body, "serialization")
    return list(found)


def _patch_name(model: type[BaseModel]) -> str:
    return model.__name__.removesuffix("In") + "Patch"


def _without_defaults(schema: Any) -> Any:
    """``schema`` with every ``default`` removed, at any depth: a generated client sends a field's default whenever
    its caller leaves the field out, which in a merge patch means "reset this field"."""
    if isinstance(schema, list):
        return [_without_defaults(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out: Schema = {}
    for key, value in schema.items():
        if key == "default":
            continue
        if key in _NAMED_SCHEMAS and isinstance(value, dict):  # names, not keywords: a field may be called "default"
            out[key] = {name: _without_defaults(sub) for name, sub in value.items()}
        elif key in _VALUES:
            out[key] = value
        else:
            out[key] = _without_defaults(value)
    return out


#: JSON Schema keywords whose keys are names (of properties, definitions), and those that hold plain values.
_NAMED_SCHEMAS: Final = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_VALUES: Final = frozenset({"examples", "example", "enum", "const"})


class _Builder:
    def __init__(self, ops: Iterable[Op]) -> None:
        models = _models(ops)
        refs, defs = models_json_schema(models, ref_template=REF)
        self.refs: dict[tuple[Any, JsonSchemaMode], Schema] = dict(refs)
        self.components: dict[str, Schema] = dict(defs.get("$defs", {}))

    def schema(self, body: Body, mode: JsonSchemaMode) -> Schema:
        if isinstance(body, ListOf):
            return {"type": "array", "items": self.refs[(body.model, mode)]}
        if isinstance(body, MergePatch):
            name = _patch_name(body.model)
            if name not in self.components:
                whole = self.refs[(body.model, mode)]["$ref"].rsplit("/", 1)[-1]
                patch = _without_defaults(copy.deepcopy(self.components[whole]))
                patch.pop("required", None)
                patch.pop("examples", None)
                patch["title"] = name
                patch["description"] = (
                    f"A JSON merge patch (RFC 7396) of a {whole}: any of its fields; a field left out keeps its "
                    f"value, `null` removes one (back to its default). No field has a default here: a client that "
                    f"fills in defaults would reset what it did not mean to change. The patched whole must be a "
                    f"valid {whole}."
                )
                self.components[name] = patch
            return {"$ref": REF.format(model=name)}
        if isinstance(body, OneOf):
            return {"oneOf": [self.refs[(model, mode)] for model in body.models]}
        if isinstance(body, type):
            return self.refs[(body, mode)]
        if isinstance(body, dict):
            return body
        raise TypeError(f"no schema for {body!r}")

    def request_body(self, op: Op) -> Schema:
        if op.body == "image":
            binary = {"type": "string", "format": "binary"}
            content: Schema = {ctype: {"schema": binary} for ctype in IMAGE_TYPES}
            content["multipart/form-data"] = {
                "schema": {"type": "object", "properties": {"image": binary}, "required": ["image"]},
                "encoding": {"image": {"contentType": ", ".join(IMAGE_TYPES)}},
            }
            return {"required": True, "content": content}
        assert op.body is not None
        media: Schema = {"schema": self.schema(op.body, "validation")}
        if op.body_example is not None:
            media["example"] = op.body_example
        if isinstance(op.body, MergePatch):
            return {"required": True, "content": {"application/merge-patch+json": media, JSON: media}}
        return {"required": True, "content": {JSON: media}}

    def success(self, ok: Ok) -> Schema:
        response: Schema = {"description": ok.description}
        headers: Schema = {name: {"$ref": f"#/components/headers/{name}"} for name in ok.headers}
        for name, always in ok.headers.items():
            if always:
                headers[name] = {**HEADERS[name], "required": True}
        headers["X-Request-ID"] = {"$ref": "#/components/headers/X-Request-ID"}
        response["headers"] = headers
        if ok.body is not None:
            if ok.content_type == "image/*":
                response["content"] = {
                    ctype: {"schema": self.schema(ok.body, "serialization")} for ctype in IMAGE_TYPES
                }
            else:
                response["content"] = {ok.content_type: {"schema": self.schema(ok.body, "serialization")}}
        return response


def _error_statuses(path: str, handler: Handler, op: Op) -> set[int]:
    statuses = set(op.errors)
    json_body = op.body is not None and op.body != "image"
    if op.query or op.if_match or op.idempotent or json_body:
        statuses.add(400)
    if json_body:
        statuses |= {413, 415, 422}
    if op.idempotent:
        statuses |= {409, 422}
    if _PATH_PARAM.search(path):
        statuses.add(404)
    if op.if_match:
        statuses.add(412)
    if auth.required_scope(handler) is not None:
        statuses |= {401, 403, 503}
    if op.database:
        statuses.add(503)
    if op.rate_limited:
        statuses.add(429)
    return statuses - op.not_errors


def _operation(method: str, path: str, handler: Handler, op: Op, b: _Builder, op_id: str) -> Schema:
    operation: Schema = {"tags": [op.tag], "summary": op.summary, "operationId": op_id}
    scope = auth.required_scope(handler)
    description = op.description
    if scope is not None:
        note = f"Needs an API key with the `{scope}` scope" + (
            " (`admin` includes `write`)." if scope == "write" else "."
        )
        description = f"{description}\n\n{note}".strip()
        operation["security"] = [{"bearerAuth": []}]
        operation["x-required-scope"] = scope
    if description:
        operation["description"] = description
    params: list[Schema] = [_path_param(path, name) for name in _PATH_PARAM.findall(path)]
    params += [
        {"name": p.name, "in": "query", "required": False, "schema": p.schema, "description": p.description}
        for p in op.query
    ]
    if op.conditional:
        params.append({"$ref": "#/components/parameters/IfNoneMatch"})
    if op.if_match:
        params.append({"$ref": "#/components/parameters/IfMatch"})
    if op.idempotent and method == "POST":
        params.append({"$ref": "#/components/parameters/IdempotencyKey"})
    if params:
        operation["parameters"] = params
    if op.body is not None:
        operation["requestBody"] = b.request_body(op)
    responses: Schema = {}
    for ok in op.ok:
        success = b.success(ok)
        if op.idempotent and ok.status < 300:
            success["headers"]["Idempotent-Replayed"] = {"$ref": "#/components/headers/Idempotent-Replayed"}
        if op.rate_limited:
            success["headers"].update({name: {"$ref": f"#/components/headers/{name}"} for name in RATE_LIMIT_HEADERS})
        responses[str(ok.status)] = success
    if op.conditional:
        responses["304"] = {
            "description": "Not modified: the `If-None-Match` ETag is current.",
            "headers": {"ETag": {**HEADERS["ETag"], "required": True}},
        }
    for status in sorted(_error_statuses(path, handler, op)):
        responses.setdefault(str(status), {"$ref": f"#/components/responses/{status}"})
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _generic(method: str, path: str, handler: Handler) -> Op:
    """An operation nobody described yet (a unit test fails on it): documented as far as the table tells."""
    return Op(f"{method} {path}", "undocumented", (Ok(200, {}, "OK", content_type="*/*"),), database=False)


def _problem_responses(b: _Builder) -> Schema:
    problem = b.refs[(schemas.Problem, "serialization")]
    out: Schema = {}
    for status, why in ERRORS.items():
        example: Schema = {"type": "about:blank", "title": _TITLES.get(status, ""), "status": status, "detail": why}
        if status in (400, 422):
            example["errors"] = [{"loc": ["body", "name"] if status == 422 else ["query", "limit"], "msg": "..."}]
        response: Schema = {"description": why, "content": {PROBLEM: {"schema": problem, "example": example}}}
        headers = {name: {**HEADERS[name], "required": True} for name in _ERROR_HEADERS.get(status, ())}
        if headers:
            response["headers"] = headers
        out[str(status)] = response
    return out


def build(routes: Iterable[tuple[str, str, Handler]] = ROUTES) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``routes`` (the app's route table unless told otherwise)."""
    table = [(m, p, h) for m, p, h in routes if h not in HIDDEN]
    ops = [SPECS.get(h) or _generic(m, p, h) for m, p, h in table]
    b = _Builder(ops)
    paths: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for (method, path, handler), op in zip(table, ops, strict=True):
        op_id = f"{handler.__module__.rsplit('.', 1)[-1]}_{handler.__name__.rstrip('_')}"
        if op_id in used:  # one handler behind two paths (an alias): the second gets its path in its id
            op_id += "_" + re.sub(r"[^A-Za-z0-9]+", "_", openapi_path(path)).strip("_")
        used.add(op_id)
        oapath = openapi_path(path)
        paths.setdefault(oapath, {})[method.lower()] = _operation(method, path, handler, op, b, op_id)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stockroom",
            "version": API_VERSION,
            "summary": "A product catalog and schemaless JSON records: writes answer from PostgreSQL, reads come "
            "from Redis.",
            "description": "JSON everywhere. Paths are accepted with and without a trailing slash; every `GET` "
            "also answers `HEAD`. Errors are RFC 9457 `application/problem+json`. Reads are public and return a "
            "strong `ETag`; writes need an API key (`Authorization: Bearer <key>`, scopes `write` and `admin`), "
            "accept `If-Match` (strong comparison) and answer with the new `ETag`; a `POST` accepts an "
            "`Idempotency-Key`. A `PATCH` is a JSON merge patch: a field left out keeps its value.",
        },
        "tags": _TAGS,
        "paths": paths,
        "components": {
            "schemas": dict(sorted(b.components.items())),
            "responses": _problem_responses(b),
            "parameters": REQUEST_HEADERS,
            "headers": HEADERS,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`python -m api keys create NAME --scope write|admin`).",
                }
            },
        },
    }


@functools.cache
def document_bytes() -> bytes:
    """The app's document as JSON, built once per process (it depends on code only, never on settings)."""
    return dumps(build())
