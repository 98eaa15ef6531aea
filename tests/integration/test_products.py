"""/api/products: CRUD, validation, filters, keyset pagination in every sort order, the outbox behind writes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import ADMIN
from tests.support.api import category, locs, outbox, problem, product, rid_headers

SORTS = ["-created_at", "created_at", "price", "-price", "name"]


async def _walk(client, limit: int = 2, **params: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The slugs of every page of a listing, following next_cursor until it is null."""
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        query = {"limit": str(limit), **params, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/api/products", params=query)
        assert r.status == 200, await r.text()
        page = await r.json()
        assert len(page["items"]) <= limit
        seen += [p["slug"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the listing never ended")


@pytest.fixture
async def catalog(client) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Two categories and seven products with ties in price and name, created in this order."""
    await category(client, "Garden Tools")
    await category(client, "Kitchen")
    specs = [
        ("Steel Spade", "garden-tools", "19.99", 5, "A sturdy spade for digging"),
        ("Rake", "garden-tools", "9.50", 0, "Collects leaves"),
        ("Hoe", "garden-tools", "9.50", 2, "Weeding made easy"),
        ("Kettle", "kitchen", "35.00", 1, "Boils water fast"),
        ("Pan", "kitchen", "0.00", 0, "Free sample pan"),
        ("Rake", "kitchen", "12.00", 3, "A kitchen rake, oddly"),
        ("Whisk", "kitchen", "4.25", 7, None),
    ]
    made = {}
    for name, cat, price, stock, description in specs:
        body = await product(client, name, cat, price, stock=stock, description=description)
        made[body["slug"]] = {"name": name, "category": cat, "price": price, "stock": stock, "id": body["id"]}
    return made


async def test_create_writes_one_product_created_event(client, pg) -> None:
    # Given a category
    await category(client, "Garden Tools")
    # When a product is created
    r = await client.post(
        "/api/products",
        json={"name": "Steel Spade", "price": "19.99", "category": "garden-tools"},
        headers=rid_headers("req-p1"),
    )
    # Then it answers id, slug and version 1, with a Location, and one product.created is in the outbox
    assert r.status == 201
    body = await r.json()
    assert body == {"id": body["id"], "slug": "steel-spade", "version": 1}
    assert r.headers["Location"] == "/api/products/steel-spade"
    rows = [e for e in await outbox(pg) if e["aggregate"] == "product"]
    assert [(e["type"], e["aggregate_id"], e["version"], e["request_id"]) for e in rows] == [
        ("product.created", str(body["id"]), 1, "req-p1")
    ]


async def test_get_returns_every_field_with_defaults(client) -> None:
    # Given a product created with only the required fields, price as a JSON number
    await category(client, "Garden Tools")
    created = await product(client, price=19.9)  # type: ignore[arg-type]
    # When it is read
    r = await client.get("/api/products/steel-spade")
    # Then the defaults are filled in and the price is a two-place string
    assert r.status == 200
    body = await r.json()
    assert body == {
        "id": created["id"],
        "slug": "steel-spade",
        "name": "Steel Spade",
        "description": None,
        "price": "19.90",
        "currency": "EUR",
        "category": "garden-tools",
        "stock": 0,
        "attributes": {},
        "is_active": True,
        "image": {"status": "none", "original": None, "thumbnails": {}, "error": None},
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
        "version": 1,
    }
    assert r.headers["ETag"] == '"1"'


async def test_invalid_product_is_422_listing_every_field(client, pg) -> None:
    # Given a category
    await category(client, "Garden Tools")
    # When a product is posted with every field wrong
    r = await client.post(
        "/api/products",
        json={
            "name": "",
            "price": "1.999",
            "currency": "euro",
            "category": "garden-tools",
            "stock": -1,
            "attributes": [],
            "is_active": "yes",
        },
        headers=ADMIN,
    )
    # Then each of them is listed, and nothing is written
    body = await problem(r, 422)
    assert sorted(locs(body)) == [
        ["body", "attributes"],
        ["body", "currency"],
        ["body", "is_active"],
        ["body", "name"],
        ["body", "price"],
        ["body", "stock"],
    ]
    assert len(await outbox(pg)) == 1  # the category's


async def test_bad_prices_are_422(client) -> None:
    await category(client, "Garden Tools")
    for price in (-1, "-0.01", True, "abc", "NaN", "1e3000", "1.001", 1e20):
        r = await client.post(
            "/api/products", json={"name": "X", "price": price, "category": "garden-tools"}, headers=ADMIN
        )
        body = await problem(r, 422)
        assert locs(body) == [["body", "price"]], price


async def test_missing_required_fields_are_422(client) -> None:
    r = await client.post("/api/products", json={}, headers=ADMIN)
    body = await problem(r, 422)
    assert sorted(locs(body)) == [["body", "category"], ["body", "name"], ["body", "price"]]


async def test_attributes_over_16_kib_are_422(client) -> None:
    await category(client, "Garden Tools")
    r = await client.post(
        "/api/products",
        json={"name": "X", "price": "1", "category": "garden-tools", "attributes": {"a": "x" * 17000}},
        headers=ADMIN,
    )
    body = await problem(r, 422)
    assert locs(body) == [["body", "attributes"]]


async def test_unknown_category_is_422(client, pg) -> None:
    # When a product names a category that does not exist
    r = await client.post("/api/products", json={"name": "X", "price": "1", "category": "ghost"}, headers=ADMIN)
    # Then the category field is at fault and nothing is written
    body = await problem(r, 422)
    assert locs(body) == [["body", "category"]]
    assert await outbox(pg) == []


async def test_deleted_category_is_422(client) -> None:
    await category(client, "Garden Tools")
    await client.delete("/api/categories/garden-tools", headers=ADMIN)
    r = await client.post("/api/products", json={"name": "X", "price": "1", "category": "garden-tools"}, headers=ADMIN)
    body = await problem(r, 422)
    assert locs(body) == [["body", "category"]]


async def test_unknown_product_is_404(client) -> None:
    await problem(await client.get("/api/products/nope"), 404)


async def test_generated_slugs_get_numbered_suffixes_on_collision(client) -> None:
    await category(client, "Garden Tools")
    first = await product(client, "Spade")
    second = await product(client, "spade")
    assert (first["slug"], second["slug"]) == ("spade", "spade-2")


async def test_a_suffix_taken_by_an_explicit_slug_is_skipped(client) -> None:
    # Given "spade" and "spade-2", the second one named by its client
    await category(client, "Garden Tools")
    await product(client, "Spade")
    await product(client, "Other", slug="spade-2")
    # When two more products are named "Spade"
    slugs = [(await product(client, "Spade"))["slug"] for _ in range(2)]
    # Then they get the next numbers free
    assert slugs == ["spade-3", "spade-4"]


async def test_suffixes_start_past_the_numbers_already_in_use(client, pg) -> None:
    # Given products "spade" and "spade-7" and no suffix counter (rows older than the counters, or seeded)
    await category(client, "Garden Tools")
    await product(client, "Spade")
    await product(client, "Other", slug="spade-7")
    await pg.execute("DELETE FROM slug_suffixes")
    # When another product is named "Spade"
    created = await product(client, "Spade")
    # Then it is numbered past them
    assert created["slug"] == "spade-8"


async def test_many_concurrent_creates_of_one_name_each_get_a_number_of_their_own(client) -> None:
    # When 30 products with one name are created at once
    await category(client, "Garden Tools")
    body = {"name": "Hoe", "price": "1", "category": "garden-tools"}
    answers = await asyncio.gather(*(client.post("/api/products", json=body, headers=ADMIN) for _ in range(30)))
    # Then every one is created, as hoe, hoe-2 ... hoe-30
    assert [r.status for r in answers] == [201] * 30
    assert sorted([(await r.json())["slug"] for r in answers]) == sorted(["hoe", *(f"hoe-{n}" for n in range(2, 31))])


async def test_explicit_slug_already_taken_is_409(client) -> None:
    await category(client, "Garden Tools")
    await product(client, "Spade")
    r = await client.post(
        "/api/products", json={"name": "Y", "slug": "spade", "price": "1", "category": "garden-tools"}, headers=ADMIN
    )
    await problem(r, 409)


async def test_put_replaces_every_field(client, pg) -> None:
    # Given a product with stock and attributes
    await category(client, "Garden Tools")
    await category(client, "Kitchen")
    await product(client, "Spade", stock=5, attributes={"colour": "red"})
    # When it is replaced with another category and price but no stock or attributes
    r = await client.put(
        "/api/products/spade",
        json={"name": "Spade", "price": "21", "category": "kitchen"},
        headers=rid_headers("req-put"),
    )
    # Then omitted fields take their defaults, and one product.updated at version 2 is written
    assert r.status == 200
    body = await (await client.get("/api/products/spade")).json()
    assert (body["price"], body["category"], body["stock"], body["attributes"], body["version"]) == (
        "21.00",
        "kitchen",
        0,
        {},
        2,
    )
    last = (await outbox(pg))[-1]
    assert (last["type"], last["version"], last["request_id"]) == ("product.updated", 2, "req-put")


async def test_put_unknown_product_is_404(client) -> None:
    await category(client, "Garden Tools")
    r = await client.put(
        "/api/products/ghost", json={"name": "X", "price": "1", "category": "garden-tools"}, headers=ADMIN
    )
    await problem(r, 404)


async def test_put_into_unknown_category_is_422(client) -> None:
    await category(client, "Garden Tools")
    await product(client, "Spade")
    r = await client.put("/api/products/spade", json={"name": "X", "price": "1", "category": "ghost"}, headers=ADMIN)
    body = await problem(r, 422)
    assert locs(body) == [["body", "category"]]


async def test_put_with_stale_if_match_is_412(client) -> None:
    await category(client, "Garden Tools")
    await product(client, "Spade")
    r = await client.put(
        "/api/products/spade",
        json={"name": "X", "price": "1", "category": "garden-tools"},
        headers={**ADMIN, "If-Match": '"9"'},
    )
    await problem(r, 412)


async def test_put_to_a_taken_slug_is_409(client) -> None:
    await category(client, "Garden Tools")
    await product(client, "Spade")
    await product(client, "Rake")
    r = await client.put(
        "/api/products/rake",
        json={"name": "Rake", "slug": "spade", "price": "1", "category": "garden-tools"},
        headers=ADMIN,
    )
    await problem(r, 409)


async def test_patch_merges_nested_attributes(client, pg) -> None:
    # Given a product with attributes
    await category(client, "Garden Tools")
    await product(client, "Spade", attributes={"colour": "red", "size": {"h": 1, "w": 2}}, description="old")
    # When a merge patch changes the price, one nested attribute, and removes another and the description
    r = await client.patch(
        "/api/products/spade",
        json={"price": "5.5", "attributes": {"colour": None, "size": {"w": 3}}, "description": None},
        headers={**rid_headers("req-patch"), "Content-Type": "application/merge-patch+json"},
    )
    # Then only those change
    assert r.status == 200
    body = await (await client.get("/api/products/spade")).json()
    assert (body["name"], body["price"], body["attributes"], body["description"]) == (
        "Spade",
        "5.50",
        {"size": {"h": 1, "w": 3}},
        None,
    )
    last = (await outbox(pg))[-1]
    assert (last["type"], last["version"], last["request_id"]) == ("product.updated", 2, "req-patch")


async def test_patch_with_invalid_value_is_422(client) -> None:
    await category(client, "Garden Tools")
    await product(client, "Spade")
    r = await client.patch("/api/products/spade", json={"stock": -3}, headers=ADMIN)
    body = await problem(r, 422)
    assert locs(body) == [["body", "stock"]]


async def test_patch_with_matching_if_match_succeeds_and_stale_is_412(client) -> None:
    await category(client, "Garden Tools")
    await product(client, "Spade")
    ok = await client.patch("/api/products/spade", json={"stock": 1}, headers={**ADMIN, "If-Match": '"1"'})
    assert ok.status == 200
    stale = await client.patch("/api/products/spade", json={"stock": 2}, headers={**ADMIN, "If-Match": '"1"'})
    await problem(stale, 412)


async def test_etag_and_if_none_match_give_304(client) -> None:
    await category(client, "Garden Tools")
    await product(client, "Spade")
    etag = (await client.get("/api/products/spade")).headers["ETag"]
    r = await client.get("/api/products/spade", headers={"If-None-Match": etag})
    assert r.status == 304
    assert r.headers["ETag"] == etag


async def test_delete_then_404_and_slug_reusable(client, pg) -> None:
    # Given a product
    await category(client, "Garden Tools")
    created = await product(client, "Spade")
    # When it is deleted
    r = await client.delete("/api/products/spade", headers=rid_headers("req-del"))
    # Then reads are 404, it is not listed, its slug can be taken again, and one product.deleted is written
    assert r.status == 204
    await problem(await client.get("/api/products/spade"), 404)
    assert (await (await client.get("/api/products")).json())["items"] == []
    deleted = [e for e in await outbox(pg) if e["type"] == "product.deleted"]
    assert [(e["aggregate_id"], e["version"], e["request_id"]) for e in deleted] == [(str(created["id"]), 2, "req-del")]
    again = await product(client, "Other", slug="spade")
    assert again["slug"] == "spade"
    assert again["id"] != created["id"]


async def test_delete_unknown_is_404_and_stale_if_match_is_412(client) -> None:
    await category(client, "Garden Tools")
    await product(client, "Spade")
    await problem(await client.delete("/api/products/ghost", headers=ADMIN), 404)
    await problem(await client.delete("/api/products/spade", headers={**ADMIN, "If-Match": '"3"'}), 412)


async def test_restore_brings_a_product_back(client, pg) -> None:
    await category(client, "Garden Tools")
    created = await product(client, "Spade")
    await client.delete("/api/products/spade", headers=ADMIN)
    r = await client.post("/api/products/spade/restore", headers=rid_headers("req-restore"))
    assert r.status == 200
    assert await r.json() == {"id": created["id"], "slug": "spade", "version": 3}
    assert (await client.get("/api/products/spade")).status == 200
    last = (await outbox(pg))[-1]
    assert (last["type"], last["version"], last["request_id"]) == ("product.restored", 3, "req-restore")


async def test_restore_when_slug_taken_meanwhile_is_409(client) -> None:
    await category(client, "Garden Tools")
    await product(client, "Spade")
    await client.delete("/api/products/spade", headers=ADMIN)
    await product(client, "New Spade", slug="spade")
    await problem(await client.post("/api/products/spade/restore", headers=ADMIN), 409)


async def test_restore_in_a_deleted_category_is_409(client) -> None:
    await category(client, "Garden Tools")
    await product(client, "Spade")
    await client.delete("/api/products/spade", headers=ADMIN)
    await client.delete("/api/categories/garden-tools", headers=ADMIN)
    await problem(await client.post("/api/products/spade/restore", headers=ADMIN), 409)


async def test_restore_of_live_is_409_and_of_unknown_is_404(client) -> None:
    await category(client, "Garden Tools")
    await product(client, "Spade")
    await problem(await client.post("/api/products/spade/restore", headers=ADMIN), 409)
    await problem(await client.post("/api/products/ghost/restore", headers=ADMIN), 404)


# -- listings --------------------------------------------------------------------------------------


async def test_default_order_is_newest_first(client, catalog) -> None:
    r = await client.get("/api/products")
    body = await r.json()
    assert [p["slug"] for p in body["items"]] == list(reversed(catalog))
    assert body["next_cursor"] is None


def _expected(catalog: dict[str, dict[str, Any]], sort: str) -> list[str]:
    from decimal import Decimal

    slugs = list(catalog)  # creation order = id order
    key: dict[str, Any] = {
        "created_at": lambda s: catalog[s]["id"],
        "-created_at": lambda s: -catalog[s]["id"],
        "price": lambda s: (Decimal(catalog[s]["price"]), catalog[s]["id"]),
        "-price": lambda s: (-Decimal(catalog[s]["price"]), -catalog[s]["id"]),
        "name": lambda s: (catalog[s]["name"], catalog[s]["id"]),
    }
    return sorted(slugs, key=key[sort])


@pytest.mark.parametrize("sort", SORTS)
async def test_keyset_walk_covers_every_product_once_in_order(client, catalog, sort: str) -> None:
    # Given seven products with ties in price and in name
    # When they are walked two at a time in one sort order
    seen = await _walk(client, sort=sort)
    # Then each comes exactly once, in that order
    assert seen == _expected(catalog, sort)


@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({"category": "kitchen"}, lambda p: p["category"] == "kitchen"),
        ({"min_price": "9.50"}, lambda p: float(p["price"]) >= 9.5),
        ({"max_price": "9.5"}, lambda p: float(p["price"]) <= 9.5),
        ({"min_price": "1", "max_price": "20"}, lambda p: 1 <= float(p["price"]) <= 20),
        ({"in_stock": "true"}, lambda p: p["stock"] > 0),
        ({"in_stock": "false"}, lambda p: p["stock"] == 0),
        ({"category": "garden-tools", "in_stock": "true"}, lambda p: p["category"] == "garden-tools" and p["stock"]),
    ],
)
async def test_filtered_walk_returns_exactly_the_matching_products(client, catalog, params, keep) -> None:
    # Given seven products
    for sort in SORTS:
        # When a filtered listing is walked page by page in each sort order
        seen = await _walk(client, sort=sort, **params)
        # Then it holds every matching product once, in that order, and nothing else
        assert seen == [s for s in _expected(catalog, sort) if keep(catalog[s])], sort


async def test_full_text_search_matches_name_and_description(client, catalog) -> None:
    # When products are searched for words of a name and of a description
    by_name = await _walk(client, q="kettle")
    by_description = await _walk(client, q="digging")
    plural = await _walk(client, q="rakes")
    # Then the matching products come back (stemmed)
    assert by_name == ["kettle"]
    assert by_description == ["steel-spade"]
    assert sorted(plural) == ["rake", "rake-2"]


async def test_unknown_category_filter_lists_nothing(client, catalog) -> None:
    assert await _walk(client, category="ghost") == []


async def test_malformed_query_parameters_are_400_naming_the_parameter(client) -> None:
    for params, loc in (
        ({"limit": "0"}, ["query", "limit"]),
        ({"limit": "101"}, ["query", "limit"]),
        ({"limit": "abc"}, ["query", "limit"]),
        ({"sort": "bogus"}, ["query", "sort"]),
        ({"min_price": "x"}, ["query", "min_price"]),
        ({"max_price": "-1"}, ["query", "max_price"]),
        ({"min_price": "NaN"}, ["query", "min_price"]),
        ({"in_stock": "maybe"}, ["query", "in_stock"]),
        ({"q": "x" * 201}, ["query", "q"]),
        ({"cursor": "garbage"}, ["query", "cursor"]),
        ({"cursor": "é"}, ["query", "cursor"]),
    ):
        r = await client.get("/api/products", params=params)
        body = await problem(r, 400)
        assert locs(body) == [loc], params


async def test_cursor_of_another_sort_order_is_400(client, catalog) -> None:
    # Given a cursor from the price order
    page = await (await client.get("/api/products", params={"sort": "price", "limit": "1"})).json()
    # When it is used with the name order
    r = await client.get("/api/products", params={"sort": "name", "cursor": page["next_cursor"]})
    # Then it is refused
    await problem(r, 400)


async def test_tampered_cursor_is_400(client, catalog) -> None:
    page = await (await client.get("/api/products", params={"limit": "1"})).json()
    cursor = page["next_cursor"]
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    await problem(await client.get("/api/products", params={"cursor": tampered}), 400)
