"""What every repository does with its rows: a row into its frozen dataclass, and a write's row into ``Written``.

A write is one statement, run by its module's ``_write(conn, sql, event_type, *args)``: ``sql`` is the CTEs up to ``w``
(the row written), followed by the module's ``_EVENT`` (the outbox insert and the final SELECT) with ``$type`` the
event type, inlined as a literal (one of ours, never user text), and ``$rid`` the request id, the last of ``args``.
That call stays in each repository module, where tests/integration/test_security_sql.py checks that its SQL is fixed
text."""

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
