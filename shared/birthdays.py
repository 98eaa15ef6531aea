"""Birthday arithmetic, pure: 29 February falls on 28 February in common years."""

from __future__ import annotations

import calendar
import datetime as dt


def occurrence(born: dt.date, year: int) -> dt.date:
    """The day ``born``'s birthday is celebrated in ``year``."""
    if born.month == 2 and born.day == 29 and not calendar.isleap(year):
        return dt.date(year, 2, 28)
    return dt.date(year, born.month, born.day)


def days_until(born: dt.date, today: dt.date) -> int:
    """Days from ``today`` to the next birthday (0 on the day itself)."""
    upcoming = occurrence(born, today.year)
    if upcoming < today:
        upcoming = occurrence(born, today.year + 1)
    return (upcoming - today).days


def greeting(name: str, born: dt.date, today: dt.date) -> str:
    """The older service's exact words: ``Hello, <Name>! Happy birthday!`` or ``... is in N day(s)`` (the literal
    ``day(s)``), the name capitalised as it did (``pepe`` -> ``Pepe``, ``ALICE`` -> ``Alice``)."""
    days = days_until(born, today)
    if days == 0:
        return f"Hello, {name.capitalize()}! Happy birthday!"
    return f"Hello, {name.capitalize()}! Your birthday is in {days} day(s)"


def birth_days_celebrated_on(today: dt.date) -> tuple[int, list[int]]:
    """(month, [days]) of the birth dates whose birthday is ``today``."""
    if today.month == 2 and today.day == 28 and not calendar.isleap(today.year):
        return 2, [28, 29]
    return today.month, [today.day]
