"""Refreshing aggregates' projections: their current state read from PostgreSQL, then projected into Redis.

Plain async functions, no dramatiq (the actors and the rebuild both use them). The event says *what* changed;
the state always comes from PostgreSQL, and the read model's version check makes a duplicate or out-of-order
message harmless. :func:`project_many` refreshes a batch: each aggregate once however many events named it, the
products and categories read in one statement each, every projection over one pipelined Redis round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
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


#: An aggregate as events name it: (aggregate, aggregate id as the event carries it).
Key = tuple[str, str]


def event_key(event: dict[str, Any]) -> Key:
    return str(event["aggregate"]), str(event["aggregate_id"])


async def project_many(res: Resources, keys: Collection[Key]) -> dict[Key, bool | Exception]:
    """Project each aggregate of ``keys`` from its current state: whether Redis changed, or the exception that
    aggregate met (an unknown aggregate, a malformed id, a failed read or script); the others are projected.

    A product brings its category (whose product count it may have changed): the categories are read after the
    products, so each category's state includes every product read, whose projection fences it at its position.
    """
    out: dict[Key, bool | Exception] = {}
    products: dict[int, Key] = {}
    categories: dict[int, Key] = {}
    others: list[Key] = []
    for key in keys:
        aggregate, ident = key
        try:
            if aggregate == "product":
                products[int(ident)] = key
            elif aggregate == "category":
                categories[int(ident)] = key
            elif aggregate in _BY_AGGREGATE:
                others.append(key)
            else:
                raise ValueError(f"unknown aggregate {aggregate!r}")
        except ValueError as exc:
            out[key] = exc
    jobs: list[Awaitable[None]] = [_settle(out, key, _BY_AGGREGATE[key[0]](res, key[1])) for key in others]
    if products or categories:
        try:
            async with connection(res.pool, res.wait) as conn:
                found = await prod_repo.get_any_by_ids(conn, list(products)) if products else {}
                wanted = set(categories) | {p.category_id for p, _ in found.values()}
                cats = await cat_repo.get_any_by_ids(conn, sorted(wanted))
        except Exception as exc:
            out.update(dict.fromkeys([*products.values(), *categories.values()], exc))
        else:
            # Every script is issued in this loop turn: one write to Redis, one round trip.
            cat_done: dict[int, bool | Exception] = {}
            for pid, key in products.items():
                if pid in found:
                    product, deleted = found[pid]
                    jobs.append(_settle(out, key, project(res.run, product, res.media_url, deleted=deleted)))
                else:
                    out[key] = False
            for cid, (category, deleted) in cats.items():
                jobs.append(_settle(cat_done, cid, project(res.run, category, res.media_url, deleted=deleted)))
            await asyncio.gather(*jobs)
            jobs = []
            for cid, key in categories.items():
                out[key] = cat_done.get(cid, False)
            for pid, key in products.items():
                # A product whose category's projection failed is retried with it, as one event.
                failed = cat_done.get(found[pid][0].category_id) if pid in found else None
                if isinstance(failed, Exception) and not isinstance(out[key], Exception):
                    out[key] = failed
    await asyncio.gather(*jobs)
    return out


async def _settle(out: dict[Any, bool | Exception], key: Any, job: Awaitable[bool]) -> None:
    try:
        out[key] = await job
    except Exception as exc:
        out[key] = exc


class Batcher:
    """Collects the events the worker threads hand in while a batch is in flight, and projects them together."""

    def __init__(self) -> None:
        self._waiting: dict[Key, list[asyncio.Future[bool]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def project(self, res: Resources, event: dict[str, Any]) -> bool:
        """Project ``event``'s aggregate in the next batch; True if Redis changed (the exception if it failed)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(event_key(event), []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(res))
        return await future

    async def _run(self, res: Resources) -> None:
        while self._waiting:
            # One turn of the loop: the coroutines the other threads submitted meanwhile join this batch.
            await asyncio.sleep(0)
            batch, self._waiting = self._waiting, {}
            try:
                results = await project_many(res, batch.keys())
            except Exception as exc:
                results = dict.fromkeys(batch, exc)
            for key, futures in batch.items():
                outcome = results[key]
                for future in futures:
                    if future.done():
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
