"""The API's pydantic models: the request bodies that validate every write (:func:`validate`), and the response
representations the OpenAPI document shows (a test holds them against what the API sends)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from shared.errors import FieldError, ValidationFailed
from shared.numbers import Price

#: The contract's slug pattern.
SLUG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
Slug = Annotated[str, Field(pattern=SLUG_PATTERN, min_length=1, max_length=100)]
ATTRIBUTES_MAX_BYTES = 16 * 1024
#: A username: letters only (the Python form, for ``re.fullmatch``; the pattern is the document's, ECMA-262's
#: ``$`` matching at the very end only).
USERNAME_LETTERS = r"[A-Za-z]{1,64}"
USERNAME_PATTERN = f"^{USERNAME_LETTERS}$"


M = TypeVar("M", bound=BaseModel)


def field_errors(exc: ValidationError, prefix: str = "body") -> list[FieldError]:
    return [FieldError(loc=[prefix, *e["loc"]], msg=e["msg"]) for e in exc.errors(include_url=False)]


def validate(model: type[M], data: Any) -> M:
    """``data`` validated by ``model``, or 422 listing every field at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed("the body failed validation", errors=field_errors(exc)) from exc


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class CategoryIn(_Body):
    """A category to create, or its full replacement (PUT)."""

    name: Annotated[str, Field(min_length=1, max_length=100, examples=["Garden tools"])]
    slug: Slug | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None
    parent: Slug | None = None


class ProductIn(_Body):
    """A product to create, or its full replacement (PUT)."""

    name: Annotated[str, Field(min_length=1, max_length=200, examples=["Steel spade"])]
    slug: Slug | None = None
    description: Annotated[str, Field(max_length=10000)] | None = None
    price: Price
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["EUR"])] = "EUR"
    category: Slug
    stock: Annotated[int, Field(ge=0, le=2_000_000_000, strict=True)] = 0
    attributes: dict[str, Any] = Field(default_factory=dict)
    is_active: Annotated[bool, Field(strict=True)] = True

    @field_validator("attributes")
    @classmethod
    def _attributes_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(orjson.dumps(value)) > ATTRIBUTES_MAX_BYTES:
            raise ValueError(f"must be at most {ATTRIBUTES_MAX_BYTES} bytes as JSON")
        return value


def _iso_date_only(value: Any) -> Any:
    if not isinstance(value, str) or len(value) != 10:
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


class BirthdayIn(_Body):
    """``PUT /hello/{username}``."""

    dateOfBirth: Annotated[dt.date, BeforeValidator(_iso_date_only), Field(examples=["1990-05-17"])]


