"""/api/categories: CRUD, slugs, soft delete and restore, conditional requests, the outbox behind each write."""

from __future__ import annotations

from tests.conftest import ADMIN
from tests.support.api import category, locs, outbox, problem, product, rid_headers


async def test_create_returns_id_slug_version_and_location(client, pg) -> None:
    # Given nothing
    # When a category is created
    r = await client.post("/api/categories", json={"name": "Garden Tools"}, headers=rid_headers("req-create-1"))
    # Then the answer names it, and one category.created event is in the outbox
    assert r.status == 201
    body = await r.json()
    assert body == {"id": body["id"], "slug": "garden-tools", "version": 1}
    assert r.headers["Location"] == "/api/categories/garden-tools"
    rows = await outbox(pg)
    assert [(e["type"], e["aggregate"], e["aggregate_id"], e["version"], e["request_id"]) for e in rows] == [
        ("category.created", "category", str(body["id"]), 1, "req-create-1")
    ]


async def test_get_returns_every_field(client) -> None:
    # Given a parent and a child category
    await category(client, "Garden")
    created = await category(client, "Spades", slug="spades", description="Digging", parent="garden")
    # When the child is read
    r = await client.get("/api/categories/spades")
    # Then every field of the contract is there
    assert r.status == 200
    body = await r.json()
    assert body["id"] == created["id"]
    assert {k: body[k] for k in ("slug", "name", "description", "parent", "product_count", "version")} == {
        "slug": "spades",
        "name": "Spades",
        "description": "Digging",
        "parent": "garden",
        "product_count": 0,
        "version": 1,
    }
    assert body["created_at"].endswith("Z")
    assert body["updated_at"].endswith("Z")


async def test_unknown_category_is_404(client) -> None:
    # When a category that never existed is read
    r = await client.get("/api/categories/nope")
    # Then it is a problem+json 404
    await problem(r, 404)


async def test_invalid_body_is_422_listing_every_field(client, pg) -> None:
    # When a category is posted with a bad name, a bad slug and an unknown field
    r = await client.post("/api/categories", json={"name": "", "slug": "Not A Slug", "colour": "red"}, headers=ADMIN)
    # Then each field at fault is listed, and nothing is written
    body = await problem(r, 422)
    assert sorted(locs(body)) == [["body", "colour"], ["body", "name"], ["body", "slug"]]
    assert await outbox(pg) == []


async def test_unknown_parent_is_422(client) -> None:
    # When a category names a parent that does not exist
    r = await client.post("/api/categories", json={"name": "Spades", "parent": "ghost"}, headers=ADMIN)
    # Then the parent field is at fault
    body = await problem(r, 422)
    assert locs(body) == [["body", "parent"]]


async def test_generated_slugs_get_numbered_suffixes_on_collision(client) -> None:
    # Given a category named "Garden Tools"
    await category(client, "Garden Tools")
    # When two more are created with names that make the same slug
    second = await category(client, "Garden tools")
    third = await category(client, "GARDEN  TOOLS!")
    # Then they get -2 and -3
    assert (second["slug"], third["slug"]) == ("garden-tools-2", "garden-tools-3")


async def test_generated_slug_is_ascii_lower_case(client) -> None:
    # When a category has a non-ASCII name
    body = await category(client, "Café Crème Brûlée")
    # Then its slug is ASCII and lower case
    assert body["slug"] == "cafe-creme-brulee"


async def test_explicit_slug_already_taken_is_409(client, pg) -> None:
    # Given a category with slug "tools"
    await category(client, "Tools", slug="tools")
    # When another asks for the same slug
    r = await client.post("/api/categories", json={"name": "Other", "slug": "tools"}, headers=ADMIN)
    # Then it is a conflict and only the first event exists
    await problem(r, 409)
    assert len(await outbox(pg)) == 1


