"""Building HTTP answers: a JSON body with its headers, and a conditional GET's 200 or 304."""

from __future__ import annotations

from typing import Final

from aiohttp import web
from multidict import istr

from api.parsing import entity_tags

JSON: Final = "application/json"

# Header names as ``istr``, made once: a case-insensitive multidict keeps an istr's folded form, where a plain
# str is folded again on every insert (the answers' headers are set on every request; measured in bench/).
CONTENT_TYPE: Final[str] = istr("Content-Type")
ETAG: Final[str] = istr("ETag")


def json_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None, etag: str | None = None
) -> web.Response:
    # One plain dict of headers: cheaper than the content_type/charset machinery, on the hottest path there is.
    all_headers = {CONTENT_TYPE: JSON}
    if headers:
        all_headers.update(headers)
    if etag is not None:
        all_headers[ETAG] = etag
    return web.Response(body=body, status=status, headers=all_headers)


def conditional(request: web.Request, body: bytes, etag: str) -> web.Response:
    """200 with the body and its ETag, or 304 if the client's ``If-None-Match`` names that ETag."""
    inm = request.headers.get("If-None-Match")
    # RFC 9110: If-None-Match compares weakly, so W/"3" matches "3" (caches and proxies may weaken ETags).
    if inm is not None and (inm.strip(" \t") == "*" or etag[1:-1] in (tag for _, tag in entity_tags(inm))):
        return web.Response(status=304, headers={ETAG: etag})
    return json_response(body, etag=etag)
