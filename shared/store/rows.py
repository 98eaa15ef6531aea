"""What every repository does with its rows: a row into its frozen dataclass, and a write's row into ``Written``.

(The SQL stays in each repository module, where tests/integration/test_security_sql.py checks it is fixed text.)"""

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
