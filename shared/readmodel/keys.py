"""The read model's key layout in Redis, and the scores and members its sorted sets are ordered by.

Layout :data:`FORMAT`, chosen for memory (a million products in under 1 KB of Redis each, measured in
bench/README.md):

- A category, record or user is a hash (``c:``, ``r:`` and a :func:`member`, ``u:`` and a username) holding the
  exact JSON bytes of its API representation (``b``), its version (``v``), the PostgreSQL WAL position it was
  read at (``l``), its ETag (``e``) and a fence (``f``); a category's slug maps to its member (``cm:``).
- A product is stored once, under its slug (``pk:``): its ETag, a newline and its packed JSON bytes
  (:func:`shared.readmodel.render.pack`). What its compare-and-set needs, ``<version>:<lsn>:<category
  member>:<slug>``, is one field (its member) of a bucket hash of a hundred products (``pm:``,
  :func:`product_meta`): small enough for Redis's compact listpack encoding, where a hash or a key per product
  costs over a hundred bytes of overhead each. Products are never fenced.
- Sorted sets (``ix:``) index live, *active* products (what public listings show) for the common listings, by
  members that are short (a length letter and the decimal id: ``g1234567``) and still in id order byte by byte,
  as ties in a score need. A live inactive product keeps its copy and its bucket entry.
- Generation counters (``gen:``) key the cached pages (``q:``) of every other listing, so a write makes them
  unreachable at once (a listing of one category has its own, ``gen:products:c:<member>``, so that only the
  writes that can change it do); ``ready`` says which projections a rebuild has completed (``products``: the
  layout's :data:`FORMAT`, so a Redis still in an older layout serves no listing until a rebuild has converted it).
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
#: The layout this module describes; ``ready``'s ``products`` field holds it once a rebuild has completed. ``1``
#: was layout 1 (below); two unreleased ``2``s were layout 1 with active products only in its sets, and this
#: layout with every live product in them: a Redis at any of them is rebuilt (and its sets put right by the
#: rebuild's compare-and-set, see :data:`shared.readmodel.scripts.PROJECT_PRODUCTS`).
FORMAT: Final = "3"
#: Key patterns of layout 1 (19-digit zero-padded members, a product hash and slug key each, unpacked copies,
#: per-category generations named by those members), which a rebuild deletes before it projects, when Redis does
#: not say it holds :data:`FORMAT`. None matches a key of this layout: the API and the workers project in this
#: layout while a rebuild deletes those.
OLD_PATTERNS: Final = tuple(
    PREFIX + p for p in ("p:*", "ps:*", "c:0*", "r:0*", "cs:*", "idx:*", "pj:*", "gen:products:c:0*")
)

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
    """A sorted-set member (and key part) for an id: its number of digits as a letter (``a`` for one), then its
    digits, so byte order is numeric order in 1 + digits bytes (``g1234567``)."""
    digits = str(entity_id)
    return chr(96 + len(digits)) + digits


def member_id(value: str | bytes) -> int:
    """The id a :func:`member` names."""
    return int(value[1:])


def product_meta(product_id: int) -> str:
    """The bucket hash that holds the product's ``<version>:<lsn>:<category member>:<slug>`` under its
    member: ids that differ only in their last two digits share one (the scripts derive it the same way)."""
    return PREFIX + "pm:" + member(product_id)[:-2]


def category(category_id: int) -> str:
    return PREFIX + "c:" + member(category_id)


def record(record_id: int) -> str:
    return PREFIX + "r:" + member(record_id)


def user(username: str) -> str:
    return PREFIX + "u:" + username.lower()


def category_slug(slug: str) -> str:
    return PREFIX + "cm:" + slug


def product_copy(slug: str) -> str:
    """A live product's projection (``<etag>\\n<packed body>``), kept by the product's compare-and-set: a read
    by slug is one plain GET, no script (products are never fenced)."""
    return PREFIX + "pk:" + slug


def product_index(index: str) -> str:
    """The sorted set of all live products by ``index`` (``created`` or ``price``)."""
    return PREFIX + "ix:p:" + index


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
