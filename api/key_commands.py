"""``python -m api keys create|list|revoke|rotate``: API keys for operators; a secret is printed once, never again.

- ``create NAME [--scope write|admin]``: a new key, printed once on stdout.
- ``list``: id, name, scope, created, last used, expires, revoked; never a secret nor a hash.
- ``revoke NAME|ID``: a number is a key's id, anything else a name (every key of that name is revoked).
- ``rotate NAME [--grace DURATION]``: a new key for NAME (same scope), printed once; the old one keeps working for
  the grace period (default :data:`DEFAULT_GRACE`), then stops.

Every API process refuses a revoked key within ``api.auth.KEY_TTL_SECONDS`` (its cache of verified keys), and a
rotated-out key from the end of its grace period on (the cache honours the expiry).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Final

from shared.settings import Settings
from shared.store import apikeys
from shared.store.pool import connection, create_pool

#: How long a rotated-out key keeps working: long enough to roll the new one out to every client.
DEFAULT_GRACE: Final = "24h"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_SECONDS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: A grace period longer than this is a mistake (a forgotten key that never stops working).
MAX_GRACE: Final = timedelta(days=90)


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``24h``, ``7d`` -> a timedelta; argparse shows the error for anything else."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 15m, 24h or 7d")
    grace = timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if grace > MAX_GRACE:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than {MAX_GRACE.days} days")
    return grace


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m api keys", description="API keys")
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a key and print it once")
    create.add_argument("name")
    create.add_argument("--scope", choices=["write", "admin"], default="write")
    sub.add_parser("list", help="list keys: name, scope, created, last used, expires, revoked (never a secret)")
    revoke = sub.add_parser("revoke", help="revoke a key by id, or every key of a name")
    revoke.add_argument("key", metavar="NAME|ID")
    rotate = sub.add_parser("rotate", help="issue a new key for NAME; the old one works for the grace period")
    rotate.add_argument("name")
    rotate.add_argument(
        "--grace",
        type=parse_duration,
        default=parse_duration(DEFAULT_GRACE),
        help=f"how long the old key keeps working (default {DEFAULT_GRACE}; 0 ends it now; 90s, 15m, 24h, 7d)",
    )
    return parser


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _table(keys: list[apikeys.KeyInfo]) -> str:
    header = ("ID", "NAME", "SCOPE", "CREATED", "LAST USED", "EXPIRES", "REVOKED")
    rows = [
        (
            str(k.id),
            k.name,
            k.scope,
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.expires_at),
            _when(k.revoked_at),
        )
        for k in keys
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows])
    return "".join(line + "\n" for line in lines)


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    pool = await create_pool(settings, max_size=1)
    try:
        async with connection(pool, settings.pg_connect_timeout) as conn, conn.transaction():
            if args.action == "create":
                _, key = await apikeys.create(conn, args.name, args.scope)
                sys.stdout.write(key + "\n")
            elif args.action == "list":
                sys.stdout.write(_table(await apikeys.list_keys(conn)))
            elif args.action == "revoke":
                by_id = args.key.isdigit()
                ids = await apikeys.revoke(
                    conn, key_id=int(args.key) if by_id else None, name=None if by_id else args.key
                )
                if not ids:
                    sys.stderr.write(f"no key {'with id' if by_id else 'named'} {args.key!r} that is not revoked\n")
                    return 1
                sys.stderr.write(f"revoked key(s) {', '.join(map(str, ids))}\n")
            else:
                rotation = await apikeys.rotate(conn, args.name, args.grace)
                if rotation is None:
                    sys.stderr.write(f"no live key named {args.name!r} to rotate\n")
                    return 1
                sys.stdout.write(rotation.key + "\n")
                for old_id, until in rotation.old:
                    sys.stderr.write(f"key {old_id} stays valid until {_when(until)}\n")
    finally:
        await pool.close()
    return 0


def main(argv: list[str]) -> int:
    """``python -m api keys ...``; the exit status (1: nothing to revoke or rotate)."""
    args = _parser().parse_args(argv)
    return asyncio.run(_run(Settings(), args))
