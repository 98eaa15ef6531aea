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
- A product's tags (``pt:``, :func:`product_tags`: its price bucket, whether in stock, its words' buckets) sit
  in a bucket hash of their own beside ``pm:``: what a write of it can change among cached pages.
- Sorted sets (``ix:``) index live, *active* products (what public listings show) for the common listings, by
  members that are short (a length letter and the decimal id: ``g1234567``) and still in id order byte by byte,
  as ties in a score need. A live inactive product keeps its copy and its bucket entry.
- Generation counters (``gen:``) key the cached pages (``q:``) of every other listing, so a write makes them
  unreachable at once (a listing of one category has its own, ``gen:products:c:<member>``, and one of no
  category filtered by a word, a price range or stock the counters of a tag, ``gen:products:t:<tag>``, so that
  only the writes that can change it do); ``ready`` says which projections a rebuild has completed (``products``: the
  layout's :data:`FORMAT`, so a Redis still in an older layout serves no listing until a rebuild has converted it).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import zlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final

from shared.numbers import PRICE_MAX_DIGITS as PRICE_DIGITS

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


# -- what a product write can change: the tags of a product, and the counters a cached page depends on ----------

#: Word buckets: a product's search lexemes (PostgreSQL's, ``tsvector_to_array(search)``) hashed into this many.
WORD_BUCKETS: Final = 4096
#: Two characters name a word bucket (64 x 64 = :data:`WORD_BUCKETS`); none of them is ``.``, which separates the
#: parts of a product's tags.
_CODE: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"
#: Price buckets come in groups of this many (four octaves), each with a counter of its own that every write of a
#: product in the group bumps too: a range is the groups it covers whole and the buckets at its ends, at most
#: ``2 * (PRICE_GROUP - 1)`` + a dozen counters however wide it is.
PRICE_GROUP: Final = 8
#: Bumped by a write whose product's old or new tags are unknown (a bucket entry projected before tags existed,
#: or a product read without its lexemes): every page that depends on tags depends on it too, so such a write
#: can never leave a stale page.
UNKNOWN_TAGS: Final = PREFIX + "gen:products:t:?"


@functools.lru_cache(maxsize=65_536)
def word_code(lexeme: str) -> str:
    """The two characters naming ``lexeme``'s word bucket (stable across processes: a CRC, not ``hash``)."""
    n = zlib.crc32(lexeme.encode()) % WORD_BUCKETS
    return _CODE[n >> 6] + _CODE[n & 63]


def price_bucket(cents: int) -> int:
    """A price's bucket: each power of two of its cents split in two (0 for none), in the order of prices, in
    integers only (so every process agrees)."""
    if cents <= 0:
        return 0
    bits = cents.bit_length()
    return 2 * bits + (cents >> (bits - 2) & 1 if bits > 1 else 0)


def product_tags_bucket(product_id: int) -> str:
    """The hash of a hundred products' tags (:func:`product_tags`), beside their :func:`product_meta` bucket: a
    hash of its own, so that both stay within Redis's compact listpack encoding (values of 64 bytes at most)."""
    return PREFIX + "pt:" + member(product_id)[:-2]


def product_tags(price: Decimal, stock: int, lexemes: Sequence[str] | None) -> str:
    """What a product is tagged with (:func:`product_tags_bucket`): ``<price bucket>.<in stock: 1|0>.<word
    codes>``, or '' when its lexemes are unknown. A write bumps the counter of each tag of its product's old and
    new state (:data:`shared.readmodel.scripts.PROJECT_PRODUCT`)."""
    if lexemes is None:
        return ""
    words = "".join(sorted({word_code(x) for x in lexemes}))
    return f"{price_bucket(price_score(price))}.{1 if stock > 0 else 0}.{words}"


def tag_counter(tag: str) -> str:
    """The counter of one tag: ``p<price bucket>``, ``P<price group>``, ``s<1|0>`` or ``w<word code>``."""
    return PREFIX + "gen:products:t:" + tag


def price_counters(low: Decimal | None, high: Decimal | None) -> list[str] | None:
    """The counters a listing within [low, high] depends on: its price buckets, a whole group of them (see
    :data:`PRICE_GROUP`) by the group's counter; None for a range that holds no price."""
    first = price_bucket(math.floor(low * 100)) if low is not None else 0
    last = price_bucket(math.ceil(high * 100)) if high is not None else _TOP_PRICE_BUCKET
    if last < first:
        return None
    counters, b = [], first
    while b <= last:
        if b % PRICE_GROUP == 0 and b + PRICE_GROUP - 1 <= last:
            counters.append(tag_counter(f"P{b // PRICE_GROUP}"))
            b += PRICE_GROUP
        else:
            counters.append(tag_counter(f"p{b}"))
            b += 1
    return counters


#: The bucket of the dearest price a product may have.
_TOP_PRICE_BUCKET: Final = price_bucket(10**PRICE_DIGITS)


def listing_counters(
    lexeme: str | None, low: Decimal | None, high: Decimal | None, in_stock: bool | None
) -> list[str] | None:
    """The counters a cached page of a listing of no category depends on, or None for the kind's (every write).

    Its filters are all required of a product in it, so one tag that each of its products must have is enough:
    a write can change the page only if its product had or has that tag. ``lexeme``: one lexeme that the
    listing's ``q`` requires of every match (none when ``q`` is absent or may match without one); then a price
    range; then the stock filter. :data:`UNKNOWN_TAGS` comes with them all."""
    if lexeme is not None:
        return [UNKNOWN_TAGS, tag_counter("w" + word_code(lexeme))]
    if low is not None or high is not None:
        counters = price_counters(low, high)
        if counters is not None:
            return [UNKNOWN_TAGS, *counters]
    if in_stock is not None:
        return [UNKNOWN_TAGS, tag_counter("s1" if in_stock else "s0")]
    return None
