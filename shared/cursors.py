"""Opaque keyset cursors: base64url JSON with a keyed checksum, so a cursor that was cut, edited or
made up is a 400 (``BadRequest``), never a 500 and never a page of something else."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

import orjson

from shared.errors import BadRequest, FieldError

#: Not a secret that guards data (a cursor only names a position); it makes forged cursors fail loudly.
_KEY = b"stockroom-cursor-v1"
_MAC_LEN = 8


def malformed(detail: str = "cursor is malformed") -> BadRequest:
    """The 400 for a bad ``cursor`` query parameter, naming it in ``errors``."""
    return BadRequest(detail, errors=[FieldError(loc=["query", "cursor"], msg=detail)])


def encode(kind: str, key: list[Any]) -> str:
    """A cursor for listing ``kind`` (e.g. ``products:-price``) that resumes after ``key``."""
    body = orjson.dumps([kind, key])
    mac = hmac.new(_KEY, body, hashlib.sha256).digest()[:_MAC_LEN]
    return base64.urlsafe_b64encode(mac + body).rstrip(b"=").decode()


def decode(kind: str, cursor: str) -> list[Any]:
    """The key stored in ``cursor``; :class:`BadRequest` if it is malformed or made for another listing."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as exc:
        raise malformed() from exc
    mac, body = raw[:_MAC_LEN], raw[_MAC_LEN:]
    if not hmac.compare_digest(mac, hmac.new(_KEY, body, hashlib.sha256).digest()[:_MAC_LEN]):
        raise malformed()
    try:
        stored_kind, key = orjson.loads(body)
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise malformed() from exc
    if stored_kind != kind or not isinstance(key, list):
        raise malformed("cursor belongs to another listing or sort order")
    return key