async def test_list_walks_every_category_once_with_cursor(client) -> None:
    # Given five categories
    for i in range(5):
        await category(client, f"Category {i}")
    # When they are listed two at a time
    seen, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        r = await client.get("/api/categories", params=params)
        assert r.status == 200
        page = await r.json()
        seen += [c["slug"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Then every category comes once, in creation order
    assert seen == [f"category-{i}" for i in range(5)]


async def test_put_replaces_and_bumps_version(client, pg) -> None:
    # Given a category with a description
    created = await category(client, "Tools", description="old")
    # When it is replaced without a description
    r = await client.put("/api/categories/tools", json={"name": "Hand Tools"}, headers=rid_headers("req-put"))
    # Then the answer carries version 2, the description is gone and one category.updated is written
    assert r.status == 200
    assert await r.json() == {"id": created["id"], "slug": "tools", "version": 2}
    body = await (await client.get("/api/categories/tools")).json()
    assert (body["name"], body["description"]) == ("Hand Tools", None)
    last = (await outbox(pg))[-1]
    assert (last["type"], last["version"], last["request_id"]) == ("category.updated", 2, "req-put")


async def test_put_can_rename_the_slug(client) -> None:
    # Given a category "tools"
    await category(client, "Tools")
    # When it is replaced with another slug
    r = await client.put("/api/categories/tools", json={"name": "Tools", "slug": "hand-tools"}, headers=ADMIN)
    # Then it lives under the new slug only
    assert r.status == 200
    assert r.headers["Location"] == "/api/categories/hand-tools"
    assert (await client.get("/api/categories/hand-tools")).status == 200
    assert (await client.get("/api/categories/tools")).status == 404


async def test_put_to_a_taken_slug_is_409(client) -> None:
    # Given two categories
    await category(client, "Tools")
    await category(client, "Spades")
    # When one is renamed to the other's slug
    r = await client.put("/api/categories/spades", json={"name": "Spades", "slug": "tools"}, headers=ADMIN)
    # Then it is a conflict
    await problem(r, 409)


async def test_put_unknown_category_is_404(client) -> None:
    r = await client.put("/api/categories/ghost", json={"name": "Ghost"}, headers=ADMIN)
    await problem(r, 404)


async def test_put_making_a_cycle_is_422(client) -> None:
    # Given garden > spades
    await category(client, "Garden")
    await category(client, "Spades", parent="garden")
    # When garden is made a child of spades
    r = await client.put("/api/categories/garden", json={"name": "Garden", "parent": "spades"}, headers=ADMIN)
    # Then the parent field is at fault
    body = await problem(r, 422)
    assert locs(body) == [["body", "parent"]]


async def test_put_with_stale_if_match_is_412(client, pg) -> None:
    # Given a category at version 1
    await category(client, "Tools")
    # When it is replaced with If-Match naming version 7
    r = await client.put("/api/categories/tools", json={"name": "X"}, headers={**ADMIN, "If-Match": '"7"'})
    # Then it is 412 and nothing changed
    await problem(r, 412)
    assert len(await outbox(pg)) == 1


async def test_put_with_current_etag_as_if_match_succeeds(client) -> None:
    # Given a category and its ETag
    await category(client, "Tools")
    etag = (await client.get("/api/categories/tools")).headers["ETag"]
    # When it is replaced with that ETag in If-Match
    r = await client.put("/api/categories/tools", json={"name": "X"}, headers={**ADMIN, "If-Match": etag})
    # Then the write goes through
    assert r.status == 200
    assert (await r.json())["version"] == 2


async def test_malformed_if_match_is_400(client) -> None:
    await category(client, "Tools")
    r = await client.put("/api/categories/tools", json={"name": "X"}, headers={**ADMIN, "If-Match": "v1"})
    await problem(r, 400)


async def test_patch_merges_and_null_removes(client, pg) -> None:
    # Given a category with a description
    await category(client, "Tools", description="old")
    # When a merge patch changes the name and removes the description
    r = await client.patch(
        "/api/categories/tools",
        json={"name": "Hand Tools", "description": None},
        headers=rid_headers("req-patch", **{"Content-Type": "application/merge-patch+json"}),
    )
    # Then only those fields changed, and one category.updated is written
    assert r.status == 200
    body = await (await client.get("/api/categories/tools")).json()
    assert (body["name"], body["slug"], body["description"], body["version"]) == ("Hand Tools", "tools", None, 2)
    last = (await outbox(pg))[-1]
    assert (last["type"], last["version"], last["request_id"]) == ("category.updated", 2, "req-patch")


async def test_patch_to_an_invalid_state_is_422(client) -> None:
    # Given a category
    await category(client, "Tools")
    # When a patch removes its required name
    r = await client.patch("/api/categories/tools", json={"name": None}, headers=ADMIN)
    # Then the name is at fault
    body = await problem(r, 422)
    assert locs(body) == [["body", "name"]]


async def test_patch_with_stale_if_match_is_412(client) -> None:
    await category(client, "Tools")
    r = await client.patch("/api/categories/tools", json={"name": "X"}, headers={**ADMIN, "If-Match": '"2"'})
    await problem(r, 412)


async def test_patch_unknown_category_is_404(client) -> None:
    r = await client.patch("/api/categories/ghost", json={"name": "X"}, headers=ADMIN)
    await problem(r, 404)


async def test_etag_and_if_none_match_give_304(client) -> None:
    # Given a category and its ETag
    await category(client, "Tools")
    first = await client.get("/api/categories/tools")
    etag = first.headers["ETag"]
    # When it is read again with If-None-Match
    r = await client.get("/api/categories/tools", headers={"If-None-Match": etag})
    # Then it is 304 with the same ETag and no body
    assert r.status == 304
    assert r.headers["ETag"] == etag
    assert await r.read() == b""


async def test_etag_changes_after_a_write(client) -> None:
    # Given a category and its ETag
    await category(client, "Tools")
    etag = (await client.get("/api/categories/tools")).headers["ETag"]
    await client.patch("/api/categories/tools", json={"name": "X"}, headers=ADMIN)
    # When it is read with the old ETag
    r = await client.get("/api/categories/tools", headers={"If-None-Match": etag})
    # Then the new representation comes back
    assert r.status == 200
    assert r.headers["ETag"] != etag


async def test_delete_is_soft_and_the_category_is_404(client, pg) -> None:
    # Given a category
    created = await category(client, "Tools")
    # When it is deleted
    r = await client.delete("/api/categories/tools", headers=rid_headers("req-del"))
    # Then it answers 204, reads are 404, it is not listed, and one category.deleted is written
    assert r.status == 204
    await problem(await client.get("/api/categories/tools"), 404)
    assert (await (await client.get("/api/categories")).json())["items"] == []
    last = (await outbox(pg))[-1]
    assert (last["type"], last["aggregate_id"], last["version"], last["request_id"]) == (
        "category.deleted",
        str(created["id"]),
        2,
        "req-del",
    )
    assert await pg.fetchval("SELECT deleted_at IS NOT NULL FROM categories WHERE id = $1", created["id"])


async def test_deleting_twice_is_404(client) -> None:
    await category(client, "Tools")
    await client.delete("/api/categories/tools", headers=ADMIN)
    await problem(await client.delete("/api/categories/tools", headers=ADMIN), 404)


async def test_deleted_slug_can_be_taken_again(client) -> None:
    # Given a deleted category "tools"
    await category(client, "Tools")
    await client.delete("/api/categories/tools", headers=ADMIN)
    # When a new category asks for that slug
    r = await client.post("/api/categories", json={"name": "New Tools", "slug": "tools"}, headers=ADMIN)
    # Then it gets it
    assert r.status == 201
    assert (await (await client.get("/api/categories/tools")).json())["name"] == "New Tools"


async def test_deleted_category_cannot_be_written(client) -> None:
    await category(client, "Tools")
    await client.delete("/api/categories/tools", headers=ADMIN)
    await problem(await client.put("/api/categories/tools", json={"name": "X"}, headers=ADMIN), 404)
    await problem(await client.patch("/api/categories/tools", json={"name": "X"}, headers=ADMIN), 404)


async def test_deleting_a_category_with_live_products_is_409(client, pg) -> None:
    # Given a category with a product
    await category(client, "Garden Tools")
    await product(client)
    # When the category is deleted
    r = await client.delete("/api/categories/garden-tools", headers=ADMIN)
    # Then it is a conflict and the category is still there
    await problem(r, 409)
    assert (await client.get("/api/categories/garden-tools")).status == 200


async def test_delete_with_stale_if_match_is_412(client) -> None:
    await category(client, "Tools")
    r = await client.delete("/api/categories/tools", headers={**ADMIN, "If-Match": '"5"'})
    await problem(r, 412)


async def test_restore_brings_a_deleted_category_back(client, pg) -> None:
    # Given a deleted category
    created = await category(client, "Tools")
    await client.delete("/api/categories/tools", headers=ADMIN)
    # When it is restored
    r = await client.post("/api/categories/tools/restore", headers=rid_headers("req-restore"))
    # Then it is live again at version 3, and one category.restored is written
    assert r.status == 200
    assert await r.json() == {"id": created["id"], "slug": "tools", "version": 3}
    assert (await client.get("/api/categories/tools")).status == 200
    last = (await outbox(pg))[-1]
    assert (last["type"], last["version"], last["request_id"]) == ("category.restored", 3, "req-restore")


async def test_restore_when_the_slug_was_taken_meanwhile_is_409(client) -> None:
    # Given a deleted category whose slug a new category took
    await category(client, "Tools")
    await client.delete("/api/categories/tools", headers=ADMIN)
    await category(client, "New Tools", slug="tools")
    # When the old one is restored
    r = await client.post("/api/categories/tools/restore", headers=ADMIN)
    # Then it is a conflict
    await problem(r, 409)


async def test_restore_of_a_live_category_is_409(client) -> None:
    await category(client, "Tools")
    await problem(await client.post("/api/categories/tools/restore", headers=ADMIN), 409)


async def test_restore_of_an_unknown_category_is_404(client) -> None:
    await problem(await client.post("/api/categories/ghost/restore", headers=ADMIN), 404)


async def test_product_count_counts_live_products(client) -> None:
    # Given a category with two products, one of them deleted
    await category(client, "Garden Tools")
    await product(client, "Spade")
    await product(client, "Rake")
    await client.delete("/api/products/rake", headers=ADMIN)
    # When the category is read
    body = await (await client.get("/api/categories/garden-tools")).json()
    # Then it counts the live one
    assert body["product_count"] == 1
