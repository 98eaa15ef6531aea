"""The one range rule for numbers that reach PostgreSQL, wherever they are parsed: a body (pydantic, 422), a query
parameter (400) or a cursor (400).

asyncpg cannot encode a Decimal such as ``1e-20000`` and wraps ``1e131072`` into another number; an ``int8``
parameter beyond 64 bits fails in the driver. A value that passes these checks is one PostgreSQL stores and
compares exactly, so nothing past here can fail on it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError

#: PostgreSQL's ``bigint`` (and a JSON integer orjson keeps exactly): anything outside is refused, never rounded.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
#: The ``price`` column is ``numeric(14, 2)``.
PRICE_MAX_DIGITS: Final = 14
PRICE_PLACES: Final = 2


def _no_bool(value: Any) -> Any:
    # JSON true is not a price: pydantic's lax mode would turn it into 1.
    if isinstance(value, bool):
        raise ValueError("must be a decimal number or a string holding one")
    return value


# The constraints come before the validator: after it, pydantic cannot put them into the JSON schema
# (it wrote "ge" and "max_digits" there as they are, which no JSON Schema tool understands).
Price = Annotated[
    Decimal,
    Field(ge=0, max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_PLACES, allow_inf_nan=False, examples=["19.99"]),
    BeforeValidator(_no_bool),
]
#: A row id as PostgreSQL's ``bigint`` holds it (strict: ``true`` and ``1.0`` are no ids).
Id = Annotated[int, Field(ge=0, le=INT64_MAX, strict=True)]

_PRICE: Final = TypeAdapter(Price)
_ID: Final = TypeAdapter(Id)


def price(value: object) -> Decimal:
    """``value`` as a price (finite, >= 0, at most 12 digits before the point and 2 after); ``ValueError`` naming
    the rule otherwise. The same rule validates the ``price`` of a body."""
    try:
        return _PRICE.validate_python(value)
    except ValidationError as exc:
        raise ValueError(exc.errors(include_url=False)[0]["msg"]) from None


def row_id(value: object) -> int:
    """``value`` as a row id (an integer from 0 to 2**63 - 1, not a bool); ``ValueError`` otherwise."""
    try:
        return _ID.validate_python(value)
    except ValidationError as exc:
        raise ValueError(exc.errors(include_url=False)[0]["msg"]) from None
