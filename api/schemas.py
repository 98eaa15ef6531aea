"""Request bodies: the pydantic models that validate every write (and that the OpenAPI document shows)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

#: The contract's slug pattern.
SLUG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
Slug = Annotated[str, Field(pattern=SLUG_PATTERN, min_length=1, max_length=100)]
ATTRIBUTES_MAX_BYTES = 16 * 1024
USERNAME_PATTERN = r"^[A-Za-z]{1,64}$"


def _no_bool(value: Any) -> Any:
    # JSON true is not a price: pydantic's lax mode would turn it into 1.
    if isinstance(value, bool):
        raise ValueError("must be a decimal number or a string holding one")
    return value


Price = Annotated[
    Decimal,
    BeforeValidator(_no_bool),
    Field(ge=0, max_digits=14, decimal_places=2, allow_inf_nan=False, examples=["19.99"]),
]


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


class RecordIn(BaseModel):
    """Any JSON object."""

    model_config = ConfigDict(extra="allow")


#: Fields a PATCH may touch, per resource (a merge patch is applied to these, then validated whole).
CATEGORY_FIELDS = tuple(CategoryIn.model_fields)
PRODUCT_FIELDS = tuple(ProductIn.model_fields)
