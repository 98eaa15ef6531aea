"""Clients written for Django REST framework: ``search``, ``ordering``, ``is_active`` and numbered pages
(``page``, ``page_size``) answered as ``{"count", "next", "previous", "results"}`` with absolute URLs; the sorted
sets in Redis and PostgreSQL give the same answers."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from yarl import URL

from api import queries
from api.app import create_app
from shared.readmodel import keys
from shared.settings import Settings
from tests.conftest import ADMIN
from tests.support.api import category, locs, problem, product
from worker.readmodel.rebuild import rebuild

ACTIVE = 23


async def _catalog(client: TestClient) -> None:
    """23 active products in two categories (prices with ties), and 3 inactive ones."""
    await category(client, "Garden tools")
    await category(client, "Kitchen")
    for i in range(ACTIVE):
        name = f"Steel spade {i}" if i % 4 == 0 else f"Item {i}"
        await product(client, name, "garden-tools" if i % 2 else "kitchen", price=f"{i % 7}.50")
    for i in range(3):
        await product(client, f"Old rake {i}", price="3.00", is_active=False)


async def _walk(client: TestClient, first: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What a DRF client does: GET ``first``, then each ``next`` until it is null. Every page, and all results."""
    pages: list[dict[str, Any]] = []
    url: str | None = first
    while url is not None:
        assert len(pages) < 50, "the client would loop forever"
        r = await client.get(URL(url).path_qs if URL(url).absolute else url)
        assert r.status == 200, await r.text()
        pages.append(await r.json())
        url = pages[-1]["next"]
    return pages, [p for page in pages for p in page["results"]]


@pytest.fixture
async def rebuilt(client: TestClient, settings: Settings) -> TestClient:
    """The catalog, with a completed rebuild: the indexed listings come from the sorted sets."""
    await _catalog(client)
    await rebuild(settings, progress=False)
    return client


async def test_a_drf_client_following_next_sees_every_active_product_once_and_stops(rebuilt: TestClient) -> None:
    # When a DRF client pages through the products, 5 at a time
    pages, results = await _walk(rebuilt, "/api/products?page_size=5")

    # Then it stops after 5 pages, having seen every active product exactly once, newest first, and no other
    assert [len(p["results"]) for p in pages] == [5, 5, 5, 5, 3]
    assert all(p["count"] == ACTIVE for p in pages)
    slugs = [p["slug"] for p in results]
    assert len(slugs) == ACTIVE == len(set(slugs))
    assert all(p["is_active"] for p in results)
    assert [p["created_at"] for p in results] == sorted((p["created_at"] for p in results), reverse=True)
    # And next / previous are absolute URLs of the neighbouring pages, the other parameters kept
    host = str(rebuilt.make_url("/")).rstrip("/")
    assert pages[0]["previous"] is None
    assert pages[0]["next"] == f"{host}/api/products?page_size=5&page=2"
    assert pages[1]["previous"] == f"{host}/api/products?page_size=5&page=1"
    assert pages[-1]["next"] is None


async def test_the_sorted_sets_and_postgresql_give_the_same_pages(rebuilt: TestClient, settings: Settings) -> None:
    redis_client = aioredis.from_url(settings.redis_url)
    for ordering in ("-created_at", "created_at", "price", "-price"):
        for extra in ("", "&category=garden-tools", "&is_active=true"):
            first = f"/api/products?ordering={ordering}&page_size=4{extra}"
            # When the same listing is walked from the sorted sets, then with Redis emptied (PostgreSQL answers)
            from_redis, _ = await _walk(rebuilt, first)
            await redis_client.flushdb()
            from_pg, _ = await _walk(rebuilt, first)
            await rebuild(settings, progress=False)
            # Then every page is the same, count included
            assert from_redis == from_pg, (ordering, extra)
            assert from_redis[0]["count"] == (11 if extra.startswith("&category") else ACTIVE)
    await redis_client.aclose()


async def test_minus_price_orders_by_price_descending(rebuilt: TestClient) -> None:
    _, results = await _walk(rebuilt, "/api/products?ordering=-price&page_size=100")
    prices = [(float(p["price"]), p["id"]) for p in results]
    assert prices == sorted(prices, reverse=True)
    assert len(prices) == ACTIVE


async def test_search_finds_products_by_a_word_and_counts_them(rebuilt: TestClient) -> None:
    # When a DRF client searches for "spade" (as `search`, DRF's name for `q`)
    pages, results = await _walk(rebuilt, "/api/products?search=spade&page_size=2")
    # Then it finds the six spades (i = 0, 4, ... 20), counted, and the same as `q` finds
    assert pages[0]["count"] == 6
    assert sorted(p["name"] for p in results) == sorted(f"Steel spade {i}" for i in range(0, ACTIVE, 4))
    by_q = await (await rebuilt.get("/api/products", params={"q": "spade", "page": "1", "page_size": "2"})).json()
    assert (by_q["count"], by_q["results"]) == (pages[0]["count"], pages[0]["results"])


