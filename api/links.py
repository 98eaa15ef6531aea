"""Absolute URLs of the API's own pages (Django REST framework's ``next`` and ``previous``), as the client reached
them: its ``Host``, and behind a trusted proxy (``TRUSTED_PROXIES``) the proxy's ``X-Forwarded-Proto`` and
``X-Forwarded-Host``."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from typing import Final

from aiohttp import web
from yarl import URL

from shared.errors import BadRequest, FieldError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: A host as an absolute URL may name it: a DNS name or IPv4 address, or an IPv6 address in brackets; a port.
_HOST: Final = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))(?::([0-9]{1,5}))?")
_SCHEMES: Final = frozenset({"http", "https"})


def _valid_host(host: str) -> bool:
    m = _HOST.fullmatch(host)
    return m is not None and (m.group(1) is None or int(m.group(1)) <= 65535)


def _first(request: web.Request, header: str) -> str | None:
    """The first (the client-most proxy's) value of a forwarding header, or None."""
    raw = request.headers.get(header)
    return None if raw is None else raw.split(",", 1)[0].strip()


def _from_trusted_proxy(request: web.Request, trusted: Collection[Network]) -> bool:
    if not trusted or request.remote is None:
        return False
    try:
        peer = ipaddress.ip_address(request.remote)
    except ValueError:
        return False
    return any(peer in net for net in trusted)


def origin(request: web.Request, trusted: Collection[Network]) -> URL:
    """``scheme://host[:port]`` as the client reached the API; 400 if its ``Host`` is no host."""
    scheme, host = request.scheme, request.host
    if _from_trusted_proxy(request, trusted):
        proto = _first(request, "X-Forwarded-Proto")
        scheme = proto.lower() if proto and proto.lower() in _SCHEMES else scheme
        forwarded = _first(request, "X-Forwarded-Host")
        host = forwarded if forwarded and _valid_host(forwarded) else host
    if not _valid_host(host):
        raise BadRequest(
            "the Host header names no host", errors=[FieldError(loc=["header", "Host"], msg="must be host[:port]")]
        )
    return URL.build(scheme=scheme, authority=host)


def with_query(request: web.Request, trusted: Collection[Network], **changes: str) -> str:
    """The absolute URL of this request with ``changes`` made to its query (every other parameter kept)."""
    return str(origin(request, trusted).join(request.rel_url.update_query(changes)))
