"""The legacy list routes (``GET /data``, ``GET /picus/list``) answer bounded pages: a bare JSON array as before,
and ``Link: <...>; rel="next"`` while more follow."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient

from api.queries import LEGACY_MAX_BYTES, LEGACY_MAX_ITEMS
from tests.conftest import ADMIN
from tests.support.api import problem

ROUTES = ["/data", "/picus/list"]
#: Each route lists its own collection.
COLLECTION = {"/data": "data", "/picus/list": "picus"}
_NEXT = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


async def _insert(pg: asyncpg.Connection, route: str, docs: list[dict[str, Any]]) -> None:
    # Straight into the table (what the API would store), so that large collections are quick to make.
    await pg.executemany(
        "INSERT INTO records (data, collection) VALUES ($1, $2)", [(d, COLLECTION[route]) for d in docs]
    )


def _stored(route: str, items: list[Any]) -> list[Any]:
    """The stored objects: /picus/list answers each with its record "id" added."""
    return [{k: v for k, v in x.items() if k != "id"} for x in items] if route == "/picus/list" else items


async def _walk(client: TestClient, url: str) -> tuple[list[Any], list[int]]:
    """Every item over every page, following ``Link: rel="next"``; and each page's size in bytes."""
    items: list[Any] = []
    sizes: list[int] = []
    next_url: str | None = url
    while next_url is not None:
        r = await client.get(next_url)
        assert r.status == 200, await r.text()
        body = await r.read()
        sizes.append(len(body))
        page = orjson.loads(body)
        assert isinstance(page, list)
        items += page
        link = r.headers.get("Link")
        next_url = None if link is None else _NEXT.match(link)["url"]  # type: ignore[index]
        assert len(sizes) < 100, "the pages never end"
    return items, sizes


@pytest.mark.parametrize("route", ROUTES)
async def test_a_small_collection_is_one_plain_array_without_link(client: TestClient, pg, route: str) -> None:
    await _insert(pg, route, [{"k": i, "name": f"n{i}", "value": i} for i in range(3)])
    r = await client.get(route)
    assert r.status == 200
    assert "Link" not in r.headers
    page = await r.json()
    assert _stored(route, page) == [{"k": i, "name": f"n{i}", "value": i} for i in range(3)]


@pytest.mark.parametrize("route", ROUTES)
async def test_large_records_come_in_pages_of_bounded_bytes(client: TestClient, pg, route: str) -> None:
    # Given 15 records of about 1 MiB each (15.7 MB in one answer, before)
    await _insert(pg, route, [{"k": i, "blob": "z" * (1024 * 1024 - 64)} for i in range(15)])
    # When a client follows the pages
    items, sizes = await _walk(client, route)
    # Then it gets every record once, in order, and no page is much larger than the bound
    assert [d["k"] for d in _stored(route, items)] == list(range(15))
    assert len(sizes) > 1
    assert max(sizes) <= LEGACY_MAX_BYTES + 1024 * 1024


@pytest.mark.parametrize("route", ROUTES)
async def test_many_records_come_in_pages_of_at_most_the_documented_count(client: TestClient, pg, route: str) -> None:
    await _insert(pg, route, [{"n": i} for i in range(250)])
    first = await client.get(route)
    assert len(await first.json()) == LEGACY_MAX_ITEMS
    items, sizes = await _walk(client, route)
    assert [d["n"] for d in _stored(route, items)] == list(range(250))
    assert len(sizes) == 3
    # A smaller limit is honoured, and the next link keeps it
    r = await client.get(route, params={"limit": "7"})
    assert len(await r.json()) == 7
    assert "limit=7" in r.headers["Link"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"cursor": "forged"}])
async def test_a_bad_limit_or_cursor_is_400(client: TestClient, route: str, query: dict[str, str]) -> None:
    await problem(await client.get(route, params=query), 400)


async def test_a_record_written_after_a_walk_shows_on_the_last_page_at_once(client: TestClient, pg) -> None:
    # Given a walk over two pages (cached on the way)
    await _insert(pg, "/data", [{"id": i, "name": "n", "value": i} for i in range(101)])
    assert len((await _walk(client, "/data"))[0]) == 101
    # When an item is written through the API
    item = {"id": 101, "name": "n", "value": 1.5}
    assert (await client.post("/data", json=item, headers=ADMIN)).status == 201
    # Then the next walk ends with it
    items, _ = await _walk(client, "/data")
    assert [d["id"] for d in items][-2:] == [100, 101]
