"""Schemaless JSON records."""

from __future__ import annotations

from typing import Any, Final

import asyncpg

from shared.models import Record, Versions, Written
from shared.store.rows import entity, written

_SELECT = (
    "SELECT id, data, created_at, updated_at, version, (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn"
    " FROM records"
)

#: Record events carry no copy of the document (it may be 1 MiB): consumers read it from PostgreSQL.
_EVENT = """
ev AS (
    INSERT INTO outbox (type, aggregate, aggregate_id, version, payload, request_id)
    SELECT $type, 'record', w.id::text, w.version, '{}'::jsonb, $rid FROM w)
SELECT w.id, w.data, w.created_at, w.updated_at, w.version, (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn FROM w
"""


async def _write(
    conn: asyncpg.Connection, sql: str, event_type: str, *args: Any, deleted: bool = False
) -> Written | None:
    """A record write and its event in one round trip (the convention: :mod:`shared.store.rows`)."""
    sql += _EVENT.replace("$type", f"'{event_type}'").replace("$rid", f"${len(args)}")
    return written(Record, await conn.fetchrow(sql, *args), deleted=deleted)


async def get(conn: asyncpg.Connection, record_id: int) -> Record | None:
    row = await conn.fetchrow(_SELECT + " WHERE id = $1 AND deleted_at IS NULL", record_id)
    return None if row is None else entity(Record, row)


async def get_any(conn: asyncpg.Connection, record_id: int) -> tuple[Record, bool] | None:
    """The record, live or soft-deleted, and whether it is deleted (for the read model's projections)."""
    row = await conn.fetchrow(
        "SELECT deleted_at IS NOT NULL AS deleted, " + _SELECT.removeprefix("SELECT ") + " WHERE id = $1", record_id
    )
    return None if row is None else (entity(Record, row), row["deleted"])


async def get_in(conn: asyncpg.Connection, collection: str, record_id: int) -> Record | None:
    """The live record ``record_id`` if it belongs to ``collection`` (the older services' own collections)."""
    row = await conn.fetchrow(
        _SELECT + " WHERE id = $1 AND collection = $2 AND deleted_at IS NULL", record_id, collection
    )
    return None if row is None else entity(Record, row)


async def collection_of(conn: asyncpg.Connection, record_id: int) -> str | None:
    """The collection of the live record ``record_id``, or None."""
    collection: str | None = await conn.fetchval(
        "SELECT collection FROM records WHERE id = $1 AND deleted_at IS NULL", record_id
    )
    return collection


async def ids_after(conn: asyncpg.Connection, after_id: int, limit: int) -> list[int]:
    rows = await conn.fetch("SELECT id FROM records WHERE id > $1 ORDER BY id LIMIT $2", after_id, limit)
    return [r["id"] for r in rows]


async def list_page(conn: asyncpg.Connection, after_id: int | None, limit: int | None) -> list[Record]:
    """Live records by id; ``limit=None`` for all of them (the legacy list routes)."""
    rows = await conn.fetch(
        _SELECT + " WHERE deleted_at IS NULL AND ($1::bigint IS NULL OR id > $1) ORDER BY id LIMIT $2",
        after_id,
        limit,
    )
    return [entity(Record, r) for r in rows]


async def list_bounded(
    conn: asyncpg.Connection, after_id: int | None, limit: int, max_bytes: int, collection: str | None = None
) -> tuple[list[Record], bool]:
    """Live records (of ``collection``, or of every one) by id after ``after_id``: at most ``limit``, and no more
    than ``max_bytes`` of documents (always at least one); and whether more follow. Only the ``limit + 1``
    candidates are read, and the documents past the byte bound never leave PostgreSQL."""
    rows = await conn.fetch(
        """
        SELECT id, data, created_at, updated_at, version, lsn, considered FROM (
            SELECT c.*, row_number() OVER w AS n, sum(octet_length(c.data::text)) OVER w AS running,
                   count(*) OVER () AS considered
            FROM (SELECT id, data, created_at, updated_at, version,
                         (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn
                  FROM records WHERE deleted_at IS NULL AND ($1::bigint IS NULL OR id > $1)
                    AND ($4::text IS NULL OR collection = $4)
                  ORDER BY id LIMIT $2 + 1) c
            WINDOW w AS (ORDER BY c.id)
        ) s
        WHERE n <= $2 AND (n = 1 OR running <= $3)
        ORDER BY id
        """,
        after_id,
        limit,
        max_bytes,
        collection,
    )
    more = bool(rows) and rows[0]["considered"] > len(rows)
    return [entity(Record, r) for r in rows], more


async def insert(conn: asyncpg.Connection, data: Any, request_id: str, collection: str = "records") -> Written:
    """A new record in ``collection``; ``asyncpg.UniqueViolationError`` for a ``data`` item whose id is taken."""
    w = await _write(
        conn,
        "WITH w AS (INSERT INTO records (data, collection) VALUES ($1, $2)"
        " RETURNING id, data, created_at, updated_at, version),",
        "record.created",
        data,
        collection,
        request_id,
    )
    assert w is not None  # an INSERT ... VALUES always returns its row
    return w


#: A write to the live record ``$1`` if a version that ``$2`` names is current (NULL: any); ``{set}`` says what
#: it changes besides the version.
_AT_VERSION = """
WITH w AS (
    UPDATE records SET {set}, version = version + 1, updated_at = now()
    WHERE id = $1 AND deleted_at IS NULL AND ($2::int[] IS NULL OR version = ANY($2))
    RETURNING id, data, created_at, updated_at, version),"""
_UPDATE: Final = _AT_VERSION.format(set="data = $3")
_SOFT_DELETE: Final = _AT_VERSION.format(set="deleted_at = now()")


async def update(
    conn: asyncpg.Connection, record_id: int, data: Any, expected_version: Versions | None, request_id: str
) -> Written | None:
    return await _write(conn, _UPDATE, "record.updated", record_id, expected_version, data, request_id)


async def soft_delete(
    conn: asyncpg.Connection, record_id: int, expected_version: Versions | None, request_id: str
) -> Written | None:
    return await _write(conn, _SOFT_DELETE, "record.deleted", record_id, expected_version, request_id, deleted=True)


async def live_version(conn: asyncpg.Connection, record_id: int) -> int | None:
    version: int | None = await conn.fetchval(
        "SELECT version FROM records WHERE id = $1 AND deleted_at IS NULL", record_id
    )
    return version
