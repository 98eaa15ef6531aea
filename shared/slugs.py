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


def first_free_number(base: str, taken: Iterable[str]) -> int:
    """The number past every ``base-<n>`` in ``taken`` (2 when there is none)."""
    prefix = base + "-"
    numbers = [int(s[len(prefix) :]) for s in taken if s.startswith(prefix) and s[len(prefix) :].isdigit()]
    return max(numbers, default=1) + 1


def next_free(base: str, taken: Iterable[str]) -> str:
    """``base``, or when it is in ``taken`` the slug the API would make next (past every number in use); for bulk
    loads that pick slugs without the counters (``python -m bench seed``)."""
    used = set(taken)
    return base if base not in used else with_suffix(base, first_free_number(base, used))
