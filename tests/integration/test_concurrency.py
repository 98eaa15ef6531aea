"""Races: of two concurrent writes at one version exactly one wins; concurrent slugs never collide."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from decimal import Decimal

from aiohttp import ClientResponse

from shared.store import categories as cat_repo
from shared.store import products as prod_repo
from tests.conftest import ADMIN
from tests.support.api import category, outbox, product, record


async def deleted_spade(client) -> None:
    """A live category "garden-tools" with a deleted product "spade" in it."""
    await category(client, "Garden Tools")
    await product(client, "Spade")
    assert (await client.delete("/api/products/spade", headers=ADMIN)).status == 204


def at(version: str) -> dict[str, str]:
    return {**ADMIN, "If-Match": f'"{version}"'}


async def test_two_puts_at_one_version_exactly_one_wins(client, pg) -> None:
    # Given a category at version 1
    await category(client, "Tools")
    # When two replacements naming version 1 race
    a, b = await asyncio.gather(
        client.put("/api/categories/tools", json={"name": "A"}, headers=at("1")),
        client.put("/api/categories/tools", json={"name": "B"}, headers=at("1")),
    )
    # Then one is 200 and the other 412, and exactly one update event exists
    assert sorted([a.status, b.status]) == [200, 412]
    winner = "A" if a.status == 200 else "B"
    assert (await (await client.get("/api/categories/tools")).json())["name"] == winner
    assert [e["type"] for e in await outbox(pg)] == ["category.created", "category.updated"]


async def test_two_patches_at_one_version_exactly_one_wins(client, pg) -> None:
    await category(client, "Garden Tools")
    await product(client, "Spade")
    results = await asyncio.gather(
        client.patch("/api/products/spade", json={"stock": 1}, headers=at("1")),
        client.patch("/api/products/spade", json={"stock": 2}, headers=at("1")),
    )
    assert sorted(r.status for r in results) == [200, 412]
    assert await pg.fetchval("SELECT version FROM products") == 2


async def test_two_record_puts_at_one_version_exactly_one_wins(client, pg) -> None:
    rid = (await record(client, {"n": 0}))["id"]
    results = await asyncio.gather(*(client.put(f"/api/records/{rid}", json={"n": i}, headers=at("1")) for i in (1, 2)))
    assert sorted(r.status for r in results) == [200, 412]
    assert [e["version"] for e in await outbox(pg)] == [1, 2]


async def test_two_deletes_at_one_version_exactly_one_wins(client) -> None:
    await category(client, "Tools")
    results = await asyncio.gather(*(client.delete("/api/categories/tools", headers=at("1")) for _ in range(2)))
    assert sorted(r.status for r in results) in ([204, 404], [204, 412])


async def test_concurrent_patches_without_if_match_all_apply(client, pg) -> None:
    # Given a product
    await category(client, "Garden Tools")
    await product(client, "Spade", attributes={})
    # When ten merge patches on different attributes race without If-Match
    results = await asyncio.gather(
        *(client.patch("/api/products/spade", json={"attributes": {f"k{i}": i}}, headers=ADMIN) for i in range(10))
    )
    # Then none is lost: each is applied on top of the others, one version each
    assert [r.status for r in results] == [200] * 10
    body = await (await client.get("/api/products/spade")).json()
    assert body["attributes"] == {f"k{i}": i for i in range(10)}
    assert body["version"] == 11


async def test_concurrent_creates_with_one_name_get_distinct_slugs(client, pg) -> None:
    # When ten categories with the same name are created at once
    results = await asyncio.gather(
        *(client.post("/api/categories", json={"name": "Tools"}, headers=ADMIN) for _ in range(10))
    )
    # Then all succeed with distinct slugs tools, tools-2 ... tools-10
    assert [r.status for r in results] == [201] * 10
    slugs = sorted([(await r.json())["slug"] for r in results])
    assert slugs == sorted(["tools", *(f"tools-{n}" for n in range(2, 11))])
    assert len(await outbox(pg)) == 10


async def test_concurrent_creates_with_one_explicit_slug_one_wins(client) -> None:
    results = await asyncio.gather(
        *(client.post("/api/categories", json={"name": f"T{i}", "slug": "tools"}, headers=ADMIN) for i in range(3))
    )
    assert sorted(r.status for r in results) == [201, 409, 409]


async def test_product_create_racing_category_delete_leaves_no_orphan(client, pg) -> None:
    # Given a category
    await category(client, "Garden Tools")
    # When a product is created while the category is deleted
    made, deleted = await asyncio.gather(
        client.post("/api/products", json={"name": "S", "price": "1", "category": "garden-tools"}, headers=ADMIN),
        client.delete("/api/categories/garden-tools", headers=ADMIN),
    )
    # Then never both: no live product sits in a deleted category
    assert (made.status, deleted.status) in ((201, 409), (422, 204))
    orphans = await pg.fetchval(
        """SELECT count(*) FROM products p JOIN categories c ON c.id = p.category_id
           WHERE p.deleted_at IS NULL AND c.deleted_at IS NOT NULL"""
    )
    assert orphans == 0


async def while_uncommitted(pg, write: Awaitable[object], request: Awaitable[ClientResponse]) -> ClientResponse:
    """Run ``write`` on ``pg`` in a transaction, send ``request`` meanwhile, commit, then return its response.

    The request must wait for the commit (it needs a row the write has locked).
    """
    tx = pg.transaction()
    await tx.start()
    assert await write is not None
    sent = asyncio.ensure_future(request)
    await asyncio.sleep(0.3)
    assert not sent.done()  # it waits for the uncommitted write
    await tx.commit()
    return await sent


async def test_category_delete_waiting_on_an_uncommitted_product_insert_refuses(client, pg) -> None:
    # Given a category
    await category(client, "Garden Tools")
    fields = {
        "slug": "spade",
        "name": "Spade",
        "description": None,
        "price": Decimal("1"),
        "currency": "EUR",
        "category": "garden-tools",
        "stock": 0,
        "attributes": {},
        "is_active": True,
    }
    # When it is deleted while a product insert into it has not yet committed
    deleted = await while_uncommitted(
        pg,
        prod_repo.insert(pg, fields=fields, request_id="r"),
        client.delete("/api/categories/garden-tools", headers=ADMIN),
    )
    # Then the delete sees the product and refuses: no live product sits in a deleted category
    assert deleted.status == 409
    assert "1 live product" in (await deleted.json())["detail"]
    assert await pg.fetchval("SELECT deleted_at FROM categories WHERE slug = 'garden-tools'") is None


async def test_category_delete_waiting_on_an_uncommitted_product_restore_refuses(client, pg) -> None:
    # Given a category with a deleted product
    await deleted_spade(client)
    # When the category is deleted while a restore of the product has not yet committed
    deleted = await while_uncommitted(
        pg, prod_repo.restore(pg, "spade", None, "r"), client.delete("/api/categories/garden-tools", headers=ADMIN)
    )
    # Then the delete sees the restored product and refuses
    assert deleted.status == 409
    assert await pg.fetchval("SELECT deleted_at FROM categories WHERE slug = 'garden-tools'") is None


async def test_product_restore_after_a_concurrent_category_delete_is_refused(client, pg) -> None:
    # Given a category with a deleted product
    await deleted_spade(client)
    # When the product is restored while a delete of the category has not yet committed
    restored = await while_uncommitted(
        pg,
        cat_repo.soft_delete(pg, "garden-tools", None, "r"),
        client.post("/api/products/spade/restore", headers=ADMIN),
    )
    # Then the restore is refused: its category is gone
    assert restored.status == 409
    assert "category" in (await restored.json())["detail"]
    assert await pg.fetchval("SELECT deleted_at FROM products WHERE slug = 'spade'") is not None
