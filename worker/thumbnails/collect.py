"""``python -m worker thumbnails collect``: remove stored originals and thumbnails no product references any more.

Options: ``[--grace SECONDS] [--dry-run]``. What goes: replaced or removed images, superseded thumbnails.

Keys are content addresses shared by every product with the same bytes, and an upload writes its file before
the transaction that references it; so an object is removed only when

1. it is older than the grace period (``MEDIA_GC_GRACE_SECONDS``, or ``--grace``): storing bytes that are there
   already refreshes the object's time, so an upload in flight of the same content is younger than that;
2. no product references it, live or soft-deleted (a deleted product can be restored with its image), checked
   once for all, and again for each batch under exclusive locks on its keys (:mod:`shared.store.media`), with
   its time checked again too. Writers take the same locks, shared, and check their file is still there
   before they reference it, so no product ever points at a removed file.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass

import asyncpg

from shared.settings import Settings
from shared.storage import Storage, open_storage
from shared.store import media
from shared.store.pool import init_connection

#: The storage prefixes the collector looks under.
PREFIXES = ("originals", "thumbs")
#: Keys per locked batch.
BATCH = 200


@dataclass(frozen=True)
class Collected:
    """What a run found: objects stored, how many are unreferenced and old enough, and how many it removed."""

    stored: int
    unreferenced: int
    removed: int


async def collect(settings: Settings, grace: float, dry_run: bool = False) -> Collected:
    """One collection over the storage ``settings`` name."""
    conn = await asyncpg.connect(settings.database_url, timeout=settings.pg_connect_timeout)
    try:
        await init_connection(conn)
        async with open_storage(settings) as storage:
            return await _collect(conn, storage, grace, dry_run)
    finally:
        await conn.close()


async def _collect(conn: asyncpg.Connection, storage: Storage, grace: float, dry_run: bool) -> Collected:
    # Listed before the references are read: an object written after the listing is not a candidate at all.
    cutoff = time.time() - grace
    stored, old = 0, []
    for prefix in PREFIXES:
        async for key, mtime in storage.listing(prefix):
            stored += 1
            if mtime < cutoff:
                old.append(key)
    in_use = await media.referenced(conn)
    candidates = sorted(k for k in old if k not in in_use)
    if dry_run:
        return Collected(stored, len(candidates), 0)
    removed = 0
    for i in range(0, len(candidates), BATCH):
        batch = candidates[i : i + BATCH]
        async with conn.transaction():
            await media.hold_for_removal(conn, batch)
            in_use = await media.referenced(conn, batch)
            for key in batch:
                written = await storage.modified(key)
                if key in in_use or written is None or written >= cutoff:
                    continue
                await storage.delete(key)
                removed += 1
    return Collected(stored, len(candidates), removed)


def parse_args(argv: list[str], settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker thumbnails collect", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--grace",
        type=float,
        default=settings.media_gc_grace_seconds,
        metavar="SECONDS",
        help="only objects older than this (default: MEDIA_GC_GRACE_SECONDS, %(default)s)",
    )
    parser.add_argument("--dry-run", action="store_true", help="count what would be removed, remove nothing")
    args = parser.parse_args(argv)
    if args.grace < 0:
        parser.error("--grace must be at least 0")
    return args


def main(argv: list[str]) -> int:
    settings = Settings()
    args = parse_args(argv, settings)
    result = asyncio.run(collect(settings, args.grace, args.dry_run))
    verb = "would remove" if args.dry_run else "removed"
    count = result.unreferenced if args.dry_run else result.removed
    sys.stderr.write(
        f"{result.stored} object(s) stored, {result.unreferenced} unreferenced and older than {args.grace:g} s; "
        f"{verb} {count}\n"
    )
    return 0
