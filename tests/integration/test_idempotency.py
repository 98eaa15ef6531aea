"""Idempotency-Key on POST: a retry replays the first answer and creates nothing; another body is 422."""

from __future__ import annotations

import asyncio

from shared.store import apikeys
from tests.conftest import ADMIN
from tests.support.api import category, locs, outbox, problem


def key(value: str) -> dict[str, str]:
    return {**ADMIN, "Idempotency-Key": value}


async def test_retry_with_same_key_and_body_replays_the_first_answer(client, pg) -> None:
    # Given a category created with an Idempotency-Key
    first = await client.post("/api/categories", json={"name": "Tools"}, headers=key("k-1"))
    # When the same request is sent again
    again = await client.post("/api/categories", json={"name": "Tools"}, headers=key("k-1"))
    # Then the same answer comes back, marked as replayed, and only one category and one event exist
    assert (first.status, again.status) == (201, 201)
    assert await again.json() == await first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert await pg.fetchval("SELECT count(*) FROM categories") == 1
    assert len(await outbox(pg)) == 1


async def test_same_key_with_another_body_is_422(client, pg) -> None:
    # Given a request made with a key
    await client.post("/api/categories", json={"name": "Tools"}, headers=key("k-1"))
    # When the key is reused with another body
    r = await client.post("/api/categories", json={"name": "Other"}, headers=key("k-1"))
    # Then it is 422 naming the header, and nothing more is written
    body = await problem(r, 422)
    assert locs(body) == [["header", "Idempotency-Key"]]
    assert await pg.fetchval("SELECT count(*) FROM categories") == 1


async def test_same_key_on_another_endpoint_is_422(client) -> None:
    await category(client, "Garden Tools")
    await client.post("/api/records", json={"name": "Tools"}, headers=key("k-1"))
    r = await client.post("/api/categories", json={"name": "Tools"}, headers=key("k-1"))
    await problem(r, 422)


async def test_trailing_slash_does_not_change_the_request(client, pg) -> None:
    await client.post("/api/records", json={"a": 1}, headers=key("k-1"))
    again = await client.post("/api/records/", json={"a": 1}, headers=key("k-1"))
    assert again.status == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await pg.fetchval("SELECT count(*) FROM records") == 1


async def test_different_keys_create_different_resources(client, pg) -> None:
    await client.post("/api/records", json={"a": 1}, headers=key("k-1"))
    await client.post("/api/records", json={"a": 1}, headers=key("k-2"))
    assert await pg.fetchval("SELECT count(*) FROM records") == 2


async def test_failed_request_does_not_burn_the_key(client, pg) -> None:
    # Given a request that failed on a taken slug
    await category(client, "Tools", slug="tools")
    failed = await client.post("/api/categories", json={"name": "T", "slug": "tools"}, headers=key("k-1"))
    await problem(failed, 409)
    await client.delete("/api/categories/tools", headers=ADMIN)
    # When it is retried once the slug is free
    retried = await client.post("/api/categories", json={"name": "T", "slug": "tools"}, headers=key("k-1"))
    # Then it is carried out
    assert retried.status == 201
    assert "Idempotent-Replayed" not in retried.headers


async def test_generated_slug_collision_inside_an_idempotent_request(client, pg) -> None:
    # Given a category "tools"
    await category(client, "Tools")
    # When another with the same name is created under an Idempotency-Key (one transaction)
    r = await client.post("/api/categories", json={"name": "Tools"}, headers=key("k-1"))
    # Then the retry on the suffix works inside it
    assert r.status == 201
    assert (await r.json())["slug"] == "tools-2"


async def test_simultaneous_requests_with_one_key_create_one_row(client, pg) -> None:
    # Given nothing
    # When five identical POSTs with one key arrive at once
    responses = await asyncio.gather(
        *(client.post("/api/records", json={"a": 1}, headers=key("k-race")) for _ in range(5))
    )
    # Then all succeed with the same id, exactly one is not a replay, and one row and one event exist
    assert [r.status for r in responses] == [201] * 5
    ids = {(await r.json())["id"] for r in responses}
    assert len(ids) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    assert await pg.fetchval("SELECT count(*) FROM records") == 1
    assert len(await outbox(pg)) == 1


async def test_simultaneous_product_creates_with_one_key_create_one_product(client, pg) -> None:
    await category(client, "Garden Tools")
    body = {"name": "Spade", "price": "1", "category": "garden-tools"}
    responses = await asyncio.gather(*(client.post("/api/products", json=body, headers=key("k")) for _ in range(2)))
    assert [r.status for r in responses] == [201, 201]
    assert await pg.fetchval("SELECT count(*) FROM products") == 1


async def test_key_too_long_is_400(client) -> None:
    r = await client.post("/api/records", json={}, headers=key("k" * 256))
    await problem(r, 400)


async def test_one_key_from_two_api_keys_is_two_requests(client, pg) -> None:
    # Given a second API key
    _, other = await apikeys.create(pg, "other", "write")
    # When both callers use the same Idempotency-Key
    mine = await client.post("/api/records", json={"a": 1}, headers=key("shared"))
    theirs = await client.post(
        "/api/records", json={"a": 1}, headers={"Authorization": f"Bearer {other}", "Idempotency-Key": "shared"}
    )
    # Then each gets its own record: keys are scoped to their caller
    assert (mine.status, theirs.status) == (201, 201)
    assert "Idempotent-Replayed" not in theirs.headers
    assert await pg.fetchval("SELECT count(*) FROM records") == 2
