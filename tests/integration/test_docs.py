"""The API's documentation: the OpenAPI document, Swagger UI and ReDoc, served by the API itself.

The UI tests start the app on a real TCP port and render the pages in headless Chromium (Debian's package;
scripts/services.sh installs it), with every host but 127.0.0.1 unresolvable: a page that needed a CDN would
render nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import re
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from api.app import create_app
from api.handlers.docs import CSP
from shared.settings import Settings

#: Debian's chromium (scripts/services.sh); GitHub's Ubuntu runners have Google Chrome instead. CHROMIUM overrides.
CHROMIUM = os.environ.get("CHROMIUM") or next(
    (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """``app`` served on a free port of 127.0.0.1 (in this loop); yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def dump_dom(url: str, profile: Path) -> str:
    """The DOM of ``url`` after its scripts ran, as headless Chromium renders it (no host but 127.0.0.1)."""
    assert CHROMIUM, "chromium is not installed (scripts/services.sh installs it)"
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=45)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


# -- the document -----------------------------------------------------------------------------------------


async def test_openapi_document_is_valid_openapi_3_1(client: TestClient) -> None:
    r = await client.get("/api/openapi.json")

    assert r.status == 200
    assert r.content_type == "application/json"
    doc = await r.json()
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises on any fault against the OpenAPI 3.1 schema


async def test_openapi_document_lists_every_operation_once(client: TestClient) -> None:
    doc = await (await client.get("/api/openapi.json/")).json()

    assert "/api/products/{slug}/image" in doc["paths"]
    assert set(doc["paths"]["/api/products/{slug}"]) == {"get", "put", "patch", "delete"}
    assert "/media/{key}" in doc["paths"]
    assert not [p for p in doc["paths"] if p.endswith("/")], "trailing-slash twins are not operations"
    assert not [p for p in doc["paths"] if p.startswith(("/api/docs", "/api/redoc", "/api/openapi"))]


async def test_docs_pages_are_404_when_turned_off(aiohttp_client, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(create_app(settings.model_copy(update={"docs_enabled": False})))

    for path in ("/api/openapi.json", "/api/docs", "/api/redoc", "/api/docs/static/swagger-ui-bundle.js"):
        r = await client.get(path)
        assert r.status == 404, path
        assert r.content_type == "application/problem+json"


async def test_ui_pages_allow_this_origin_only(client: TestClient) -> None:
    for path in ("/api/docs", "/api/redoc"):
        r = await client.get(path)
        assert r.status == 200
        assert r.headers["Content-Security-Policy"] == CSP
        page = await r.text()
        assert "https://" not in page, "no asset from elsewhere"
        assert "http://" not in page, "no asset from elsewhere"
    for path in ("/api/docs/static/swagger-ui-bundle.js", "/api/docs/static/swagger-ui.css"):
        assert (await client.get(path)).status == 200
    assert (await client.get("/api/redoc/static/redoc.standalone.js")).status == 200


async def test_asset_names_outside_the_list_are_404(client: TestClient) -> None:
    for path in ("/api/docs/static/..%2F..%2Fapp.py", "/api/docs/static/index.html", "/api/redoc/static/init.js"):
        assert (await client.get(path)).status == 404, path


# -- the UIs, rendered ------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_swagger_ui_renders_every_operation(settings: Settings, tmp_path: Path) -> None:
    # Given the API on a real port
    async with serve(create_app(settings)) as base:
        doc = (await _fetch_json(base + "/api/openapi.json"))["paths"]
        # When Chromium renders the Swagger UI page
        dom = await dump_dom(base + "/api/docs", tmp_path / "profile")

    # Then every operation of the document is an entry, with its method and path
    assert "swagger-ui" in dom
    assert "Unable to render" not in dom, dom[:2000]
    rendered = {
        (m.group(1).lower(), html.unescape(m.group(2)))
        for m in re.finditer(r'class="opblock opblock-(\w+)[^"]*".*?data-path="([^"]+)"', dom, re.S)
    }
    expected = {(method, path) for path, ops in doc.items() for method in ops}
    assert ("get", "/api/products/{slug}") in rendered
    assert ("put", "/api/products/{slug}/image") in rendered
    assert expected <= rendered, sorted(expected - rendered)


@pytest.mark.slow
async def test_redoc_renders_the_operations(settings: Settings, tmp_path: Path) -> None:
    async with serve(create_app(settings)) as base:
        dom = await dump_dom(base + "/api/redoc", tmp_path / "profile")

    # ReDoc lists each operation by its summary in the side menu and as a heading.
    assert "Get a product" in dom, dom[:2000]
    assert "Upload a product's image" in dom
    assert "/api/products/{slug}" in html.unescape(dom)
    assert "Something went wrong" not in dom


async def _fetch_json(url: str) -> dict[str, object]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as r:
        assert r.status == 200
        body: dict[str, object] = await r.json()
        return body
