"""CORS (``CORS_ORIGINS``): preflights, the headers of actual answers, and a browser on another origin writing.

The browser test runs headless Chromium (Debian's package; scripts/services.sh installs it, and a missing one
fails the test): a page served from one port calls the API on another, a cross-origin write as a web client does.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from api.app import create_app
from shared.settings import Settings
from tests.conftest import ADMIN, ADMIN_KEY
from tests.integration.test_docs import dump_dom, free_port, serve

ORIGIN = "https://shop.example"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
}
EXPOSED = {
    "ETag",
    "Location",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
    "X-Request-ID",
}


def cors_headers(r) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {k: v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


def listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


@pytest.fixture
async def cors_client(aiohttp_client, settings: Settings) -> TestClient:  # type: ignore[no-untyped-def]
    allowed = f"{ORIGIN}, http://127.0.0.1:3000/"
    return await aiohttp_client(create_app(settings.model_copy(update={"cors_origins": allowed})))


async def test_without_cors_origins_there_are_no_cors_headers(client: TestClient) -> None:
    # Given the default settings (CORS_ORIGINS unset)
    # When a browser preflights a write, and reads
    preflight = await client.options("/api/categories", headers=PREFLIGHT)
    read = await client.get("/api/categories", headers={"Origin": ORIGIN})
    # Then neither answer carries a CORS header: the preflight is the usual 405
    assert preflight.status == 405
    assert cors_headers(preflight) == {}
    assert read.status == 200
    assert cors_headers(read) == {}
    assert "Vary" not in read.headers


async def test_a_preflight_from_an_allowed_origin_is_204_with_methods_headers_and_max_age(
    cors_client: TestClient,
) -> None:
    # When an allowed origin preflights a write to a resource (with and without a trailing slash)
    for path in ("/api/categories", "/api/products/some-slug/", "/picus/put"):
        r = await cors_client.options(path, headers=PREFLIGHT)
        # Then it is 204, naming that origin, the methods, the request headers a client sends, and a max age
        assert r.status == 204, path
        assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Origin" in listed(r.headers["Vary"]) or "origin" in listed(r.headers["Vary"])
        assert {"get", "post", "put", "patch", "delete"} <= listed(r.headers["Access-Control-Allow-Methods"])
        assert {"authorization", "content-type", "if-match", "if-none-match", "idempotency-key"} <= listed(
            r.headers["Access-Control-Allow-Headers"]
        )
        assert int(r.headers["Access-Control-Max-Age"]) > 0
        assert await r.read() == b""


async def test_answers_to_an_allowed_origin_expose_etag_location_rate_limits_and_request_id(
    cors_client: TestClient,
) -> None:
    # When an allowed origin creates a category, reads it, reads it again conditionally, and reads a missing one
    origin = {"Origin": "http://127.0.0.1:3000"}
    created = await cors_client.post("/api/categories", json={"name": "Tools"}, headers={**ADMIN, **origin})
    read = await cors_client.get("/api/categories/tools", headers=origin)
    unchanged = await cors_client.get(
        "/api/categories/tools", headers={**origin, "If-None-Match": read.headers["ETag"]}
    )
    missing = await cors_client.get("/api/categories/ghost", headers=origin)
    invalid = await cors_client.post(
        "/api/categories", data=b"{", headers={**ADMIN, **origin, "Content-Type": "application/json"}
    )
    # Then every answer, errors and 304 included, names the origin and exposes the headers a page needs
    assert [r.status for r in (created, read, unchanged, missing, invalid)] == [201, 200, 304, 404, 400]
    for r in (created, read, unchanged, missing, invalid):
        assert r.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:3000", r.status
        assert {h.lower() for h in EXPOSED} <= listed(r.headers["Access-Control-Expose-Headers"]), r.status
        assert "origin" in listed(r.headers["Vary"]), r.status
        assert "Access-Control-Allow-Credentials" not in r.headers
    # And the headers it exposes are there to read
    for name in ("ETag", "Location", "X-Request-ID", "RateLimit-Remaining"):
        assert name in created.headers, name


async def test_a_rate_limited_answer_to_an_allowed_origin_carries_cors_headers(
    aiohttp_client, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    # Given a read limit of one request in a burst
    app = create_app(
        settings.model_copy(
            update={"cors_origins": ORIGIN, "rate_limit_reads_burst": 1, "rate_limit_reads_per_second": 0.01}
        )
    )
    client = await aiohttp_client(app)
    # When an allowed origin reads twice
    statuses = [(await client.get("/api/categories", headers={"Origin": ORIGIN})) for _ in range(2)]
    # Then the 429 still tells the browser it may read it, Retry-After included
    limited = statuses[-1]
    assert limited.status == 429
    assert limited.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "retry-after" in listed(limited.headers["Access-Control-Expose-Headers"])
    assert "Retry-After" in limited.headers


async def test_an_origin_not_in_the_list_gets_no_cors_headers(cors_client: TestClient) -> None:
    # When another origin (a look-alike too) preflights and reads
    for origin in ("https://evil.example", "https://shop.example.evil", "http://shop.example", "null"):
        preflight = await cors_client.options("/api/categories", headers={**PREFLIGHT, "Origin": origin})
        read = await cors_client.get("/api/categories", headers={"Origin": origin})
        # Then the preflight is the usual 405 and neither answer has a CORS header (the browser refuses both)
        assert preflight.status == 405, origin
        assert cors_headers(preflight) == {}, origin
        assert cors_headers(read) == {}, origin
        # And the answer says it varies by Origin, so a shared cache does not hand it to an allowed origin
        assert "origin" in listed(read.headers["Vary"])


async def test_an_options_request_that_is_no_preflight_is_answered_as_before(cors_client: TestClient) -> None:
    r = await cors_client.options("/api/categories", headers={"Origin": ORIGIN})

    assert r.status == 405
    assert r.headers["Allow"] == "GET,HEAD,POST"


@pytest.mark.parametrize("value", ["shop.example", "https://shop.example/path", "ftp://shop.example", "https://"])
def test_a_cors_origins_entry_that_is_no_origin_stops_the_start(settings: Settings, value: str) -> None:
    with pytest.raises(ValueError, match="CORS_ORIGINS"):
        create_app(settings.model_copy(update={"cors_origins": f"https://ok.example,{value}"}))


# -- in a real browser -------------------------------------------------------------------------------------

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
fetch(%(api)s + "/api/categories", {
  method: "POST",
  headers: {"Authorization": "Bearer " + %(key)s, "Content-Type": "application/json"},
  body: JSON.stringify({name: "Made in a browser"}),
}).then(async (r) => {
  const body = await r.json();
  document.getElementById("out").textContent = JSON.stringify({
    status: r.status, etag: r.headers.get("ETag"), location: r.headers.get("Location"),
    request_id: r.headers.get("X-Request-ID"), remaining: r.headers.get("RateLimit-Remaining"), id: body.id,
  });
}).catch((e) => { document.getElementById("out").textContent = "refused: " + e; });
</script></body></html>"""


