"""Projecting a resource into the read model: ONE dispatch, :func:`project`, for the API's write-through, its
fills on a miss, the cache worker and the rebuild alike.

Each projection runs its compare-and-set script (:mod:`shared.readmodel.scripts`), so a stale, duplicate or
out-of-order projection changes nothing.
"""

from __future__ import annotations

from typing import Any

from shared.models import Category, Product, Record, User
from shared.readmodel import keys, render, scripts
from shared.readmodel.client import Runner

Entity = Category | Product | Record | User


async def project(
    run: Runner, entity: Entity, media_url: str, *, deleted: bool = False, from_write: bool = False
) -> bool:
    """Project ``entity`` (``deleted``: as a tombstone); True if Redis changed. ``from_write``: the state is what
    a write just committed, not a read of PostgreSQL (it fences past its own position, see :func:`project_product`)."""
    if isinstance(entity, Product):
        return await project_product(run, entity, media_url, deleted, from_write=from_write)
    if isinstance(entity, Category):
        return await project_category(run, entity, deleted)
    if isinstance(entity, Record):
        return await project_record(run, entity, deleted)
    return await project_user(run, entity)


async def project_product(
    run: Runner, p: Product, media_url: str, deleted: bool = False, from_write: bool = False
) -> bool:
    """Project ``p``. Its category's projection becomes stale if it was read before ``p``'s state existed:
    a read's position already includes ``p`` (fence at it), a write's position does not yet (fence past it)."""
    args = [keys.PREFIX, *product_values(p, media_url, deleted), p.lsn + 1 if from_write else p.lsn]
    return bool(await run(scripts.PROJECT_PRODUCT, [keys.product_meta(p.id)], args))


def product_values(p: Product, media_url: str, deleted: bool = False) -> list[Any]:
    """The values one product takes in the product scripts (:data:`shared.readmodel.scripts.PRODUCT_ARGS`)."""
    body = b"" if deleted else render.pack(render.dumps(render.product(p, media_url)))
    owner = b"\n" + render.PACKED_ID + str(p.id).encode() + render.PACKED_SLUG
    return [
        keys.product_meta(p.id),
        keys.member(p.id),
        p.version,
        p.lsn,
        render.etag(p.version),
        body,
        p.slug,
        keys.member(p.category_id),
        keys.created_score(p.created_at),
        keys.price_score(p.price),
        owner,
        # Only a live, active product is in the sorted sets; an inactive one keeps its copy (read by slug).
        "1" if p.is_active else "0",
        # What a write of it can change among the cached pages that depend on tags (price, stock, its words).
        keys.product_tags(p.price, p.stock, p.lexemes),
    ]


async def project_category(run: Runner, c: Category, deleted: bool = False) -> bool:
    body = b"" if deleted else render.dumps(render.category(c))
    args = [keys.PREFIX, keys.member(c.id), c.version, c.lsn, render.category_etag(c), body, c.slug]
    return bool(await run(scripts.PROJECT_CATEGORY, [keys.category(c.id)], args))


async def project_record(run: Runner, r: Record, deleted: bool = False) -> bool:
    body = b"" if deleted else render.dumps(render.record(r))
    args = [keys.PREFIX, r.version, r.lsn, render.etag(r.version), body]
    return bool(await run(scripts.PROJECT_RECORD, [keys.record(r.id)], args))


async def project_user(run: Runner, u: User) -> bool:
    born = u.date_of_birth
    args = [keys.PREFIX, u.version, u.lsn, u.name, born.isoformat(), f"{born.month:02d}-{born.day:02d}"]
    return bool(await run(scripts.PROJECT_USER, [keys.user(u.username)], args))
