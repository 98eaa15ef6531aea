"""What every repository does with its rows: a row into its frozen dataclass, and a write statement (the row, then
its outbox CTE with the event type and request id filled in) run into ``Written``."""

from __future__ import annotations

import dataclasses
from typing import Any, Final, TypeVar

import asyncpg

from shared.models import Category, Product, Record, User, Written

E = TypeVar("E", Category, Product, Record, User)


#: Each entity's field names, read once.
_FIELDS: Final[dict[type[Any], tuple[str, ...]]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in (Category, Product, Record, User)
}


def entity(cls: type[E], row: asyncpg.Record) -> E:
    """``cls`` from the columns of ``row`` named like its fields (each field must be a column; other columns are
    left out)."""
    return cls(**{name: row[name] for name in _FIELDS[cls]})


def written(cls: type[E], row: asyncpg.Record | None, *, deleted: bool = False) -> Written | None:
    """What a write statement returned (``None``: it changed nothing), as the ``cls`` it wrote; ``deleted`` for
    a soft delete."""
    return None if row is None else Written(entity(cls, row), deleted=deleted)


def with_event(cte: str, event_type: str, rid_param: int) -> str:
    """``cte``, an outbox insert, with ``$type`` its event type and ``$rid`` the parameter ``$<rid_param>`` (the
    request id). The event type is one of ours, never user text: it is inlined as a literal for that reason."""
    return cte.replace("$type", f"'{event_type}'").replace("$rid", f"${rid_param}")


async def write(
    conn: asyncpg.Connection,
    statement: str,
    event_type: str,
    *args: Any,
    cls: type[E],
    event: str,
    deleted: bool = False,
) -> Written | None:
    """One write in one round trip: ``statement`` (its CTEs, up to ``w`` holding the row written), then ``event``
    (the outbox insert, ``$type`` and ``$rid``, and the final SELECT) for ``event_type``. ``args`` are the
    parameters, the request id last. What it wrote, as ``cls``; ``None`` if it wrote nothing."""
    row = await conn.fetchrow(statement + with_event(event, event_type, len(args)), *args)
    return written(cls, row, deleted=deleted)
