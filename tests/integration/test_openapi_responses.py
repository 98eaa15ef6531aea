"""The response models the OpenAPI document shows hold the API's real responses (so the two cannot drift).

The models forbid unknown fields: a field added to a view and not to its model fails here.
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from pydantic import BaseModel

from api import schemas
from tests.conftest import ADMIN
from tests.support import api
from tests.support import images as gen

PROBLEM = "application/problem+json"


async def _body(resp: Any, status: int, model: type[BaseModel]) -> BaseModel:
    assert resp.status == status, await resp.text()
    ctype = PROBLEM if model is schemas.Problem else "application/json"
    assert resp.content_type == ctype
    return model.model_validate(await resp.json(content_type=ctype))


async def test_category_representations_match_their_models(client: TestClient) -> None:
    created = await client.post("/api/categories", json={"name": "Garden tools"}, headers=ADMIN)
    await _body(created, 201, schemas.WriteResult)
    await client.post("/api/categories", json={"name": "Shears", "parent": "garden-tools"}, headers=ADMIN)

    await _body(await client.get("/api/categories/garden-tools"), 200, schemas.CategoryOut)
    page = await _body(await client.get("/api/categories?limit=1"), 200, schemas.CategoryPage)
    assert isinstance(page, schemas.CategoryPage)
    assert page.next_cursor is not None
    await _body(await client.get(f"/api/categories?cursor={page.next_cursor}"), 200, schemas.CategoryPage)
    patched = await client.patch("/api/categories/shears", json={"description": "sharp"}, headers=ADMIN)
    await _body(patched, 200, schemas.WriteResult)


async def test_product_representations_match_their_models(client: TestClient) -> None:
    await api.category(client)
    await _body(
        await client.post(
            "/api/products",
            json={"name": "Steel spade", "price": "19.99", "category": "garden-tools", "attributes": {"a": [1]}},
            headers=ADMIN,
        ),
        201,
        schemas.WriteResult,
    )

    await _body(await client.get("/api/products/steel-spade"), 200, schemas.ProductOut)
    await _body(await client.get("/api/products/steel-spade"), 200, schemas.ProductOut)  # from Redis this time
    await _body(await client.get("/api/products?sort=price"), 200, schemas.ProductPage)
    await _body(await client.get("/api/products?q=spade&in_stock=false"), 200, schemas.ProductPage)
    upload = await client.put(
        "/api/products/steel-spade/image", data=gen.jpeg(), headers={**ADMIN, "Content-Type": "image/jpeg"}
    )
    accepted = await _body(upload, 202, schemas.ImageAccepted)
    assert isinstance(accepted, schemas.ImageAccepted)
    assert accepted.image.status == "pending"
    await _body(await client.get("/api/products/steel-spade"), 200, schemas.ProductOut)


async def test_record_representations_match_their_models(client: TestClient) -> None:
    created = await _body(
        await client.post("/api/records", json={"a": {"b": [1, None]}}, headers=ADMIN), 201, schemas.RecordCreated
    )
    assert isinstance(created, schemas.RecordCreated)

    await _body(await client.get(f"/api/records/{created.id}"), 200, schemas.RecordOut)
    await _body(await client.get("/api/records"), 200, schemas.RecordPage)
    await _body(await client.put(f"/api/records/{created.id}", json={"x": 1}, headers=ADMIN), 200, schemas.WriteResult)
    await _body(await client.post("/picus/put", json={"y": 2}, headers=ADMIN), 201, schemas.RecordCreated)
    legacy = await client.get("/picus/list")
    assert legacy.status == 200
    assert [item["y"] for item in await legacy.json() if isinstance(item["id"], int)] == [2]
    item = {"id": 1, "name": "n", "value": 1.5}
    await _body(await client.post("/data", json=item, headers=ADMIN), 201, schemas.DataItemCreated)
    listed = await client.get("/data")
    assert [schemas.DataItemIn.model_validate(i).model_dump() for i in await listed.json()] == [item]


async def test_birthday_and_health_representations_match_their_models(client: TestClient) -> None:
    r = await client.put("/hello/Ann", json={"dateOfBirth": "1990-05-17"}, headers=ADMIN)
    assert r.status == 204

    await _body(await client.get("/hello/ann"), 200, schemas.Greeting)
    await _body(await client.get("/api/users/birthdays/today"), 200, schemas.BirthdaysToday)
    await _body(await client.get("/health/live"), 200, schemas.Health)
    await _body(await client.get("/health/ready"), 200, schemas.Health)


async def test_problem_documents_match_their_model(client: TestClient) -> None:
    invalid = await _body(await client.post("/api/categories", json={}, headers=ADMIN), 422, schemas.Problem)
    assert isinstance(invalid, schemas.Problem)
    assert invalid.errors

    await _body(await client.get("/api/products/nope"), 404, schemas.Problem)
    await _body(await client.get("/api/products?limit=0"), 400, schemas.Problem)
    await _body(await client.post("/api/categories", json={"name": "x"}), 401, schemas.Problem)
    await _body(await client.delete("/api/categories"), 405, schemas.Problem)
