"""Refreshing one aggregate's projection: its current state read from PostgreSQL, then projected into Redis.

Plain async functions, no dramatiq (the actors and the rebuild both use them). The event says *what* changed;
the state always comes from PostgreSQL, and the read model's version check makes a duplicate or out-of-order
message harmless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.readmodel.client import Runner
from shared.readmodel.project import project
from shared.store import categories as cat_repo
from shared.store import products as prod_repo
from shared.store import records as rec_repo
from shared.store import users as user_repo
from shared.store.pool import connection


@dataclass(frozen=True)
class Resources:
    pool: asyncpg.Pool
    run: Runner
    media_url: str
    wait: float = 5.0


async def _refresh(res: Resources, load: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    """Load (entity, deleted) and project it; the entity, or None if PostgreSQL has no such row."""
    async with connection(res.pool, res.wait) as conn:
        found = await load(conn)
    if found is None:
        return None
    entity, deleted = found
    return entity, await project(res.run, entity, res.media_url, deleted=deleted)


async def project_category(res: Resources, category_id: int) -> bool:
    done = await _refresh(res, lambda conn: cat_repo.get_any_by_id(conn, category_id))
    return done is not None and done[1]


async def project_product(res: Resources, product_id: int) -> bool:
    """The product, and its category (whose product count it may have changed)."""
    done = await _refresh(res, lambda conn: prod_repo.get_any_by_id(conn, product_id))
    if done is None:
        return False
    await project_category(res, done[0].category_id)
    return bool(done[1])


async def project_record(res: Resources, record_id: int) -> bool:
    done = await _refresh(res, lambda conn: rec_repo.get_any(conn, record_id))
    return done is not None and done[1]


async def _user(conn: asyncpg.Connection, username: str) -> tuple[Any, bool] | None:
    found = await user_repo.get(conn, username)
    return None if found is None else (found, False)


async def project_user(res: Resources, username: str) -> bool:
    done = await _refresh(res, lambda conn: _user(conn, username))
    return done is not None and done[1]


#: aggregate -> how to refresh it from its id (as the event carries it).
_BY_AGGREGATE: dict[str, Callable[[Resources, str], Awaitable[bool]]] = {
    "product": lambda res, ident: project_product(res, int(ident)),
    "category": lambda res, ident: project_category(res, int(ident)),
    "record": lambda res, ident: project_record(res, int(ident)),
    "user": project_user,
}


async def project_event(res: Resources, event: dict[str, Any]) -> bool:
    """Project the aggregate an event names; True if Redis changed."""
    aggregate = event["aggregate"]
    refresh = _BY_AGGREGATE.get(aggregate)
    if refresh is None:
        raise ValueError(f"unknown aggregate {aggregate!r}")
    return await refresh(res, str(event["aggregate_id"]))
