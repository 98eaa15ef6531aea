"""CORS (``CORS_ORIGINS``): which browser origins may call the API, and the headers that tell the browser so.

Unset, there is no :class:`Cors` and the edge sends no CORS header at all. Set, the edge answers a preflight
(``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed origin with 204 before authorization and the
rate limit (a browser sends no credentials with a preflight), and marks every other answer to an allowed origin,
errors, 304 and 429 included. An origin not in the list gets no CORS header, so its browser refuses the answer.
No credentials mode: API keys travel in ``Authorization``, which a page sets itself; cookies are not used.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Final

from aiohttp import web

#: Methods a page may use (every method a route takes; HEAD and GET need no preflight, listed for clarity).
ALLOW_METHODS: Final = "GET, HEAD, POST, PUT, PATCH, DELETE"
#: Request headers a page may send beyond the CORS-safelisted ones.
ALLOW_HEADERS: Final = "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, X-Request-ID"
#: Response headers a page may read beyond the safelisted ones (Content-Type, Cache-Control, ...).
EXPOSE_HEADERS: Final = (
    "ETag, Location, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, X-Request-ID"
)
#: Seconds a browser may reuse a preflight's answer (Chromium caps this at 7200).
MAX_AGE: Final = "600"

#: ``scheme://host[:port]``, what a browser sends in ``Origin`` (lower case, no path, no trailing slash).
_ORIGIN = re.compile(r"^https?://([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$")


@dataclass(frozen=True, slots=True)
class Cors:
    """The allowed origins; ``any_origin`` when the list is ``*`` (every origin, echoed back)."""

    origins: frozenset[str]
    any_origin: bool = False

    def allows(self, origin: str | None) -> bool:
        return origin is not None and (self.any_origin or origin in self.origins)

    def preflight(self, request: web.Request) -> web.Response | None:
        """The 204 answer to a preflight from an allowed origin; None for any other request (handled as usual)."""
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        origin = request.headers.get("Origin")
        if not self.allows(origin):
            return None
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin or "",
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": MAX_AGE,
                "Vary": "Origin",
            },
        )

    def mark(self, request: web.Request, headers: MutableMapping[str, str]) -> None:
        """Add the CORS headers of an actual answer (``Vary: Origin`` always: the answer depends on it)."""
        vary = headers.get("Vary")
        headers["Vary"] = "Origin" if not vary else f"{vary}, Origin"
        origin = request.headers.get("Origin")
        if self.allows(origin):
            headers["Access-Control-Allow-Origin"] = origin or ""
            headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS


def from_setting(value: str | None) -> Cors | None:
    """``CORS_ORIGINS``: None when unset or empty; else the comma-separated origins (``*``: any origin).

    Raises ValueError naming an entry that is no origin (a path, a missing scheme): a typo must stop the start,
    not silently leave a browser client refused.
    """
    entries = [entry.strip().lower().rstrip("/") for entry in (value or "").split(",")]
    entries = [entry for entry in entries if entry]
    if not entries:
        return None
    if entries == ["*"]:
        return Cors(frozenset(), any_origin=True)
    wrong = [entry for entry in entries if not _ORIGIN.match(entry)]
    if wrong:
        raise ValueError(f"CORS_ORIGINS: not an origin (scheme://host[:port]): {', '.join(wrong)}")
    return Cors(frozenset(entries))
