"""Projecting one event's aggregate from PostgreSQL into Redis: plain async functions, no dramatiq.

The event says *what* changed; the state always comes from PostgreSQL, and the read model's version check
makes a duplicate or out-of-order message harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from shared import readmodel
from shared.store import categories as cat_repo
from shared.store import products as prod_repo
from shared.store import records as rec_repo
from shared.store import users as user_repo
from shared.store.pool import connection


@dataclass(frozen=True)
class Resources:
    pool: asyncpg.Pool
    run: readmodel.Runner
    media_url: str
    wait: float = 5.0


async def project_category(res: Resources, category_id: int) -> bool:
    async with connection(res.pool, res.wait) as conn:
        found = await cat_repo.get_any_by_id(conn, category_id)
    if found is None:
        return False
    return await readmodel.project_category(res.run, found[0], found[1])


async def project_product(res: Resources, product_id: int) -> bool:
    """The product, and its category (whose product count it may have changed)."""
    async with connection(res.pool, res.wait) as conn:
        found = await prod_repo.get_any_by_id(conn, product_id)
    if found is None:
        return False
    product, deleted = found
    changed = await readmodel.project_product(res.run, product, res.media_url, deleted)
    await project_category(res, product.category_id)
    return changed


async def project_record(res: Resources, record_id: int) -> bool:
    async with connection(res.pool, res.wait) as conn:
        found = await rec_repo.get_any(conn, record_id)
    if found is None:
        return False
    return await readmodel.project_record(res.run, found[0], found[1])


async def project_user(res: Resources, username: str) -> bool:
    async with connection(res.pool, res.wait) as conn:
        user = await user_repo.get(conn, username)
    if user is None:
        return False
    return await readmodel.project_user(res.run, user)


async def project_event(res: Resources, event: dict[str, Any]) -> bool:
    """Project the aggregate an event names; True if Redis changed."""
    aggregate, ident = event["aggregate"], str(event["aggregate_id"])
    if aggregate == "product":
        return await project_product(res, int(ident))
    if aggregate == "category":
        return await project_category(res, int(ident))
    if aggregate == "record":
        return await project_record(res, int(ident))
    if aggregate == "user":
        return await project_user(res, ident)
    raise ValueError(f"unknown aggregate {aggregate!r}")
