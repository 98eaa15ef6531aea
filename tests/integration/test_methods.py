"""Methods: ``HEAD`` answers for every ``GET`` route, and a 405's ``Allow`` names exactly what the path takes.

The walk goes over the app's own router, so a route added later is checked too.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from api.app import create_app
from shared.settings import Settings
from tests.conftest import ADMIN
from tests.support import api
from tests.support import images as gen

#: Every method a client might send; aiohttp answers others (and malformed ones) itself.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: A value for each path parameter, of the shape its route takes.
VALUES = {"slug": "garden-tools", "id": "1", "username": "Ann", "key": "originals/ab/cd/x.jpg", "name": "x.css"}
_PARAM = re.compile(r"\{(\w+)(?::[^{}]*)?\}")


def _concrete(template: str) -> str:
    return _PARAM.sub(lambda m: VALUES[m.group(1)], template)


def _routes(app: web.Application) -> dict[str, set[str]]:
    """Concrete path -> the methods the router has for that path's template (the fallback route left out)."""
    methods: dict[str, set[str]] = defaultdict(set)
    for resource in app.router.resources():
        info = resource.get_info()
        template = info.get("formatter") or info.get("path")
        if template == "*":
            continue
        for route in resource:
            methods[_concrete(template)].add(route.method)
    return methods


@pytest.fixture
async def unlimited(aiohttp_client, settings: Settings) -> TestClient:  # type: ignore[no-untyped-def]
    # The walk sends a few hundred requests at once: rate limits (tested elsewhere) would answer 429s.
    client: TestClient = await aiohttp_client(create_app(settings.model_copy(update={"rate_limit_enabled": False})))
    return client


async def test_every_path_answers_its_own_methods_and_405_with_exactly_those_for_others(unlimited) -> None:
    client: TestClient = unlimited
    table = _routes(client.app)
    assert {"/picus/list", "/picus/put", "/api/products/garden-tools/restore"} <= set(table)
    wrong: list[str] = []
    for path, taken in sorted(table.items()):
        for method in METHODS:
            r = await client.request(method, path, headers=ADMIN)
            await r.read()
            if method in taken:
                if r.status == 405:
                    wrong.append(f"{method} {path}: 405, though a route takes it")
            elif r.status != 405:
                wrong.append(f"{method} {path}: {r.status}, not 405")
            elif set(r.headers["Allow"].split(",")) != taken:
                wrong.append(f"{method} {path}: Allow {r.headers['Allow']}, the path takes {sorted(taken)}")
    assert wrong == []


@pytest.mark.parametrize("path", ["/picus/list", "/picus/put", "/picus/list/", "/picus/put/"])
async def test_delete_on_the_legacy_list_and_put_paths_is_405(client: TestClient, path: str) -> None:
    r = await client.delete(path, headers=ADMIN)

    await api.problem(r, 405)
    assert r.headers["Allow"] == ("GET,HEAD" if "list" in path else "POST")


async def test_head_answers_every_get_route_as_get_does_without_a_body(unlimited) -> None:
    # Given one of everything, so that the GET routes find what they name (an image for /media)
    client: TestClient = unlimited
    await api.category(client)
    await api.product(client, "Steel spade", attributes={"n": 1})
    await api.record(client, {"title": "anything"})
    assert (await client.put("/hello/Ann", json={"dateOfBirth": "1990-05-17"}, headers=ADMIN)).status == 204
    up = await client.put(
        "/api/products/steel-spade/image", data=gen.jpeg(), headers={**ADMIN, "Content-Type": "image/jpeg"}
    )
    original = (await up.json())["image"]["original"]
    values = {**VALUES, "key": original.removeprefix("/media/"), "name": "swagger-ui.css"}
    paths = {
        _PARAM.sub(lambda m: values[m.group(1)], template.replace("/api/products/{slug}", "/api/products/steel-spade"))
        for template, methods in _routes_by_template(client.app).items()
        if "GET" in methods
    }
    assert len(paths) >= 40

    # When each is asked with HEAD and with GET
    for path in sorted(paths):
        got = await client.get(path)
        body = await got.read()
        head = await client.head(path)

        # Then HEAD has GET's status and headers, and no body
        assert head.status == got.status, path
        assert await head.read() == b"", path
        for name in ("Content-Type", "ETag", "Cache-Control", "Last-Modified"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
        if not path.startswith("/metrics"):  # its counts move between the two requests
            assert int(head.headers["Content-Length"]) == len(body), path


def _routes_by_template(app: web.Application) -> dict[str, set[str]]:
    methods: dict[str, set[str]] = defaultdict(set)
    for resource in app.router.resources():
        info = resource.get_info()
        template = info.get("formatter") or info.get("path")
        if template != "*":
            methods[template].update(route.method for route in resource)
    return methods
