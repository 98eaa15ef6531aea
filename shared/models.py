"""Rows as frozen dataclasses: what the repositories return, and what the views render."""

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
    """What a write returns to the client: the id, the slug (if the resource has one) and the new version."""

    id: int
    version: int
    slug: str | None = None
    #: The resource as written (None for writes that do not return it), for the read model's write-through.
    entity: Any = None
    #: PostgreSQL's WAL position when the statement ran: orders projections of one version (see readmodel).
    lsn: int = 0
    #: The write soft-deleted the resource.
    deleted: bool = False


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


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a keyset listing."""

    items: list[Any]
    next_cursor: str | None
