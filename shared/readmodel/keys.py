"""The read model's key layout in Redis, and the scores and members its sorted sets are ordered by.

A projection is a hash (``p:``, ``c:``, ``r:``, ``u:`` and a zero-padded id or a username) holding the exact JSON
bytes of a resource's API representation (``b``), its version (``v``), the PostgreSQL WAL position it was read at
(``l``), its ETag (``e``) and a fence (``f``). Slugs map to ids (``ps:``, ``cs:``); a live product's slug also
keys a copy of its ETag and bytes (``pj:``); sorted sets (``idx:``) index live products for the common listings;
generation counters (``gen:``) key the cached pages (``q:``) of every other listing, so a write makes them
unreachable at once (a listing of one category has its own, ``gen:products:c:<member>``, so that only the writes
that can change it do); ``ready`` says which projections a rebuild has completed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from typing import Any, Final

#: Every key starts with this.
PREFIX: Final = "sr:"
#: The hash whose fields (``products``, ``users``) say a rebuild has projected every one of them.
READY: Final = PREFIX + "ready"
#: READY's ``products`` field once a rebuild has projected every product in the sorted sets' current format
#: (``2``: they hold live, *active* products only). A Redis left at an older format serves no listing from them
#: (PostgreSQL answers) until ``python -m worker cache rebuild`` has run; the scripts name the same value.
PRODUCTS_READY: Final = "2"
#: Width of the zero-padded ids used as sorted-set members, so their byte order is their numeric order.
_PAD: Final = 19

#: Cached listing pages live this long (a write makes them unreachable sooner, through the generation).
PAGE_TTL_SECONDS: Final = 60
#: Cached pages of one listing kind, over all its generations: at most this many ...
PAGES_PER_KIND: Final = 1_000
#: ... and at most this many bytes of pages (the oldest are dropped first), whatever the queries.
PAGE_BYTES_PER_KIND: Final = 8 * 1024 * 1024
#: A page larger than this is not cached at all (answered from PostgreSQL each time).
PAGE_MAX_BYTES: Final = 512 * 1024

#: The value of a product's slug copy (:func:`product_copy`) that says PostgreSQL had no live product of that
#: slug a moment ago, so a repeated 404 costs one GET, as a hit does. Set only where no copy is (``NX``), for
#: :data:`ABSENT_TTL_SECONDS`; a projection of that slug replaces it (a plain SET), so a write is never hidden.
ABSENT: Final = b"!"
#: 30 s: under a flood of 404s each absent slug costs one PostgreSQL lookup per TTL (at 5 s, 100 slugs cost 20
#: lookups a second, a few per cent of a 404's CPU); a write never waits for it, since its projection replaces it.
ABSENT_TTL_SECONDS: Final = 30

#: sort -> (index name, reverse): the listings the sorted sets serve.
INDEXED_SORTS: Final = {
    "-created_at": ("created", True),
    "created_at": ("created", False),
    "price": ("price", False),
    "-price": ("price", True),
}


def member(entity_id: int) -> str:
    """A sorted-set member (and key part) for an id: zero-padded so byte order is numeric order."""
    return str(entity_id).zfill(_PAD)


def product(product_id: int) -> str:
    return PREFIX + "p:" + member(product_id)


def category(category_id: int) -> str:
    return PREFIX + "c:" + member(category_id)


def record(record_id: int) -> str:
    return PREFIX + "r:" + member(record_id)


def user(username: str) -> str:
    return PREFIX + "u:" + username.lower()


def product_slug(slug: str) -> str:
    return PREFIX + "ps:" + slug


def category_slug(slug: str) -> str:
    return PREFIX + "cs:" + slug


def product_copy(slug: str) -> str:
    """The slug-keyed copy of a live product's projection (``<etag>\\n<body>``), kept by the product's
    compare-and-set: a read by slug is then one plain GET, no script (products are never fenced)."""
    return PREFIX + "pj:" + slug


def product_index(index: str) -> str:
    """The sorted set of all live products by ``index`` (``created`` or ``price``)."""
    return PREFIX + "idx:p:" + index


def birthday(month: int, day: int) -> str:
    return f"{PREFIX}bday:{month:02d}-{day:02d}"


def generation(kind: str) -> str:
    return PREFIX + "gen:" + kind


def page_prefix(kind: str) -> str:
    return PREFIX + "q:" + kind + ":"


def page(kind: str, generation: str, qhash: str) -> str:
    return page_prefix(kind) + generation + ":" + qhash


def page_index(kind: str) -> str:
    return PREFIX + "qi:" + kind


def page_bytes(kind: str) -> str:
    return PREFIX + "qb:" + kind


def page_hash(*parts: object) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()


def created_score(at: dt.datetime) -> int:
    """Microseconds since the epoch: exact in a Redis score (a double) for the next few centuries."""
    delta = at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def created_from_score(score: float) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(score))


def price_score(price: Decimal) -> int:
    return int(price * 100)


def price_from_score(score: float) -> str:
    cents = int(score)
    return f"{cents // 100}.{cents % 100:02d}"


def sort_key_from_score(sort: str, product_id: int, score: float) -> list[Any]:
    """The cursor key of a product at ``score`` in ``sort`` order, exactly as the PostgreSQL path makes it."""
    if sort.endswith("created_at"):
        return [created_from_score(score).isoformat(), product_id]
    return [price_from_score(score), product_id]
