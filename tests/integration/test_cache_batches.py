"""The cache worker's batches: events projected together, each aggregate once, from PostgreSQL's current state.

:class:`worker.readmodel.refresh.Batcher` is what the dramatiq actors hand their events to; here it is fed
directly, on the test's loop, with real PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from shared.readmodel.client import redis_runner
from shared.store.pool import create_pool
from tests.conftest import ADMIN
from worker.readmodel.refresh import Batcher, Resources


@pytest.fixture
async def res(settings) -> AsyncIterator[Resources]:  # type: ignore[no-untyped-def]
    pool = await create_pool(settings)
    redis_client = aioredis.from_url(settings.redis_url)
    yield Resources(pool, redis_runner(redis_client), settings.media_url)
    await redis_client.aclose()
    await pool.close()


def _event(aggregate: str, ident: object, version: int) -> dict[str, Any]:
    return {"type": f"{aggregate}.updated", "aggregate": aggregate, "aggregate_id": ident, "version": version}


async def _product(client, pg) -> int:  # type: ignore[no-untyped-def]
    """A product whose projection (written through at version 1) is now behind PostgreSQL, at version 3."""
    await client.post("/api/categories", json={"name": "Tools", "slug": "tools"}, headers=ADMIN)
    r = await client.post("/api/products", json={"name": "Saw", "price": "9", "category": "tools"}, headers=ADMIN)
    product_id = int((await r.json())["id"])
    await pg.execute("UPDATE products SET stock = 7, version = 3 WHERE id = $1", product_id)
    return product_id


async def test_duplicate_and_out_of_order_events_in_one_batch_project_the_newest_state(client, pg, res) -> None:
    # Given a product at version 3 in PostgreSQL whose projection is at version 1
    product_id = await _product(client, pg)
    batcher = Batcher()
    # When its events arrive together, out of order and duplicated
    events = [_event("product", product_id, v) for v in (3, 2, 3, 1)]
    changed = await asyncio.gather(*(batcher.project(res, e) for e in events))
    # Then it is projected once, at the newest version: every event of it is answered by that one projection
    assert changed == [True, True, True, True]
    body = await (await client.get("/api/products/saw")).json()
    assert (body["version"], body["stock"]) == (3, 7)
    # And a late batch of its older events changes nothing: the projection never goes back in version
    late = await asyncio.gather(*(batcher.project(res, _event("product", product_id, v)) for v in (1, 2)))
    assert late == [False, False]
    assert (await (await client.get("/api/products/saw")).json())["version"] == 3


async def test_a_soft_deleted_product_in_a_batch_becomes_a_tombstone(client, pg, res) -> None:
    # Given a product deleted in PostgreSQL behind the read model's back (its projection still live, version 1)
    product_id = await _product(client, pg)
    await pg.execute("UPDATE products SET deleted_at = now(), version = 4 WHERE id = $1", product_id)
    # When its created and deleted events come in one batch
    batcher = Batcher()
    await asyncio.gather(*(batcher.project(res, _event("product", product_id, v)) for v in (1, 4)))
    # Then readers get 404, and the category's count no longer holds it
    assert (await client.get("/api/products/saw")).status == 404
    assert (await (await client.get("/api/categories/tools")).json())["product_count"] == 0


async def test_a_poison_event_fails_alone_and_the_rest_of_its_batch_is_projected(client, pg, res) -> None:
    # Given a product behind PostgreSQL, and two events no projection can handle
    product_id = await _product(client, pg)
    batcher = Batcher()
    events = [_event("widget", 1, 1), _event("product", product_id, 3), _event("product", "not-a-number", 1)]
    # When they come in one batch
    outcomes = await asyncio.gather(*(batcher.project(res, e) for e in events), return_exceptions=True)
    # Then the poison events fail (dramatiq retries and dead-letters them) and the good one is projected
    assert isinstance(outcomes[0], ValueError)
    assert outcomes[1] is True
    assert isinstance(outcomes[2], ValueError)
    assert (await (await client.get("/api/products/saw")).json())["version"] == 3
