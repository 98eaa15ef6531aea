"""The asyncpg pool: codecs registered once, timeouts that turn an outage into a fast error."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final, cast

import asyncpg
import orjson

from shared.errors import Overloaded, ServiceUnavailable
from shared.settings import Settings

#: The errors that mean "PostgreSQL is not there right now", as opposed to a bug or a constraint.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.ConnectionFailureError,
)

#: The errors that mean "the schema is not (fully) migrated": PostgreSQL answers, but what a statement names is not
#: there. With every migration applied none of them happens, so they say nothing else.
SCHEMA_MISSING: tuple[type[BaseException], ...] = (
    asyncpg.UndefinedTableError,
    asyncpg.UndefinedColumnError,
    asyncpg.UndefinedFunctionError,
    asyncpg.UndefinedObjectError,
    asyncpg.InvalidSchemaNameError,
)
#: What a client is told when one of :data:`SCHEMA_MISSING` happens.
NOT_MIGRATED = "the database schema is not migrated (run python -m migrations)"


async def init_connection(conn: asyncpg.Connection) -> None:
    """Register the jsonb/json codecs (orjson) on a new connection."""
    for typename in ("jsonb", "json"):
        await conn.set_type_codec(
            typename,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing beyond asyncpg's own rollback of an unfinished transaction.

    asyncpg's default sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every
    release: one more round trip per request. Nothing here leaves session state on a pooled connection (no SET,
    no LISTEN, no session advisory lock, no cursor outside a transaction), so there is nothing to reset.
    """


async def create_pool(settings: Settings, **overrides: Any) -> asyncpg.Pool:
    """A pool that connects lazily enough to start while PostgreSQL is down (min_size=0 first)."""
    kwargs: dict[str, Any] = {
        "dsn": settings.database_url,
        "min_size": 0,
        "max_size": settings.pg_pool_max,
        "timeout": settings.pg_connect_timeout,
        "command_timeout": settings.pg_command_timeout,
        "init": init_connection,
        "reset": keep_session,
        # Idle connections to a restarted server are dropped instead of failing the next request.
        "max_inactive_connection_lifetime": 60.0,
    }
    kwargs.update(overrides)
    pool = asyncpg.create_pool(**kwargs)
    await pool
    return pool


#: Seconds a pool's polite close may take (each connection says goodbye to the server) before it is dropped.
POOL_CLOSE_TIMEOUT: Final = 2.0


async def close_pool(pool: asyncpg.Pool, within: float = POOL_CLOSE_TIMEOUT) -> bool:
    """Close ``pool`` politely within ``within`` seconds, else terminate it (a server that does not answer the
    goodbye, or is gone, must not hold a shutdown up or fail it: asyncpg raises ``TimeoutError`` after its command
    timeout). Whether the close was polite."""
    try:
        async with asyncio.timeout(within):
            await pool.close()
    except UNAVAILABLE:
        pool.terminate()
        return False
    return True


#: What a client is told when the pool wait times out with every connection in use (:class:`Overloaded`).
OVERLOADED: Final = "the service is overloaded (every database connection is busy): retry after Retry-After seconds"


def saturated(pool: asyncpg.Pool) -> bool:
    """Whether the pool is at its maximum size with every connection in use (a wait for one is queueing, not an
    outage: each of them reached PostgreSQL)."""
    return pool.get_size() >= pool.get_max_size() and pool.get_idle_size() == 0


@contextlib.asynccontextmanager
async def connection(pool: asyncpg.Pool, wait: float) -> AsyncIterator[asyncpg.Connection]:
    """Acquire a connection; an unreachable PostgreSQL becomes :class:`ServiceUnavailable` within ``wait`` seconds,
    a wait that times out while the pool is :func:`saturated` becomes :class:`Overloaded` (refused or timed-out
    connects stay "unavailable": then the pool is not full of working connections)."""
    try:
        async with asyncio.timeout(wait):
            conn = await pool.acquire()
    except TimeoutError as exc:
        if saturated(pool):
            raise Overloaded(OVERLOADED) from exc
        raise ServiceUnavailable("PostgreSQL is unavailable") from exc
    except UNAVAILABLE as exc:
        raise ServiceUnavailable("PostgreSQL is unavailable") from exc
    try:
        # The pool hands out a proxy that forwards every Connection method.
        yield cast(asyncpg.Connection, conn)
    except UNAVAILABLE as exc:
        conn.terminate()
        raise ServiceUnavailable("PostgreSQL is unavailable") from exc
    except asyncio.CancelledError:
        # Cancelled mid-statement (a deadline passed): a polite release would wait for the server to confirm
        # the cancel, which a hung server never does. Drop the connection; the pool opens a new one.
        conn.terminate()
        raise
    finally:
        with contextlib.suppress(*UNAVAILABLE):
            await pool.release(conn, timeout=1.0)
