"""shared.birthdays: days to the next birthday, 29 February in common years, the greeting's wording."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.birthdays import birth_days_celebrated_on, days_until, greeting, occurrence

D = dt.date


@pytest.mark.parametrize(
    ("born", "year", "expected"),
    [
        (D(2000, 2, 29), 2023, D(2023, 2, 28)),
        (D(2000, 2, 29), 2024, D(2024, 2, 29)),
        (D(2000, 2, 29), 2100, D(2100, 2, 28)),  # not a leap year
        (D(2000, 2, 29), 2000, D(2000, 2, 29)),
        (D(1990, 12, 31), 2025, D(2025, 12, 31)),
    ],
)
def test_occurrence(born: dt.date, year: int, expected: dt.date) -> None:
    assert occurrence(born, year) == expected


@pytest.mark.parametrize(
    ("born", "today", "days"),
    [
        (D(1990, 6, 11), D(2025, 6, 11), 0),
        (D(1990, 6, 11), D(2025, 6, 10), 1),
        (D(1990, 6, 11), D(2025, 6, 12), 364),
        (D(1990, 1, 1), D(2025, 12, 31), 1),
        (D(1990, 3, 1), D(2024, 2, 28), 2),  # through 29 February of a leap year
        (D(2000, 2, 29), D(2025, 2, 28), 0),
        (D(2000, 2, 29), D(2025, 3, 1), 364),  # next is 28 February 2026
        (D(2000, 2, 29), D(2023, 3, 1), 365),  # next is 29 February 2024
        (D(2000, 2, 29), D(2024, 2, 28), 1),
    ],
)
def test_days_until(born: dt.date, today: dt.date, days: int) -> None:
    assert days_until(born, today) == days


@given(born=st.dates(max_value=D(2100, 1, 1)), today=st.dates(min_value=D(1900, 1, 1), max_value=D(9998, 1, 1)))
def test_days_until_is_within_a_year_and_lands_on_the_birthday(born: dt.date, today: dt.date) -> None:
    days = days_until(born, today)
    assert 0 <= days <= 365
    target = today + dt.timedelta(days=days)
    assert target == occurrence(born, target.year)


def test_greeting_wording() -> None:
    today = D(2025, 6, 1)
    assert greeting("Ann", D(1990, 6, 1), today) == "Hello, Ann! Happy birthday!"
    assert greeting("Ann", D(1990, 6, 2), today) == "Hello, Ann! Your birthday is in 1 day(s)"
    assert greeting("Ann", D(1990, 6, 3), today) == "Hello, Ann! Your birthday is in 2 day(s)"
    assert greeting("pepe", D(1990, 6, 3), today) == "Hello, Pepe! Your birthday is in 2 day(s)"
    assert greeting("ALICE", D(1990, 6, 1), today) == "Hello, Alice! Happy birthday!"


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (D(2025, 2, 28), (2, [28, 29])),
        (D(2024, 2, 28), (2, [28])),
        (D(2024, 2, 29), (2, [29])),
        (D(2025, 3, 1), (3, [1])),
        (D(2100, 2, 28), (2, [28, 29])),
    ],
)
def test_birth_days_celebrated_on(today: dt.date, expected: tuple[int, list[int]]) -> None:
    assert birth_days_celebrated_on(today) == expected


@given(born=st.dates(max_value=D(2100, 1, 1)), today=st.dates(min_value=D(1900, 1, 1), max_value=D(9998, 1, 1)))
def test_celebrated_on_agrees_with_days_until(born: dt.date, today: dt.date) -> None:
    month, days = birth_days_celebrated_on(today)
    assert (born.month == month and born.day in days) == (days_until(born, today) == 0)
