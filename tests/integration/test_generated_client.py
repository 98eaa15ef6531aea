"""A client generated from the live OpenAPI document (openapi-python-client), driven against a running API.

Generated clients send every ``default`` a schema carries whenever their caller leaves the field out: when the
merge-patch schemas carried ``ProductIn``'s defaults, a rename through such a client set a product's stock from
7 to 0 and reactivated it. Here the client is generated as a user would generate it, from ``/api/openapi.json``
of the API process, and a PATCH of one field must leave every other field as it was.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest

from shared.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.support.processes import api_process

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "stockroom_generated_client"
#: No post-generation hooks: the generator would run ruff over the code, which changes nothing it does.
CONFIG = "post_hooks: []\n"


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[Path]:
    """Where the generated package goes; it is dropped from ``sys.modules`` and ``sys.path`` afterwards."""
    sys.path.insert(0, str(tmp_path))
    yield tmp_path / PACKAGE
    sys.path.remove(str(tmp_path))
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]


async def _generate(url: str, out: Path) -> ModuleType:
    async with aiohttp.ClientSession() as session, session.get(url + "/api/openapi.json") as r:
        assert r.status == 200
        document = await r.read()
    spec, config = out.parent / "openapi.json", out.parent / "generator.yaml"
    spec.write_bytes(document)
    config.write_text(CONFIG)
    proc = await asyncio.create_subprocess_exec(
        str(GENERATOR),
        *("generate", "--path", str(spec), "--output-path", str(out), "--meta", "none", "--config", str(config)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    report, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, report.decode(errors="replace")
    importlib.invalidate_caches()
    return importlib.import_module(PACKAGE)


class Api:
    """The generated package's operations and models, by the names the document gives them."""

    def __init__(self, url: str) -> None:
        self.client = importlib.import_module(PACKAGE).AuthenticatedClient(base_url=url, token=ADMIN_KEY)

    def op(self, tag: str, name: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.api.{tag}.{name}").asyncio_detailed

    def model(self, name: str) -> Any:
        return getattr(importlib.import_module(f"{PACKAGE}.models"), name)

    async def call(self, tag: str, name: str, *args: Any, **kwargs: Any) -> Any:
        return await self.op(tag, name)(*args, client=self.client, **kwargs)


def _fields(out: Any) -> dict[str, Any]:
    """A representation's fields, less those every write moves on."""
    fields: dict[str, Any] = out.to_dict()
    for moving in ("version", "updated_at"):
        fields.pop(moving)
    return fields


def _problem(resp: Any, status: HTTPStatus) -> None:
    assert resp.status_code == status, (resp.status_code, resp.content)
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.parsed.status == status


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_generated_client_writes_only_the_fields_it_sets(settings: Settings, tmp_path: Path, generated) -> None:  # type: ignore[no-untyped-def]
    # Given the API as a process of its own, and a client generated from the document it serves
    async with api_process(settings, tmp_path / "api.log") as proc:
        await _generate(proc.url, generated)
        api = Api(proc.url)
        async with api.client:
            await _categories(api)
            await _products(api)


async def _categories(api: Api) -> None:
    CategoryIn, CategoryPatch = api.model("CategoryIn"), api.model("CategoryPatch")

    # Create, then the same slug again (409), then an empty name (422)
    created = await api.call("categories", "categories_create", body=CategoryIn(name="Garden tools", description="d"))
    assert created.status_code == HTTPStatus.CREATED, created.content
    assert created.parsed.slug == "garden-tools"
    _problem(
        await api.call("categories", "categories_create", body=CategoryIn(name="X", slug="garden-tools")),
        HTTPStatus.CONFLICT,
    )
    _problem(
        await api.call("categories", "categories_create", body=CategoryIn(name="")), HTTPStatus.UNPROCESSABLE_ENTITY
    )
    child = await api.call(
        "categories", "categories_create", body=CategoryIn(name="Spades", parent="garden-tools", description="sharp")
    )
    assert child.status_code == HTTPStatus.CREATED

    # Read; replace with the ETag the creation returned
    read = await api.call("categories", "categories_get", "spades")
    assert read.status_code == HTTPStatus.OK
    assert read.headers["ETag"] == child.headers["ETag"]
    before = _fields(read.parsed)
    replaced = await api.call(
        "categories",
        "categories_replace",
        "spades",
        body=CategoryIn(name="Spades", parent="garden-tools", description="sharp"),
        if_match=child.headers["ETag"],
    )
    assert replaced.status_code == HTTPStatus.OK, replaced.content

    # Patch one field, chained on the ETag the replace returned: every other field stays as it was
    patched = await api.call(
        "categories",
        "categories_patch",
        "spades",
        body=CategoryPatch(name="Spades and forks"),
        if_match=replaced.headers["ETag"],
    )
    assert patched.status_code == HTTPStatus.OK, patched.content
    after = await api.call("categories", "categories_get", "spades")
    assert after.headers["ETag"] == patched.headers["ETag"]
    assert _fields(after.parsed) == {**before, "name": "Spades and forks"}
    assert (after.parsed.parent, after.parsed.description) == ("garden-tools", "sharp")

    # A stale ETag is 412; delete; a deleted category is 404; restore brings it back as it was
    _problem(
        await api.call(
            "categories",
            "categories_patch",
            "spades",
            body=CategoryPatch(description="x"),
            if_match=child.headers["ETag"],
        ),
        HTTPStatus.PRECONDITION_FAILED,
    )
    deleted = await api.call("categories", "categories_delete", "spades", if_match=patched.headers["ETag"])
    assert deleted.status_code == HTTPStatus.NO_CONTENT, deleted.content
    _problem(await api.call("categories", "categories_get", "spades"), HTTPStatus.NOT_FOUND)
    restored = await api.call("categories", "categories_restore", "spades")
    assert restored.status_code == HTTPStatus.OK, restored.content
    back = await api.call("categories", "categories_get", "spades")
    assert back.headers["ETag"] == restored.headers["ETag"]
    assert {**_fields(back.parsed)} == {**before, "name": "Spades and forks"}


async def _products(api: Api) -> None:
    ProductIn, ProductPatch = api.model("ProductIn"), api.model("ProductPatch")
    attributes = api.model("ProductInAttributes").from_dict({"colour": "red", "sizes": [1, 2]})

    def spade(**changes: Any) -> Any:
        fields = {
            "name": "Steel spade",
            "description": "ash handle",
            "price": "19.99",
            "currency": "USD",
            "category": "garden-tools",
            "stock": 7,
            "attributes": attributes,
            "is_active": False,
        }
        return ProductIn(**{**fields, **changes})

    # Create an inactive product with stock 7 in dollars; the same slug again is 409, a negative stock 422
    created = await api.call("products", "products_create", body=spade())
    assert created.status_code == HTTPStatus.CREATED, created.content
    assert created.headers["ETag"] == '"1"'
    _problem(await api.call("products", "products_create", body=spade(slug="steel-spade")), HTTPStatus.CONFLICT)
    _problem(await api.call("products", "products_create", body=spade(stock=-1)), HTTPStatus.UNPROCESSABLE_ENTITY)

    # Read it; replace it (the same fields, another description) on the creation's ETag
    read = await api.call("products", "products_get", "steel-spade")
    assert read.status_code == HTTPStatus.OK
    replaced = await api.call(
        "products",
        "products_replace",
        "steel-spade",
        body=spade(description="oak handle"),
        if_match=created.headers["ETag"],
    )
    assert replaced.status_code == HTTPStatus.OK, replaced.content
    assert replaced.headers["ETag"] == '"2"'
    before = _fields((await api.call("products", "products_get", "steel-spade")).parsed)
    assert (before["stock"], before["is_active"], before["currency"]) == (7, False, "USD")

    # When one field is patched (a rename), chained on the replace's ETag
    patched = await api.call(
        "products",
        "products_patch",
        "steel-spade",
        body=ProductPatch(name="Steel spade, long"),
        if_match=replaced.headers["ETag"],
    )

    # Then only the name changed: stock 7 stays 7, inactive stays inactive, dollars stay dollars
    assert patched.status_code == HTTPStatus.OK, patched.content
    after = await api.call("products", "products_get", "steel-spade")
    assert after.headers["ETag"] == patched.headers["ETag"] == '"3"'
    assert _fields(after.parsed) == {**before, "name": "Steel spade, long"}

    # A stale ETag is 412 and changes nothing; an unknown slug is 404
    _problem(
        await api.call(
            "products", "products_patch", "steel-spade", body=ProductPatch(stock=0), if_match=created.headers["ETag"]
        ),
        HTTPStatus.PRECONDITION_FAILED,
    )
    _problem(await api.call("products", "products_get", "no-such-spade"), HTTPStatus.NOT_FOUND)

    # Delete, 404 while deleted, restore: back with every field as it was
    deleted = await api.call("products", "products_delete", "steel-spade", if_match=patched.headers["ETag"])
    assert deleted.status_code == HTTPStatus.NO_CONTENT, deleted.content
    _problem(await api.call("products", "products_get", "steel-spade"), HTTPStatus.NOT_FOUND)
    restored = await api.call("products", "products_restore", "steel-spade", if_match='"4"')
    assert restored.status_code == HTTPStatus.OK, restored.content
    assert restored.headers["ETag"] == '"5"'
    back = await api.call("products", "products_get", "steel-spade")
    assert _fields(back.parsed) == {**before, "name": "Steel spade, long"}

    # The listing: keyset pages as before (the inactive spade is listed only when asked for), and numbered pages
    # in Django REST framework's shape, each read into its own model
    ProductPage, NumberedPage = api.model("ProductPage"), api.model("ProductNumberedPage")
    keyset = await api.call("products", "products_list")
    assert keyset.status_code == HTTPStatus.OK, keyset.content
    assert isinstance(keyset.parsed, ProductPage)
    assert keyset.parsed.items == []
    inactive = await api.call("products", "products_list", is_active=False, page_size=5)
    assert isinstance(inactive.parsed, NumberedPage), inactive.content
    assert (inactive.parsed.count, [p.slug for p in inactive.parsed.results]) == (1, ["steel-spade"])
    assert inactive.parsed.to_dict()["next"] is None
    _problem(await api.call("products", "products_list", page=2), HTTPStatus.NOT_FOUND)
