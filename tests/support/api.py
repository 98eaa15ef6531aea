"""Small helpers for integration tests: make resources through the API, read the outbox behind it."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import ADMIN

PROBLEM = "application/problem+json"


def rid_headers(request_id: str | None = None, **extra: str) -> dict[str, str]:
    """Admin headers with an ``X-Request-ID`` (made up when not given), plus ``extra``."""
    return {**ADMIN, "X-Request-ID": request_id or uuid.uuid4().hex, **extra}


async def category(client: TestClient, name: str = "Garden Tools", **fields: Any) -> dict[str, Any]:
    r = await client.post("/api/categories", json={"name": name, **fields}, headers=ADMIN)
    assert r.status == 201, await r.text()
    body: dict[str, Any] = await r.json()
    return body


async def product(
    client: TestClient, name: str = "Steel Spade", category: str = "garden-tools", price: str = "19.99", **fields: Any
) -> dict[str, Any]:
    r = await client.post(
        "/api/products", json={"name": name, "category": category, "price": price, **fields}, headers=ADMIN
    )
    assert r.status == 201, await r.text()
    body: dict[str, Any] = await r.json()
    return body


async def record(client: TestClient, data: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/api/records", json=data, headers=ADMIN)
    assert r.status == 201, await r.text()
    body: dict[str, Any] = await r.json()
    return body


async def outbox(pg: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every outbox row, oldest first, as plain dicts."""
    rows = await pg.fetch("SELECT type, aggregate, aggregate_id, version, request_id, payload FROM outbox ORDER BY id")
    return [dict(r) for r in rows]


async def problem(resp: Any, status: int) -> dict[str, Any]:
    """The problem+json body of ``resp``, after checking its status and content type."""
    assert resp.status == status, f"{resp.method} {resp.url}: {resp.status} {await resp.text()}"
    assert resp.content_type == PROBLEM
    body: dict[str, Any] = await resp.json(content_type=PROBLEM)
    assert body["status"] == status
    return body


def locs(body: dict[str, Any]) -> list[list[Any]]:
    """The ``loc`` of every field error in a problem document."""
    return [e["loc"] for e in body.get("errors", [])]