class DataItemIn(_Body):
    """``POST /data``: exactly the older service's item, nothing else (strict: ``"1"`` is no int, ``true`` no
    number)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"id": 1, "name": "sensor", "value": 21.5}]}
    )

    id: int
    name: str
    value: float


class RecordIn(BaseModel):
    """Any JSON object."""

    model_config = ConfigDict(extra="allow")


# -- responses: every representation the API sends (shared.readmodel.render builds them; a test holds both) --


class _Out(BaseModel):
    # Exactly what the views send: a field added to a view and not here fails the tests (and schemathesis).
    model_config = ConfigDict(extra="forbid")


class WriteResult(_Out):
    """What a write of a category or product answers (a record's replace has no ``slug``)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": 42, "slug": "steel-spade", "version": 1}]})

    id: int
    slug: str | None = None
    version: int


class RecordCreated(_Out):
    """``POST /api/records`` (and ``/picus/put``, ``/data``)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": 7}]})

    id: int


class CategoryOut(_Out):
    """A category, as ``GET /api/categories/{slug}`` and the listing show it."""

    id: int
    slug: str
    name: str
    description: str | None
    parent: str | None
    product_count: int = Field(ge=0)
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int = Field(ge=1)


class ThumbnailFallbackOut(_Out):
    """The same thumbnail in a format every client reads (JPEG)."""

    url: str
    format: str


class ThumbnailOut(_Out):
    """One thumbnail (WebP), with its JPEG ``fallback``."""

    url: str
    width: int
    height: int
    format: str
    fallback: ThumbnailFallbackOut | None = None


class ImageOut(_Out):
    """A product's image: the original's URL and the thumbnails the worker made from it, by size name."""

    status: Literal["none", "pending", "ready", "failed"]
    original: str | None
    thumbnails: dict[str, ThumbnailOut]
    error: str | None


class ProductOut(_Out):
    """A product, as ``GET /api/products/{slug}`` and the listing show it."""

    id: int
    slug: str
    name: str
    description: str | None
    price: Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]{2}$", examples=["19.99"])]
    currency: str
    category: str
    stock: int = Field(ge=0)
    attributes: dict[str, Any]
    is_active: bool
    image: ImageOut
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int = Field(ge=1)


class ImageAccepted(WriteResult):
    """``PUT /api/products/{slug}/image``: the product's new version and its image, ``pending``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "slug": "steel-spade",
                    "version": 3,
                    "image": {
                        "status": "pending",
                        "original": "/media/originals/ab/cd/abcd.jpg",
                        "thumbnails": {},
                        "error": None,
                    },
                }
            ]
        }
    )

    slug: str
    image: ImageOut


class RecordOut(_Out):
    """A schemaless record."""

    id: int
    data: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int = Field(ge=1)


class CategoryPage(_Out):
    """One page of categories; ``next_cursor`` fetches the next (null on the last page)."""

    items: list[CategoryOut]
    next_cursor: str | None


class ProductPage(_Out):
    """One page of products; ``next_cursor`` fetches the next (null on the last page)."""

    items: list[ProductOut]
    next_cursor: str | None


class _Numbered(_Out):
    """Django REST framework's page (asked for with ``page`` or ``page_size``): how many items the listing holds,
    and the absolute URLs of the neighbouring pages (null at either end)."""

    count: int = Field(ge=0)
    next: str | None
    previous: str | None


class CategoryNumberedPage(_Numbered):
    """A numbered page of categories, in Django REST framework's shape."""

    results: list[CategoryOut]


class ProductNumberedPage(_Numbered):
    """A numbered page of products, in Django REST framework's shape."""

    results: list[ProductOut]


class RecordPage(_Out):
    """One page of records; ``next_cursor`` fetches the next (null on the last page)."""

    items: list[RecordOut]
    next_cursor: str | None


class DataItemCreated(_Out):
    """What ``POST /data`` answers, as the older service did."""

    message: Literal["Item criado com sucesso"]
    item: DataItemIn


class Greeting(_Out):
    """``GET /hello/{username}``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"message": "Hello, Ann! Your birthday is in 5 day(s)"}]})

    message: str


class BirthdaysToday(_Out):
    """``GET /api/users/birthdays/today``: the users whose birthday is today (UTC)."""

    date: dt.date
    usernames: list[str]


class Health(_Out):
    """Liveness (``status`` only) or readiness (each dependency's state; ``failed`` names the ones down)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "ok", "checks": {"postgres": "ok", "redis": "ok", "rabbitmq": "ok"}}]
        }
    )

    status: Literal["ok", "unavailable"]
    checks: dict[str, str] | None = None
    failed: list[str] | None = None


class ProblemError(BaseModel):
    """One field at fault: where (``loc``: ``body``/``query``/``path``/``header``, then the field) and why."""

    loc: list[str | int]
    msg: str


class Problem(_Out):
    """An RFC 9457 problem document (``application/problem+json``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Unprocessable Content",
                    "status": 422,
                    "detail": "the body failed validation",
                    "errors": [{"loc": ["body", "name"], "msg": "Field required"}],
                }
            ]
        }
    )

    type: str
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    errors: list[ProblemError] | None = None