async def test_inactive_products_are_listed_only_when_asked_for(rebuilt: TestClient, settings: Settings) -> None:
    # Then is_active=false shows the three inactive products only
    pages, results = await _walk(rebuilt, "/api/products?is_active=false&page=1")
    assert pages[0]["count"] == 3
    assert {p["slug"] for p in results} == {"old-rake-0", "old-rake-1", "old-rake-2"}


async def test_the_keyset_listing_shows_active_products_only(rebuilt: TestClient, settings: Settings) -> None:
    # The keyset listing (the sorted sets, then PostgreSQL) shows no inactive product unless asked for
    redis_client = aioredis.from_url(settings.redis_url)
    for _ in range(2):
        page = await (await rebuilt.get("/api/products", params={"limit": "100"})).json()
        assert len(page["items"]) == ACTIVE
        assert all(p["is_active"] for p in page["items"])
        await redis_client.flushdb()
    await redis_client.aclose()
    # And the product itself is still public by its slug
    assert (await rebuilt.get("/api/products/old-rake-0")).status == 200


async def test_a_product_made_inactive_leaves_the_listings_at_once_and_comes_back(rebuilt: TestClient) -> None:
    # When a product is deactivated, the listings from the sorted sets no longer show it; reactivated, they do
    assert (await rebuilt.patch("/api/products/item-1", json={"is_active": False}, headers=ADMIN)).status == 200
    page = await (await rebuilt.get("/api/products", params={"page_size": "100"})).json()
    assert page["count"] == ACTIVE - 1
    assert "item-1" not in {p["slug"] for p in page["results"]}
    inactive = await (await rebuilt.get("/api/products", params={"is_active": "false", "limit": "100"})).json()
    assert "item-1" in {p["slug"] for p in inactive["items"]}
    assert (await rebuilt.patch("/api/products/item-1", json={"is_active": True}, headers=ADMIN)).status == 200
    page = await (await rebuilt.get("/api/products", params={"page_size": "100", "category": "garden-tools"})).json()
    assert "item-1" in {p["slug"] for p in page["results"]}


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page=1.5", "page"),
        ("page=", "page"),
        ("page=%2B2", "page"),
        ("page_size=0", "page_size"),
        ("page_size=101", "page_size"),
        ("page_size=abc", "page_size"),
        ("page=1&ordering=-name", "ordering"),
        ("page=1&ordering=id", "ordering"),
        ("page=1&ordering=price,-created_at", "ordering"),
        ("ordering=-name", "ordering"),
        ("page=2&cursor=abc", "cursor"),
        ("page_size=5&cursor=abc", "cursor"),
        ("sort=price&ordering=-price", "ordering"),
        ("q=spade&search=rake", "search"),
        ("page=1&is_active=maybe", "is_active"),
    ],
)
async def test_a_bad_numbered_page_parameter_is_400_naming_it(client: TestClient, query: str, name: str) -> None:
    body = await problem(await client.get(f"/api/products?{query}"), 400)
    assert locs(body) == [["query", name]]


async def test_a_page_past_the_last_is_404_invalid_page_as_drf_answers(rebuilt: TestClient) -> None:
    for page in ("6", "999999999", "1" + "0" * 30):
        body = await problem(await rebuilt.get(f"/api/products?page={page}&page_size=5"), 404)
        assert body["detail"] == "Invalid page."
    # And `last` is the last page, as DRF takes it; an empty listing has one empty page
    last = await (await rebuilt.get("/api/products?page=last&page_size=5")).json()
    assert (len(last["results"]), last["next"]) == (3, None)
    assert "page=4" in last["previous"]
    empty = await (await rebuilt.get("/api/products?page=1&category=nowhere")).json()
    assert empty == {"count": 0, "next": None, "previous": None, "results": []}


