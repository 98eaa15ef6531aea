"""Rows as frozen dataclasses: what the repositories return, and what the read model renders."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeAlias

#: The versions an ``If-Match`` header names: a write goes through if the resource is at any of them (RFC 9110),
#: so an empty tuple never matches (412). ``None`` stands for no condition (no header, or ``*``).
Versions: TypeAlias = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Written:
    """What a write left: the resource as written (for the client's answer and the read model's write-through)."""

    entity: Category | Product | Record | User
    #: The write soft-deleted the resource.
    deleted: bool = False

    @property
    def id(self) -> int:
        if isinstance(self.entity, User):
            raise AttributeError("a user is named by its username, not an id")
        return self.entity.id

    @property
    def slug(self) -> str | None:
        return self.entity.slug if isinstance(self.entity, Category | Product) else None

    @property
    def version(self) -> int:
        return self.entity.version

    @property
    def lsn(self) -> int:
        """PostgreSQL's WAL position when the statement ran: orders projections of one version (see readmodel)."""
        return self.entity.lsn


@dataclass(frozen=True, slots=True)
class Category:
    id: int
    slug: str
    name: str
    description: str | None
    parent: str | None
    product_count: int
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    lsn: int = 0


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    slug: str
    name: str
    description: str | None
    price: Decimal
    currency: str
    category: str
    stock: int
    attributes: dict[str, Any]
    is_active: bool
    image_status: str
    image_original: str | None
    image_thumbnails: dict[str, Any]
    image_error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    lsn: int = 0
    category_id: int = 0
    #: Its search lexemes as PostgreSQL made them (``tsvector_to_array(search)``), where the read asked for them:
    #: what the read model tags it with (:func:`shared.readmodel.keys.product_tags`); None where unknown.
    lexemes: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Record:
    id: int
    data: Any
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    lsn: int = 0


@dataclass(frozen=True, slots=True)
class User:
    username: str
    name: str
    date_of_birth: dt.date
    version: int
    lsn: int = 0
