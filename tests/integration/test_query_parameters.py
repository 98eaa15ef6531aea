"""A query parameter a route does not declare (in the OpenAPI document) is 400, naming it: never ignored."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from api.openapi import SPECS
from api.routes import ROUTES
from tests.conftest import ADMIN
from tests.support.api import locs, problem

#: Every documented GET route, with its path parameters filled in.
GETS = [
    path.replace("{slug}", "x").replace("{id:[0-9]+}", "1").replace("{username}", "ann").replace("{key:.+}", "k")
    for method, path, handler in ROUTES
    if method == "GET" and handler in SPECS
]


@pytest.mark.parametrize("path", GETS)
async def test_an_unknown_query_parameter_is_400_naming_it_on_every_route(client: TestClient, path: str) -> None:
    body = await problem(await client.get(path, params={"colour": "red"}), 400)
    assert "'colour'" in body["detail"]
    assert locs(body) == [["query", "colour"]]


@pytest.mark.parametrize(
    ("path", "names"),
    [("/api/categories", ["colour"]), ("/api/products", ["offset", "fields"]), ("/data", ["ordering"])],
)
async def test_what_clients_of_other_services_send_is_refused_not_ignored(
    client: TestClient, path: str, names: list[str]
) -> None:
    # What a route does not take is named, every one: DRF's LimitOffsetPagination ``offset`` (a client would loop
    # on the first page forever), its field selection, ``ordering`` where there is no order to choose
    body = await problem(await client.get(path, params=dict.fromkeys(names, "2")), 400)
    assert locs(body) == [["query", n] for n in sorted(names)]


async def test_declared_parameters_still_work_and_writes_are_checked_too(client: TestClient) -> None:
    assert (await client.get("/api/products", params={"limit": "5", "sort": "price", "q": "x"})).status == 200
    r = await client.post("/api/categories?dry_run=1", json={"name": "Tools"}, headers=ADMIN)
    await problem(r, 400)
    assert (await client.get("/api/categories/tools")).status == 404
