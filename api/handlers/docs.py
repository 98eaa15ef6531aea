"""``/api/openapi.json``, ``/api/asyncapi.json`` (the events), ``/api/docs`` (Swagger UI) and ``/api/redoc`` (ReDoc),
all 404 when ``DOCS_ENABLED=false``.

The UI assets are files of this package (``api/static/``, see its README), served from a fixed list of names;
nothing comes from a CDN. The pages carry a Content-Security-Policy that allows this origin only, so neither UI
can reach out (ReDoc's side-menu logo from its own CDN is blocked and hidden).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

from api.state import OPENAPI_DOCUMENT, SETTINGS
from shared import asyncapi
from shared.errors import NotFound

STATIC: Final = Path(__file__).resolve().parent.parent / "static"
OPENAPI_URL: Final = "/api/openapi.json"

#: The assets each UI may fetch: URL name -> (file, content type); no file for the generated ``init.js``.
_ASSETS: Final[dict[str, dict[str, tuple[Path | None, str]]]] = {
    "docs": {
        "swagger-ui-bundle.js": (STATIC / "swagger-ui" / "swagger-ui-bundle.js", "text/javascript"),
        "swagger-ui.css": (STATIC / "swagger-ui" / "swagger-ui.css", "text/css"),
        "init.js": (None, "text/javascript"),
    },
    "redoc": {"redoc.standalone.js": (STATIC / "redoc" / "redoc.standalone.js", "text/javascript")},
}

#: Swagger UI's start-up script: a file of its own, so the page's CSP needs no inline script.
_SWAGGER_INIT: Final = f"""window.addEventListener("load", function () {{
  window.ui = SwaggerUIBundle({{
    url: "{OPENAPI_URL}",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    persistAuthorization: false,
  }});
}});
""".encode()

_SWAGGER_HTML: Final = b"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Stockroom API: Swagger UI</title>
  <link rel="stylesheet" href="/api/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/docs/static/swagger-ui-bundle.js"></script>
  <script src="/api/docs/static/init.js"></script>
</body>
</html>
"""

_REDOC_HTML: Final = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Stockroom API: ReDoc</title>
  <style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
  <redoc spec-url="{OPENAPI_URL}" hide-hostname="true"></redoc>
  <script src="/api/redoc/static/redoc.standalone.js"></script>
</body>
</html>
""".encode()

#: This origin only. Both UIs set inline styles; ReDoc runs its search index in a worker made from a blob: URL.
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'self'; base-uri 'none'; "
    "form-action 'self'"
)


def _enabled(request: web.Request) -> None:
    if not request.app[SETTINGS].docs_enabled:
        raise NotFound("API documentation is turned off (DOCS_ENABLED=false)")


def _page(body: bytes) -> web.Response:
    return web.Response(
        body=body,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )


async def openapi_json(request: web.Request) -> web.Response:
    _enabled(request)
    return web.Response(
        body=request.app[OPENAPI_DOCUMENT](),
        content_type="application/json",
        headers={"Access-Control-Allow-Origin": "*"},
    )


async def asyncapi_json(request: web.Request) -> web.Response:
    """The AsyncAPI 3.0 document of the events on ``stockroom.events`` (``shared.asyncapi``)."""
    _enabled(request)
    return web.Response(
        body=asyncapi.document_bytes(),
        content_type="application/json",
        headers={"Access-Control-Allow-Origin": "*"},
    )


async def swagger_ui(request: web.Request) -> web.Response:
    _enabled(request)
    return _page(_SWAGGER_HTML)


async def redoc(request: web.Request) -> web.Response:
    _enabled(request)
    return _page(_REDOC_HTML)


async def asset(request: web.Request) -> web.StreamResponse:
    """A UI asset, by name from the fixed list of its UI (``/api/docs/static/...`` or ``/api/redoc/static/...``)."""
    _enabled(request)
    ui = "redoc" if request.path.startswith("/api/redoc/") else "docs"
    found = _ASSETS[ui].get(request.match_info["name"])
    if found is None:
        raise NotFound("no such asset")
    path, ctype = found
    headers = {"Content-Type": f"{ctype}; charset=utf-8", "X-Content-Type-Options": "nosniff"}
    if path is None:
        return web.Response(body=_SWAGGER_INIT, headers={**headers, "Cache-Control": "no-cache"})
    # The files change only with a new release of the service: a day, revalidated by Last-Modified after.
    return web.FileResponse(path, headers={**headers, "Cache-Control": "public, max-age=86400"})
