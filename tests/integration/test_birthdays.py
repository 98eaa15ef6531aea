"""The birthday greeting service: PUT/GET /hello/{username} and GET /api/users/birthdays/today.

"Today" is frozen by replacing ``api.handlers.birthdays.today``: the clock is where the process meets the world.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import ADMIN
from tests.support.api import locs, outbox, problem, rid_headers


@pytest.fixture
def today(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Set the service's today: ``today(dt.date(...))``."""

    def freeze(day: dt.date) -> None:
        monkeypatch.setattr("api.handlers.birthdays.today", lambda: day)

    return freeze


async def _put(client, username: str, born: str):  # type: ignore[no-untyped-def]
    return await client.put(f"/hello/{username}", json={"dateOfBirth": born}, headers=ADMIN)


async def _message(client, username: str) -> str:  # type: ignore[no-untyped-def]
    r = await client.get(f"/hello/{username}")
    assert r.status == 200, await r.text()
    message: str = (await r.json())["message"]
    return message


async def test_put_creates_user_and_writes_one_event(client, pg, today) -> None:
    # Given it is 1 June 2025
    today(dt.date(2025, 6, 1))
    # When a user is put
    r = await client.put("/hello/Alice", json={"dateOfBirth": "1990-06-11"}, headers=rid_headers("req-u"))
    # Then it answers 204 without a body, and one user.upserted (keyed by the lower-cased name) is written
    assert r.status == 204
    assert await r.read() == b""
    rows = await outbox(pg)
    assert [(e["type"], e["aggregate"], e["aggregate_id"], e["version"], e["request_id"]) for e in rows] == [
        ("user.upserted", "user", "alice", 1, "req-u")
    ]


async def test_greeting_counts_days_to_the_birthday(client, today) -> None:
    today(dt.date(2025, 6, 1))
    await _put(client, "alice", "1990-06-11")
    assert await _message(client, "alice") == "Hello, Alice! Your birthday is in 10 day(s)"


async def test_greeting_says_one_day_in_the_singular(client, today) -> None:
    today(dt.date(2025, 6, 10))
    await _put(client, "alice", "1990-06-11")
    assert await _message(client, "alice") == "Hello, Alice! Your birthday is in 1 day(s)"


async def test_greeting_on_the_day_is_happy_birthday(client, today) -> None:
    today(dt.date(2025, 6, 11))
    await _put(client, "alice", "1990-06-11")
    assert await _message(client, "alice") == "Hello, Alice! Happy birthday!"


async def test_birthday_already_past_counts_to_next_year(client, today) -> None:
    today(dt.date(2025, 6, 12))
    await _put(client, "alice", "1990-06-11")
    assert await _message(client, "alice") == "Hello, Alice! Your birthday is in 364 day(s)"


async def test_29_february_is_celebrated_on_28_february_in_common_years(client, today) -> None:
    # Given a user born on 29 February
    today(dt.date(2025, 2, 1))
    await _put(client, "leapy", "2000-02-29")
    # When asked on 28 February of a common year, and the day before
    today(dt.date(2025, 2, 28))
    on_the_day = await _message(client, "leapy")
    today(dt.date(2025, 2, 27))
    day_before = await _message(client, "leapy")
    # Then 28 February is the birthday
    assert on_the_day == "Hello, Leapy! Happy birthday!"
    assert day_before == "Hello, Leapy! Your birthday is in 1 day(s)"


async def test_29_february_is_its_own_day_in_leap_years(client, today) -> None:
    today(dt.date(2023, 1, 1))
    await _put(client, "leapy", "2000-02-29")
    today(dt.date(2024, 2, 28))
    assert await _message(client, "leapy") == "Hello, Leapy! Your birthday is in 1 day(s)"
    today(dt.date(2024, 2, 29))
    assert await _message(client, "leapy") == "Hello, Leapy! Happy birthday!"


async def test_usernames_are_case_insensitive_and_greeted_as_written(client, today) -> None:
    # Given a user put as "Alice"
    today(dt.date(2025, 6, 11))
    await _put(client, "Alice", "1990-06-11")
    # When greeted as "ALICE"
    # Then it is the same user, capitalised as the older service named it
    assert await _message(client, "ALICE") == "Hello, Alice! Happy birthday!"


async def test_put_again_replaces_the_date(client, pg, today) -> None:
    # Given a user
    today(dt.date(2025, 6, 1))
    await _put(client, "alice", "1990-06-11")
    # When the user is put again (differently cased) with another date
    r = await _put(client, "ALICE", "1990-06-02")
    # Then the new date counts, and a second user.upserted carries version 2
    assert r.status == 204
    assert await _message(client, "alice") == "Hello, Alice! Your birthday is in 1 day(s)"
    assert [(e["aggregate_id"], e["version"]) for e in await outbox(pg)] == [("alice", 1), ("alice", 2)]


async def test_unknown_user_is_404(client) -> None:
    await problem(await client.get("/hello/nobody"), 404)


async def test_username_that_is_not_1_to_64_letters_is_422(client, pg, today) -> None:
    today(dt.date(2025, 6, 1))
    for username in ("bob1", "bob_smith", "x" * 65, "J%C3%BCrgen"):
        body = await problem(await _put(client, username, "1990-06-11"), 422)
        assert locs(body) == [["path", "username"]]
    assert await outbox(pg) == []


