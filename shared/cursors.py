"""Opaque keyset cursors: base64url JSON with a MAC keyed by ``CURSOR_SECRET``, so a cursor that was cut, edited or
made up is a 400 (``BadRequest``), never a 500 and never a page of something else.

The key is a setting shared by every API process (``--workers N``, replicas): a cursor made by one is read by any
other, and nobody without the secret can make one. What a cursor carries is range-checked after the MAC as well
(:mod:`shared.numbers`), so even a cursor signed with a leaked key cannot put a value PostgreSQL refuses into a query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any, Final

import orjson

from shared.errors import BadRequest, FieldError

_MAC_LEN: Final = 8


def malformed(detail: str = "cursor is malformed") -> BadRequest:
    """The 400 for a bad ``cursor`` query parameter, naming it in ``errors``."""
    return BadRequest(detail, errors=[FieldError(loc=["query", "cursor"], msg=detail)])


class Cursors:
    """Makes and checks cursors with one secret (``Settings.cursor_secret``)."""

    __slots__ = ("_key",)

    def __init__(self, secret: str | bytes) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if not key:
            raise ValueError("the cursor secret must not be empty")
        self._key = key

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_LEN]

    def encode(self, kind: str, key: list[Any]) -> str:
        """A cursor for listing ``kind`` (e.g. ``products:-price``) that resumes after ``key``."""
        body = orjson.dumps([kind, key])
        return base64.urlsafe_b64encode(self._mac(body) + body).rstrip(b"=").decode()

    def decode(self, kind: str, cursor: str) -> list[Any]:
        """The key stored in ``cursor``; :class:`BadRequest` if it is malformed, fails the MAC or was made for
        another listing. The caller range-checks the key's values."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError) as exc:
            raise malformed() from exc
        mac, body = raw[:_MAC_LEN], raw[_MAC_LEN:]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise malformed()
        try:
            stored_kind, key = orjson.loads(body)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            raise malformed() from exc
        if stored_kind != kind or not isinstance(key, list):
            raise malformed("cursor belongs to another listing or sort order")
        return key