async def _browser_writes(settings: Settings, tmp_path: Path, allowed: str | None) -> str:
    """The page's outcome: a cross-origin POST from a page on its own port, run in headless Chromium."""
    import json

    page_port = free_port()
    page_origin = f"http://127.0.0.1:{page_port}"
    api = create_app(settings.model_copy(update={"cors_origins": allowed or page_origin}))
    async with serve(api) as api_url:
        html = PAGE % {"api": json.dumps(api_url), "key": json.dumps(ADMIN_KEY)}
        site = web.Application()
        site.router.add_get("/", lambda _: web.Response(text=html, content_type="text/html"))
        runner = web.AppRunner(site, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", page_port).start()
        try:
            dom = await dump_dom(page_origin + "/", tmp_path / "profile")
        finally:
            await runner.cleanup()
    start = dom.index('<pre id="out">') + len('<pre id="out">')
    return dom[start : dom.index("</pre>", start)]


async def test_a_page_on_an_allowed_origin_writes_and_reads_etag_and_location_in_chromium(
    settings: Settings, tmp_path: Path, pg: asyncpg.Connection
) -> None:
    # Given the API allowing the origin of a page served from another port
    # When that page POSTs a category with fetch() (Authorization and JSON: a preflighted request)
    import html
    import json

    outcome = json.loads(html.unescape(await _browser_writes(settings, tmp_path, allowed=None)))
    # Then the write happened, and the page could read the ETag, Location, request id and rate-limit headers
    assert outcome["status"] == 201, outcome
    assert outcome["etag"] == '"1.0"'  # a category's ETag: version 1, no live products
    assert outcome["location"].endswith("/api/categories/made-in-a-browser")
    assert outcome["request_id"]
    assert outcome["remaining"] is not None
    assert await pg.fetchval("SELECT name FROM categories WHERE id = $1", outcome["id"]) == "Made in a browser"


async def test_a_page_on_another_origin_can_not_write_in_chromium(
    settings: Settings, tmp_path: Path, pg: asyncpg.Connection
) -> None:
    # Given the API allowing only some other origin
    # When a page on a origin not in the list tries the same write
    outcome = await _browser_writes(settings, tmp_path, allowed="https://shop.example")
    # Then the browser refuses it at the preflight, and nothing was written
    assert outcome.startswith("refused"), outcome
    assert await pg.fetchval("SELECT count(*) FROM categories") == 0