@pytest.mark.parametrize("username", ["Ann%0A", "Ann%0D%0A", "%0AAnn", "Ann%20", "Ann%09"])
async def test_a_username_with_a_newline_or_space_around_its_letters_is_422_and_makes_no_user(
    client, pg, today, username: str
) -> None:
    # Given Ann's birthday
    today(dt.date(2025, 6, 1))
    assert (await _put(client, "Ann", "1990-06-11")).status == 204

    # When the same letters come with a newline (or blank) before or after them, on PUT and on GET
    put = await _put(client, username, "1991-01-01")
    got = await client.get(f"/hello/{username}")

    # Then both are 422 naming the path, and Ann is the only user, unchanged
    for r in (put, got):
        body = await problem(r, 422)
        assert locs(body) == [["path", "username"]], body
    assert [(u["username"], u["date_of_birth"]) for u in await pg.fetch("SELECT * FROM users")] == [
        ("ann", dt.date(1990, 6, 11))
    ]
    assert len(await outbox(pg)) == 1


async def test_a_username_that_is_not_letters_is_422_on_get(client) -> None:
    for username in ("bob1", "x" * 65, "J%C3%BCrgen"):
        body = await problem(await client.get(f"/hello/{username}"), 422)
        assert locs(body) == [["path", "username"]]


async def test_username_of_64_letters_is_accepted(client, today) -> None:
    today(dt.date(2025, 6, 1))
    assert (await _put(client, "a" * 64, "1990-06-11")).status == 204


async def test_date_of_birth_today_or_later_is_400_as_the_older_service_answered(client, pg, today) -> None:
    today(dt.date(2025, 6, 1))
    for born in ("2025-06-01", "2025-06-02", "2999-01-01"):
        body = await problem(await _put(client, "alice", born), 400)
        assert locs(body) == [["body", "dateOfBirth"]]
    await problem(await client.get("/hello/alice"), 404)


async def test_date_of_birth_that_is_no_iso_date_is_422(client, today) -> None:
    today(dt.date(2025, 6, 1))
    for born in ("1990-02-30", "11-06-1990", "1990-6-1", "19900611", 19900611, None, "1990-06-01T00:00:00"):
        r = await client.put("/hello/alice", json={"dateOfBirth": born}, headers=ADMIN)
        body = await problem(r, 422)
        assert locs(body) == [["body", "dateOfBirth"]], born


async def test_bad_username_and_bad_date_are_both_listed(client, today) -> None:
    today(dt.date(2025, 6, 1))
    body = await problem(await _put(client, "bob1", "2030-01-01"), 422)
    assert sorted(locs(body)) == [["body", "dateOfBirth"], ["path", "username"]]


async def test_missing_or_extra_fields_are_422(client, today) -> None:
    today(dt.date(2025, 6, 1))
    body = await problem(await client.put("/hello/alice", json={"dob": "1990-01-01"}, headers=ADMIN), 422)
    assert sorted(locs(body)) == [["body", "dateOfBirth"], ["body", "dob"]]


async def test_birthdays_today_lists_who_celebrates(client, today) -> None:
    # Given three users, two born on 11 June
    today(dt.date(2025, 1, 1))
    await _put(client, "Bob", "1985-06-11")
    await _put(client, "alice", "1990-06-11")
    await _put(client, "carol", "1990-06-12")
    # When today's birthdays are asked for on 11 June
    today(dt.date(2025, 6, 11))
    r = await client.get("/api/users/birthdays/today")
    # Then the two are named as they were written
    assert r.status == 200
    assert await r.json() == {"date": "2025-06-11", "usernames": ["alice", "Bob"]}


async def test_birthdays_today_includes_29_february_on_28_february_of_common_years(client, today) -> None:
    today(dt.date(2023, 1, 1))
    await _put(client, "leapy", "2000-02-29")
    await _put(client, "plain", "2000-02-28")
    today(dt.date(2025, 2, 28))
    common = await (await client.get("/api/users/birthdays/today")).json()
    today(dt.date(2024, 2, 28))
    leap = await (await client.get("/api/users/birthdays/today")).json()
    assert common["usernames"] == ["leapy", "plain"]
    assert leap["usernames"] == ["plain"]


async def test_the_older_services_client_sees_its_exact_words(client, today) -> None:
    # Given the older service's client, as it was: PUT pepe, then GET in another case
    today(dt.date(2025, 6, 1))
    r = await client.put("/hello/pepe", json={"dateOfBirth": "1990-06-06"}, headers=ADMIN)
    assert (r.status, await r.read()) == (204, b"")
    # Then the greeting is word for word what the older service answered: capitalised name, literal "day(s)"
    r = await client.get("/hello/PEPE")
    assert (r.status, await r.json()) == (200, {"message": "Hello, Pepe! Your birthday is in 5 day(s)"})
    today(dt.date(2025, 6, 6))
    assert await (await client.get("/hello/pepe")).json() == {"message": "Hello, Pepe! Happy birthday!"}
    # And a date of birth of today is the older service's 400
    r = await client.put("/hello/pepe", json={"dateOfBirth": "2025-06-06"}, headers=ADMIN)
    assert r.status == 400
