"""A database whose migrations have not run: every route that needs a table answers 503, never 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from shared.settings import Settings
from tests.conftest import ADMIN, scratch_database
from tests.support.api import problem

#: (method, path, JSON body) of every route that reads or writes a table.
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/categories", None),
    ("GET", "/api/categories/tools", None),
    ("POST", "/api/categories", {"name": "Tools"}),
    ("PUT", "/api/categories/tools", {"name": "Tools"}),
    ("PATCH", "/api/categories/tools", {"name": "Tools"}),
    ("DELETE", "/api/categories/tools", None),
    ("POST", "/api/categories/tools/restore", None),
    ("GET", "/api/products", None),
    ("GET", "/api/products?q=spade", None),
    ("GET", "/api/products/spade", None),
    ("POST", "/api/products", {"name": "Spade", "price": "1", "category": "tools"}),
    ("PATCH", "/api/products/spade", {"stock": 1}),
    ("DELETE", "/api/products/spade", None),
    ("POST", "/api/products/spade/restore", None),
    ("DELETE", "/api/products/spade/image", None),
    ("GET", "/api/records", None),
    ("GET", "/api/records/1", None),
    ("POST", "/api/records", {"a": 1}),
    ("PUT", "/api/records/1", {"a": 1}),
    ("DELETE", "/api/records/1", None),
    ("GET", "/picus/list", None),
    ("GET", "/picus/get/1", None),
    ("POST", "/picus/put", {"a": 1}),
    ("GET", "/data", None),
    ("POST", "/data", {"id": 1, "name": "a", "value": 1}),
    ("GET", "/hello/ann", None),
    ("PUT", "/hello/ann", {"dateOfBirth": "2000-01-02"}),
    ("GET", "/api/users/birthdays/today", None),
]


@pytest.fixture
async def empty_database_url(redis_url: str) -> AsyncIterator[str]:
    """A real, empty database: created, never migrated."""
    async with scratch_database("stockroom_empty") as url:
        yield url


@pytest.fixture
async def unmigrated(aiohttp_client: Any, settings: Settings, empty_database_url: str) -> TestClient:
    return await aiohttp_client(create_app(settings.model_copy(update={"database_url": empty_database_url})))


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
async def test_every_route_answers_503_with_retry_after_when_the_schema_is_not_migrated(
    unmigrated: TestClient, method: str, path: str, body: Any
) -> None:
    # Given an API on a database whose migrations have not run
    # When a route that needs a table is called
    r = await unmigrated.request(method, path, json=body, headers=ADMIN)
    # Then 503 (not 500), Retry-After, and a problem that says why (the older /picus service's own body there)
    assert r.headers["Retry-After"] == "2"
    if path.startswith("/picus/"):
        assert (r.status, r.content_type, await r.json()) == (503, "application/json", PICUS_NOT_READY)
        return
    got = await problem(r, 503)
    assert "not migrated" in got["detail"]


PICUS_NOT_READY = {"error": "Database not ready"}
PICUS_ROUTES = [(m, p, b) for m, p, b in ROUTES if p.startswith("/picus/")]


@pytest.mark.parametrize(("method", "path", "body"), PICUS_ROUTES, ids=[f"{m} {p}" for m, p, _ in PICUS_ROUTES])
async def test_picus_routes_answer_the_older_services_503_when_the_database_is_unreachable(
    aiohttp_client: Any, settings: Settings, method: str, path: str, body: Any
) -> None:
    # Given an API whose PostgreSQL refuses connections (nothing listens on port 1)
    down = settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:1/stockroom"})
    client = await aiohttp_client(create_app(down))
    # When the older /picus service's client calls it
    r = await client.request(method, path, json=body, headers=ADMIN)
    # Then it gets the older service's answer, with Retry-After; the other routes keep the problem document
    assert (r.status, await r.json()) == (503, PICUS_NOT_READY)
    assert r.headers["Retry-After"]
    await problem(await client.get("/api/records/1"), 503)


async def test_readiness_names_the_unmigrated_schema(unmigrated: TestClient) -> None:
    r = await unmigrated.get("/health/ready")
    assert r.status == 503
    body = await r.json()
    assert body["failed"] == ["postgres"]
    assert body["checks"]["postgres"].startswith("down: schema not migrated")


async def test_readiness_names_a_schema_behind_the_code(client: TestClient, pg: asyncpg.Connection) -> None:
    # Given a database whose newest migration was rolled back from the record
    await pg.execute("DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)")
    # Then readiness says the schema is behind
    r = await client.get("/health/ready")
    assert r.status == 503
    assert "schema not migrated" in (await r.json())["checks"]["postgres"]
