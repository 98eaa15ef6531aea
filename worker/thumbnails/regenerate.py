"""``python -m worker thumbnails regenerate [--missing | --failed | --all] [--product SLUG]``.

Enqueues thumbnail jobs through the outbox, never straight to RabbitMQ: each selected product goes back to
``pending`` on its current original (its thumbnails stay visible until the new ones replace them) and gets a
``product.image_uploaded`` event (payload ``{"original": key, "regenerate": true}``), in one statement per batch.
The relay then delivers the jobs like any upload's, and the superseded rule applies to them unchanged.

- ``--missing`` (default): ``ready`` products whose thumbnails lack a size configured now (``THUMBNAIL_SIZES``),
  and products still ``pending`` (their job may have been lost; a duplicate job is harmless).
- ``--failed``: products whose thumbnails failed.
- ``--all``: every product with an image; after changing the sizes, this rebuilds every thumbnail.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

import asyncpg

from shared.settings import Settings
from shared.store import images as repo
from shared.store.pool import init_connection
from worker.progress import progress_bar
from worker.thumbnails.imaging import parse_sizes

#: Products per transaction.
BATCH = 500


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker thumbnails regenerate", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--missing", dest="mode", action="store_const", const="missing", help="missing sizes (default)")
    mode.add_argument("--failed", dest="mode", action="store_const", const="failed", help="failed thumbnails")
    mode.add_argument("--all", dest="mode", action="store_const", const="all", help="every product with an image")
    parser.add_argument("--product", metavar="SLUG", help="only this product")
    parser.add_argument("--batch", type=int, default=BATCH, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.mode = args.mode or "missing"
    return args


async def regenerate(settings: Settings, mode: str, slug: str | None, batch: int = BATCH, progress: bool = True) -> int:
    """Enqueue regeneration for the products ``mode`` selects; the number enqueued."""
    sizes = list(parse_sizes(settings.thumbnail_sizes))
    request_id = f"regenerate-{uuid.uuid4().hex}"
    conn = await asyncpg.connect(settings.database_url, timeout=settings.pg_connect_timeout)
    try:
        await init_connection(conn)
        total = await repo.count_for_regeneration(conn, mode, sizes, slug)
        done, after = 0, 0
        with progress_bar(total=total, unit="product", desc=f"regenerate --{mode}", disable=not progress) as bar:
            while ids := await repo.regeneration_ids(conn, mode, sizes, slug, after, batch):
                async with conn.transaction():
                    n = await repo.request_regeneration(conn, ids, request_id)
                done += n
                after = ids[-1]
                bar.update(len(ids))
    finally:
        await conn.close()
    return done


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    settings = Settings()
    try:
        parse_sizes(settings.thumbnail_sizes)
    except ValueError as exc:
        sys.stderr.write(f"THUMBNAIL_SIZES: {exc}\n")
        return 2
    n = asyncio.run(regenerate(settings, args.mode, args.product, args.batch, progress=True))
    sys.stderr.write(f"{n} product(s) queued for new thumbnails\n")
    return 0