async def test_where_postgresql_counts_it_counts_and_pages_within_a_window(
    rebuilt: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a window of 5 where PostgreSQL answers (full-text search)
    monkeypatch.setattr(queries, "NUMBERED_WINDOW", 5)
    # When a DRF client pages through 23 products in name order (PostgreSQL's listing), 2 at a time
    pages, results = await _walk(rebuilt, "/api/products?ordering=name&page_size=2")
    # Then the count says 5 and the client stops after them; a page past the window is 404
    assert [p["count"] for p in pages] == [5, 5, 5]
    assert [p["name"] for p in results] == sorted(p["name"] for p in results)
    assert len(results) == 5
    await problem(await rebuilt.get("/api/products?ordering=name&page_size=2&page=4"), 404)
    # While the sorted sets count and page exactly at any depth
    exact = await (await rebuilt.get("/api/products?page=12&page_size=2")).json()
    assert (exact["count"], len(exact["results"]), exact["next"]) == (ACTIVE, 1, None)


async def test_a_generated_client_limit_sizes_the_numbered_page(rebuilt: TestClient) -> None:
    # A generated client sends `limit` and `sort` defaults with every call: page_size wins over limit
    page = await (await rebuilt.get("/api/products?limit=20&sort=-created_at&page=2&page_size=10")).json()
    assert len(page["results"]) == 10
    page = await (await rebuilt.get("/api/products?limit=7&sort=-created_at&page=2")).json()
    assert len(page["results"]) == 7
    assert page["next"].endswith("limit=7&sort=-created_at&page=3")


async def test_absolute_urls_follow_a_trusted_proxy_only(aiohttp_client, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example"}
    for trusted, origin in (("", None), ("127.0.0.1/32", "https://shop.example")):
        client = await aiohttp_client(create_app(settings.model_copy(update={"trusted_proxies": trusted})))
        if not trusted:
            await _catalog(client)
        page = await (await client.get("/api/products?page_size=5", headers=forwarded)).json()
        expected = origin or str(client.make_url("/")).rstrip("/")
        assert page["next"] == f"{expected}/api/products?page_size=5&page=2"
    # And a Host header that names no host is a 400, not a link made of it
    body = await problem(await client.get("/api/products?page=1", headers={"Host": "a b"}), 400)
    assert locs(body) == [["header", "Host"]]


async def test_a_read_model_of_the_older_format_serves_no_listing_until_rebuilt(
    rebuilt: TestClient, settings: Settings
) -> None:
    # Given a Redis whose sorted sets were built before they held active products only (ready: 1)
    redis_client = aioredis.from_url(settings.redis_url)
    await redis_client.hset(keys.READY, "products", "1")
    await redis_client.zadd(keys.product_index("created"), {keys.member(ACTIVE + 1): 9e15})
    # Then listings come from PostgreSQL (active products only), and `rebuild --if-missing` rebuilds
    page = await (await rebuilt.get("/api/products", params={"page_size": "100"})).json()
    assert page["count"] == ACTIVE
    assert await rebuild(settings, if_missing=True, progress=False) != {}
    assert await redis_client.hget(keys.READY, "products") == keys.FORMAT.encode()
    assert await redis_client.zcard(keys.product_index("created")) == ACTIVE
    await redis_client.aclose()


async def test_a_rebuild_takes_out_the_inactive_products_an_older_format_left_in_the_sets(
    rebuilt: TestClient, settings: Settings
) -> None:
    # Given a Redis in this layout whose sets hold an inactive product (format 2 of the layout indexed every live
    # product), its projection stored at the version PostgreSQL holds and read later than a rebuild will read it
    redis_client = aioredis.from_url(settings.redis_url)
    inactive = keys.member(ACTIVE + 1)
    meta = await redis_client.hget(keys.product_meta(ACTIVE + 1), inactive)
    version, _, rest = meta.split(b":", 2)
    await redis_client.hset(keys.product_meta(ACTIVE + 1), inactive, b":".join([version, b"%d" % 2**62, rest]))
    for index in ("created", "price"):
        await redis_client.zadd(keys.product_index(index), {inactive: 1})
    await redis_client.hset(keys.READY, "products", "2")
    # When the read model is rebuilt, as `make run` does (only if missing)
    assert await rebuild(settings, if_missing=True, progress=False) != {}
    # Then the sets hold the active products only, and a listing from them counts and shows those
    assert [await redis_client.zcard(keys.product_index(i)) for i in ("created", "price")] == [ACTIVE, ACTIVE]
    for ordering in ("-created_at", "price"):
        page = await (await rebuilt.get("/api/products", params={"page_size": "100", "ordering": ordering})).json()
        assert page["count"] == len(page["results"]) == ACTIVE
        assert all(p["is_active"] for p in page["results"])
    await redis_client.aclose()


async def test_categories_page_the_same_way(client: TestClient) -> None:
    # Given 7 categories, one of them deleted
    for i in range(7):
        await category(client, f"Shelf {i}")
    assert (await client.delete("/api/categories/shelf-3", headers=ADMIN)).status == 204
    # When a DRF client pages through them, 4 at a time
    pages, results = await _walk(client, "/api/categories?page_size=4")
    # Then it sees the 6 live ones once each, by id, counted, and stops; past the last page is 404
    assert [p["count"] for p in pages] == [6, 6]
    assert [c["slug"] for c in results] == [f"shelf-{i}" for i in (0, 1, 2, 4, 5, 6)]
    assert (await problem(await client.get("/api/categories?page=3&page_size=4"), 404))["detail"] == "Invalid page."
    assert locs(await problem(await client.get("/api/categories?page=1&cursor=x"), 400)) == [["query", "cursor"]]
    # And without page or page_size the keyset page is as it was
    assert set(await (await client.get("/api/categories")).json()) == {"items", "next_cursor"}
