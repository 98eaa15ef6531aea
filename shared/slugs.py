"""Slugs made from names: ASCII, lower case, words joined by ``-``; ``-2``, ``-3``... on collision."""

from __future__ import annotations

import re
from collections.abc import Iterable

from slugify import slugify

#: The contract's slug pattern.
SLUG_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_LEN = 100


def base_slug(name: str, fallback: str) -> str:
    """The slug for ``name``; ``fallback`` when nothing ASCII is left of it (``"!!!"``)."""
    slug = slugify(name, max_length=MAX_LEN, word_boundary=False, lowercase=True)
    return slug.strip("-") or fallback


def with_suffix(base: str, n: int) -> str:
    """``base-n``, with ``base`` shortened so the whole stays within the length limit."""
    suffix = f"-{n}"
    return base[: MAX_LEN - len(suffix)].rstrip("-") + suffix


def next_free(base: str, taken: Iterable[str]) -> str:
    """The first of ``base``, ``base-2``, ``base-3``... not in ``taken``."""
    used = set(taken)
    if base not in used:
        return base
    n = 2
    while with_suffix(base, n) in used:
        n += 1
    return with_suffix(base, n)
