"""Conditional writes: every write answers with the new ``ETag``, and ``If-Match`` compares strongly (RFC 9110).

A client chains ``If-Match`` on the ETag each write returned, without a GET in between; a weak tag, or a tag
that is no ETag the service issues, never matches.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import ADMIN
from tests.support import images as gen
from tests.support.api import category, outbox, problem, product, record


def at(tag: str) -> dict[str, str]:
    return {**ADMIN, "If-Match": tag}


async def _etag_of(client: TestClient, path: str) -> str:
    r = await client.get(path)
    assert r.status == 200, await r.text()
    return r.headers["ETag"]


async def test_product_writes_chain_on_the_etag_each_returns(client: TestClient) -> None:
    # Given a category
    await category(client)

    # When a product is created, replaced, patched, given an image, deleted and restored, each write naming the
    # ETag the previous one returned
    created = await client.post(
        "/api/products", json={"name": "Spade", "price": "1.00", "category": "garden-tools"}, headers=ADMIN
    )
    tags = [created.headers["ETag"]]
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("PUT", "/api/products/spade", {"json": {"name": "Spade", "price": "2.00", "category": "garden-tools"}}),
        ("PATCH", "/api/products/spade", {"json": {"stock": 7}}),
        ("PUT", "/api/products/spade/image", {"data": gen.jpeg(), "headers": {"Content-Type": "image/jpeg"}}),
    ]
    for method, path, kwargs in steps:
        headers = {**at(tags[-1]), **kwargs.pop("headers", {})}
        r = await client.request(method, path, headers=headers, **kwargs)
        assert r.status in (200, 202), await r.text()
        assert r.headers["ETag"] == f'"{(await r.json())["version"]}"'
        tags.append(r.headers["ETag"])
    deleted = await client.delete("/api/products/spade", headers=at(tags[-1]))
    restored = await client.post("/api/products/spade/restore", headers=at(f'"{len(tags) + 1}"'))

    # Then every write went through, each ETag one version on, and the last is what a read answers
    assert created.status == 201
    assert tags == ['"1"', '"2"', '"3"', '"4"']
    assert deleted.status == 204
    assert "ETag" not in deleted.headers  # nothing is left to name
    assert restored.status == 200, await restored.text()
    assert restored.headers["ETag"] == '"6"'
    assert await _etag_of(client, "/api/products/spade") == '"6"'


async def test_category_writes_return_the_etag_a_read_answers(client: TestClient) -> None:
    # Given a category with one product (a category's ETag names its version and its live products)
    created = await client.post("/api/categories", json={"name": "Tools"}, headers=ADMIN)
    await product(client, category="tools")

    # When it is patched with the ETag its creation returned, then replaced with the one the patch returned
    assert created.headers["ETag"] == '"1.0"'
    patched = await client.patch(
        "/api/categories/tools",
        json={"description": "sharp"},
        headers=at(await _etag_of(client, "/api/categories/tools")),
    )
    replaced = await client.put("/api/categories/tools", json={"name": "Tools"}, headers=at(patched.headers["ETag"]))

    # Then both went through, and the ETag of each is what a read of the category answers
    assert patched.status == 200, await patched.text()
    assert patched.headers["ETag"] == '"2.1"'
    assert replaced.status == 200, await replaced.text()
    assert replaced.headers["ETag"] == await _etag_of(client, "/api/categories/tools") == '"3.1"'


async def test_record_writes_return_their_etag(client: TestClient) -> None:
    created = await client.post("/api/records", json={"a": 1}, headers=ADMIN)
    legacy = await client.post("/picus/put", json={"b": 2}, headers=ADMIN)
    rid = (await created.json())["id"]
    replaced = await client.put(f"/api/records/{rid}", json={"a": 2}, headers=at(created.headers["ETag"]))

    assert (created.headers["ETag"], legacy.headers["ETag"]) == ('"1"', '"1"')
    assert replaced.status == 200, await replaced.text()
    assert replaced.headers["ETag"] == await _etag_of(client, f"/api/records/{rid}") == '"2"'


async def test_a_replayed_answer_carries_no_etag(client: TestClient) -> None:
    # Given a record created with an Idempotency-Key, then changed
    headers = {**ADMIN, "Idempotency-Key": "k-1"}
    first = await client.post("/api/records", json={"a": 1}, headers=headers)
    await client.put(f"/api/records/{(await first.json())['id']}", json={"a": 2}, headers=ADMIN)

    # When the creation is retried
    again = await client.post("/api/records", json={"a": 1}, headers=headers)

    # Then the stored answer is replayed without an ETag (it would name version 1, which is gone)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "ETag" not in again.headers


@pytest.mark.parametrize(
    "tag",
    [
        'W/"1"',  # weak: strong comparison never matches it
        '"1.5"',  # a product's ETag is its version alone
        '"01"',
        '"+1"',
        '"abc"',
        '""',
        'W/"1", "2"',
        '"2", "3"',
    ],
)
async def test_if_match_naming_no_current_etag_is_412_and_changes_nothing(client: TestClient, pg, tag: str) -> None:
    # Given a product at version 1
    await category(client)
    await product(client, "Spade", stock=7)
    events = len(await outbox(pg))

    # When it is written with an If-Match that is not its current ETag, strongly compared
    writes = [
        await client.patch("/api/products/spade", json={"stock": 0}, headers=at(tag)),
        await client.put(
            "/api/products/spade", json={"name": "X", "price": "1", "category": "garden-tools"}, headers=at(tag)
        ),
        await client.delete("/api/products/spade", headers=at(tag)),
        await client.delete("/api/products/spade/image", headers=at(tag)),
    ]

    # Then each is 412, and nothing changed
    for r in writes:
        await problem(r, 412)
    assert len(await outbox(pg)) == events
    assert (await (await client.get("/api/products/spade")).json())["stock"] == 7


@pytest.mark.parametrize("tag", ['W/"1.0"', 'W/"1"', '"1.5"', '"2.0"', '"1.0.0"', '"01.0"', '"1.x"', '"1.00"'])
async def test_if_match_on_a_category_naming_no_current_etag_is_412(client: TestClient, tag: str) -> None:
    # Given a category at version 1 with no products: its ETag is "1.0"
    await category(client, "Tools")
    assert await _etag_of(client, "/api/categories/tools") == '"1.0"'

    await problem(await client.put("/api/categories/tools", json={"name": "X"}, headers=at(tag)), 412)
    await problem(await client.delete("/api/categories/tools", headers=at(tag)), 412)


@pytest.mark.parametrize("tag", ['"1"', '"7", "1"', 'W/"1", "1"', '"x,y", "1"', ' "1" ,', "*", " * "])
async def test_if_match_listing_the_current_etag_or_star_matches(client: TestClient, tag: str) -> None:
    # Given a record at version 1
    rid = (await record(client, {"a": 1}))["id"]

    # When it is replaced with an If-Match list that holds its ETag among others (or "*")
    r = await client.put(f"/api/records/{rid}", json={"a": 2}, headers=at(tag))

    # Then the write goes through
    assert r.status == 200, await r.text()
    assert r.headers["ETag"] == '"2"'


@pytest.mark.parametrize("tag", ["1", "v1", '"1', "W/1", '"1" "2"', '"1 "', ",", '*, "1"', 'w/"1"'])
async def test_if_match_that_is_no_list_of_entity_tags_is_400(client: TestClient, pg, tag: str) -> None:
    rid = (await record(client, {"a": 1}))["id"]

    body = await problem(await client.put(f"/api/records/{rid}", json={"a": 2}, headers=at(tag)), 400)

    assert body["errors"] == [{"loc": ["header", "If-Match"], "msg": body["errors"][0]["msg"]}]
    assert len(await outbox(pg)) == 1


async def test_a_category_etag_goes_stale_when_its_products_change(client: TestClient) -> None:
    # Given a category's ETag, then a product added to it (which changes the representation, not the version)
    await category(client, "Tools")
    before = await _etag_of(client, "/api/categories/tools")
    await product(client, category="tools")

    # When the category is written with the ETag read before, and with the current one
    stale = await client.patch("/api/categories/tools", json={"description": "x"}, headers=at(before))
    now = await _etag_of(client, "/api/categories/tools")
    current = await client.patch("/api/categories/tools", json={"description": "x"}, headers=at(now))

    # Then the first is a 412 (strong comparison), the second goes through
    assert (before, now, stale.status) == ('"1.0"', '"1.1"', 412)
    assert current.status == 200, await current.text()
