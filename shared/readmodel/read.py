"""Reading the read model: a resource's stored bytes and ETag, a page of a product index, cached listing pages
and birthdays; each one script or one GET, and None where Redis cannot answer it (the caller asks PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from shared.readmodel import keys, render, scripts
from shared.readmodel.client import Runner


@dataclass
class Stats:
    """Read model outcomes, counted per process (exported as metrics)."""

    hits: int = 0
    misses: int = 0
    errors: int = 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pair(found: Any) -> tuple[bytes, str] | None:
    if not found:
        return None
    body, etag = found
    return bytes(body), _text(etag)


def split_copy(value: bytes | None) -> tuple[bytes, str] | None:
    """(body, ETag) of a product's slug copy (:func:`shared.readmodel.keys.product_copy`), or None."""
    if not value or value == keys.ABSENT:
        return None
    cut = value.index(b"\n")
    return render.unpack(value[cut + 1 :]), value[:cut].decode()


async def mark_product_absent(run: Runner, slug: str) -> None:
    await run(scripts.MARK_ABSENT, [keys.product_copy(slug)], [keys.ABSENT_TTL_SECONDS])


async def product_by_slug(run: Runner, slug: str) -> tuple[bytes, str] | None:
    """(body, ETag) of the live product of ``slug``, as the API's read by slug finds it (one GET)."""
    return split_copy(await run(scripts.GET_COPY, [keys.product_copy(slug)], []))


async def category_by_slug(run: Runner, slug: str) -> tuple[bytes, str] | None:
    return _pair(await run(scripts.GET_BY_SLUG, [keys.category_slug(slug)], [keys.PREFIX, "c:", slug]))


async def record_by_id(run: Runner, record_id: int) -> tuple[bytes, str] | None:
    return _pair(await run(scripts.GET_HASH, [keys.record(record_id)], []))


@dataclass(frozen=True)
class IndexPage:
    """Products of one page from a sorted set: (id, score, body bytes) each."""

    rows: list[tuple[int, float, bytes]]


async def product_page(
    run: Runner, sort: str, category_slug: str | None, after: tuple[Any, int] | None, count: int
) -> IndexPage | None:
    """``count`` products after the keyset position ``after`` (as the PostgreSQL listing takes it), or None."""
    index, rev = keys.INDEXED_SORTS[sort]
    if after is None:
        start, cursor_member = ("+inf" if rev else "-inf"), ""
    else:
        first, last_id = after
        score = keys.created_score(first) if index == "created" else keys.price_score(first)
        start, cursor_member = str(score), keys.member(last_id)
    index_keys, cat_index = _index(index, category_slug)
    args = [keys.PREFIX, cat_index, start, cursor_member, "1" if rev else "0", count]
    flat = await run(scripts.LIST_PAGE, index_keys, args)
    if flat is None or flat is False:
        return None
    bodies = _unpacked([flat[i] for i in range(2, len(flat), 3)])
    return IndexPage([(keys.member_id(flat[i]), float(flat[i + 1]), bodies[i // 3]) for i in range(0, len(flat), 3)])


def _index(index: str, category_slug: str | None) -> tuple[list[str], str]:
    """The listing scripts' KEYS and their category index argument: all products' set, or a category's."""
    if category_slug is None:
        return [keys.product_index(index)], ""
    return [keys.category_slug(category_slug)], index


def _unpacked(packed: list[Any]) -> list[bytes]:
    """The JSON bytes of the packed product bodies a listing script returned, in their order."""
    if not packed:
        return []
    # One unpack for the whole page: NUL never occurs in JSON as orjson writes it, so it splits them again.
    return render.unpack(b"\0".join(bytes(b) for b in packed)).split(b"\0")


@dataclass(frozen=True)
class RankPage:
    """A numbered page of a product index: how many the index holds, which page this is (the last one when asked
    for it), and the body bytes of its products (none when the page is past the last)."""

    count: int
    page: int
    bodies: list[bytes]


async def product_rank_page(run: Runner, sort: str, category_slug: str | None, page: int, size: int) -> RankPage | None:
    """Page ``page`` (1-based; 0: the last) of ``size`` products in ``sort`` order, counted and cut by rank in the
    sorted set (ZCARD, ZRANGE), or None where Redis cannot answer it whole."""
    index, rev = keys.INDEXED_SORTS[sort]
    index_keys, cat_index = _index(index, category_slug)
    flat = await run(scripts.LIST_RANK, index_keys, [keys.PREFIX, cat_index, "1" if rev else "0", page, size])
    if flat is None or flat is False:
        return None
    return RankPage(int(flat[0]), int(flat[1]), _unpacked([flat[i] for i in range(3, len(flat), 2)]))


async def cached_page(
    run: Runner, kind: str, qhash: str, category: str | None = None, counters: list[str] | None = None
) -> tuple[str, bytes | None]:
    """(generation, cached page or None) for a listing of ``kind``, of one ``category`` (a slug) if given, else
    keyed by ``counters`` if given (:func:`shared.readmodel.keys.listing_counters`)."""
    gen_keys = [keys.generation(kind)] if category is None else [keys.generation(kind), keys.category_slug(category)]
    args = [keys.page_prefix(kind), qhash, keys.PREFIX, *(counters or ())]
    gen, page = await run(scripts.GET_PAGE, gen_keys, args)
    return _text(gen), (bytes(page) if page else None)


async def store_page(run: Runner, kind: str, generation: str, qhash: str, page: bytes) -> None:
    """Cache ``page`` under the generation it was read at, within the kind's bounds (none when it is too big)."""
    if len(page) > keys.PAGE_MAX_BYTES:
        return
    page_keys = [keys.page(kind, generation, qhash), keys.page_index(kind), keys.page_bytes(kind)]
    await run(
        scripts.SET_PAGE,
        page_keys,
        [page, keys.PAGE_TTL_SECONDS, keys.PAGES_PER_KIND, keys.PAGE_BYTES_PER_KIND],
    )


async def birthdays(run: Runner, month_days: list[tuple[int, int]]) -> list[str] | None:
    """Names whose birthday is on any of ``month_days``, or None if the user projection is not complete."""
    out = await run(scripts.BIRTHDAYS, [keys.READY] + [keys.birthday(m, d) for m, d in month_days], [])
    if _text(out[0]) != "1":
        return None
    return sorted({_text(n) for n in out[1:]})


async def user(run: Runner, username: str) -> tuple[str, dt.date] | None:
    """(name, date of birth) of a projected user, or None."""
    found = await run(scripts.GET_USER, [keys.user(username)], [])
    if not found:
        return None
    name, born = (_text(x) for x in found)
    return name, dt.date.fromisoformat(born)
