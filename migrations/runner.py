"""Apply pending ``NNNN_name.sql`` files in order, once each, under an advisory lock."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

#: Where the SQL files live: beside this module.
MIGRATIONS_DIR = Path(__file__).resolve().parent
#: Any 64-bit constant works; this one is "stockroom" in ASCII, so it is recognisable in pg_locks.
ADVISORY_LOCK_ID = 0x73746F636B726F6F
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    """A migration file is malformed, or an applied one was edited afterwards."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file, in version order; two files with one number are an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: expected NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is used twice")
        found[version] = Migration(version, path.name, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def ensure_database(dsn: str) -> None:
    """Create the database named in ``dsn`` if it does not exist (connecting to ``postgres`` for that)."""
    parts = urlsplit(dsn)
    dbname = parts.path.lstrip("/") or "postgres"
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
        try:
            # CREATE DATABASE takes no parameters; the name is quoted as an identifier.
            ident = '"' + dbname.replace('"', '""') + '"'
            await admin.execute(f"CREATE DATABASE {ident}")
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            # Another host created it meanwhile. A CREATE DATABASE racing another one for the same name fails on
            # pg_database's unique index (UniqueViolation) rather than with DuplicateDatabase.
            pass
        finally:
            await admin.close()
    else:
        await conn.close()


async def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is pending; returns the names applied. Safe to run from several hosts at once."""
    migrations = discover(directory)
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        # Session-level lock: held across the per-migration transactions, released on close.
        await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_ID)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {
            r["version"]: (r["name"], r["checksum"])
            for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        }
        for m in migrations:
            if m.version in applied:
                if applied[m.version][1] != m.checksum:
                    raise MigrationError(f"{m.name} was edited after it was applied (checksum differs)")
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            applied_now.append(m.name)
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_ID)
    finally:
        await conn.close()
    return applied_now
