"""RFC 7396 JSON merge patch."""

from __future__ import annotations

from typing import Any


def apply(target: Any, patch: Any) -> Any:
    """``target`` with ``patch`` merged in: objects merge recursively, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply(result.get(key), value)
    return result
