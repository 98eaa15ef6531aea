"""``python -m api keys list|revoke|rotate`` run as operators run them, against real PostgreSQL and a running API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from api.auth import KEY_TTL_SECONDS
from shared.settings import Settings
from shared.store import apikeys
from tests.support.processes import api_process, run_module

#: Slack for process scheduling on a loaded machine, on top of the documented times.
SLACK = 2.0


async def keys_cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    """``python -m api keys *args``: (exit status, stdout, stderr)."""
    return await run_module(settings, "-m", "api", "keys", *args, seconds=30)


async def new_key(settings: Settings, name: str, scope: str = "write") -> str:
    code, out, err = await keys_cli(settings, "create", name, "--scope", scope)
    assert code == 0, err
    return out.strip()


async def write_status(session: aiohttp.ClientSession, url: str, key: str) -> int:
    """A write that changes nothing once authenticated (an empty body is 422): 422 = accepted key, 401 = refused."""
    async with session.post(url + "/api/categories", json={}, headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status


def listing(out: str) -> dict[str, dict[str, str]]:
    """``keys list`` output by key name: column -> value."""
    lines = out.splitlines()
    header = lines[0]
    starts = [header.index(col) for col in ("ID", "NAME", "SCOPE", "CREATED", "LAST USED", "EXPIRES", "REVOKED")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        row = dict(zip(("id", "name", "scope", "created", "last_used", "expires", "revoked"), cells, strict=True))
        rows[row["name"]] = row
    return rows


async def test_list_shows_every_key_and_never_a_secret_or_hash(settings: Settings, pg: asyncpg.Connection) -> None:
    # Given two keys, one of them revoked
    writer = await new_key(settings, "ci-writer", "write")
    ops = await new_key(settings, "ops", "admin")
    assert (await keys_cli(settings, "revoke", "ops"))[0] == 0
    # When they are listed
    code, out, _ = await keys_cli(settings, "list")
    # Then both show with name, scope, created, last used, revoked; no secret and no hash anywhere
    assert code == 0
    rows = listing(out)
    assert rows["ci-writer"]["scope"] == "write"
    assert rows["ci-writer"]["revoked"] == "-"
    assert rows["ci-writer"]["last_used"] == "-"
    assert rows["ops"]["scope"] == "admin"
    assert rows["ops"]["revoked"].endswith("Z")
    assert rows["ops"]["created"].startswith(str(await pg.fetchval("SELECT current_date")))
    for secret in (writer, ops, *[h for (h,) in await pg.fetch("SELECT key_hash FROM api_keys")]):
        assert secret not in out


async def test_last_used_is_written_at_most_once_per_interval(settings: Settings, pg: asyncpg.Connection) -> None:
    # Given a key that was never used
    key = await new_key(settings, "ci-writer")
    # When PostgreSQL is asked about it twice in a row
    await apikeys.scope_of(pg, key)
    first = await pg.fetchval("SELECT last_used_at FROM api_keys")
    await apikeys.scope_of(pg, key)
    # Then the first lookup set "last used" and the second did not write it again
    assert first is not None
    assert await pg.fetchval("SELECT last_used_at FROM api_keys") == first
    # And once the stored time is older than the interval, the next lookup moves it on
    await pg.execute("UPDATE api_keys SET last_used_at = now() - interval '2 minutes'")
    await apikeys.scope_of(pg, key)
    assert await pg.fetchval("SELECT last_used_at > now() - interval '5 seconds' FROM api_keys")


async def test_revoke_by_name_or_id_and_an_unknown_one_fails(settings: Settings, pg: asyncpg.Connection) -> None:
    # Given three keys, two of one name
    await new_key(settings, "a")
    await new_key(settings, "a")
    await new_key(settings, "b")
    b_id = await pg.fetchval("SELECT id FROM api_keys WHERE name = 'b'")
    # When one name and one id are revoked
    assert (await keys_cli(settings, "revoke", "a"))[0] == 0
    assert (await keys_cli(settings, "revoke", str(b_id)))[0] == 0
    # Then every key is revoked, and revoking again (or something unknown) fails with a message
    assert await pg.fetchval("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL") == 0
    for target in ("a", str(b_id), "nobody", "999"):
        code, _, err = await keys_cli(settings, "revoke", target)
        assert code == 1
        assert target in err


async def test_rotate_refuses_an_unknown_name_and_a_bad_grace(settings: Settings, pg: asyncpg.Connection) -> None:
    await new_key(settings, "ci-writer")
    code, out, err = await keys_cli(settings, "rotate", "nobody")
    assert (code, out) == (1, "")
    assert "nobody" in err
    for grace in ("soon", "-5s", "1y", "1000d"):
        code, out, _ = await keys_cli(settings, "rotate", "ci-writer", "--grace", grace)
        assert (code, out) == (2, "")
    assert await pg.fetchval("SELECT count(*) FROM api_keys") == 1


@pytest.mark.slow
async def test_a_revoked_key_is_refused_by_a_running_api_within_the_documented_time(
    settings: Settings, tmp_path: Path, pg: asyncpg.Connection
) -> None:
    # Given a running API that has just accepted a key (so its process caches it)
    key = await new_key(settings, "ci-writer")
    async with api_process(settings, tmp_path / "api.log") as api, aiohttp.ClientSession() as session:
        assert await write_status(session, api.url, key) == 422
        # And "last used" shows in the listing
        assert listing((await keys_cli(settings, "list"))[1])["ci-writer"]["last_used"].endswith("Z")
        # When the key is revoked
        assert (await keys_cli(settings, "revoke", "ci-writer"))[0] == 0
        revoked = time.monotonic()
        # Then the API refuses it within KEY_TTL_SECONDS
        while await write_status(session, api.url, key) != 401:
            assert time.monotonic() - revoked < KEY_TTL_SECONDS + SLACK, "the revoked key is still accepted"
            await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_a_rotated_key_works_during_its_grace_period_and_not_after(
    settings: Settings, tmp_path: Path, pg: asyncpg.Connection
) -> None:
    # Given a running API that has just accepted a key
    old = await new_key(settings, "ci-writer", "admin")
    async with api_process(settings, tmp_path / "api.log") as api, aiohttp.ClientSession() as session:
        assert await write_status(session, api.url, old) == 422
        # When the key is rotated with a grace period of 4 s
        grace = 4.0
        rotated = time.monotonic()  # before the command: the old key's expiry is set during it
        code, out, err = await keys_cli(settings, "rotate", "ci-writer", "--grace", "4s")
        # Then a new key is printed once, with the old one's scope, and the old one's end is said
        assert code == 0, err
        new = out.strip()
        assert new.startswith(apikeys.KEY_PREFIX)
        assert new != old
        assert "valid until" in err
        assert await pg.fetchval("SELECT scope FROM api_keys WHERE id = (SELECT max(id) FROM api_keys)") == "admin"
        assert await write_status(session, api.url, new) == 422
        # And the old key keeps working through the grace period, then is refused (by the cache's TTL at the latest)
        while True:
            status = await write_status(session, api.url, old)
            if status != 422:
                break
            await asyncio.sleep(0.2)
        refused_after = time.monotonic() - rotated
        assert status == 401
        assert grace - 0.2 <= refused_after <= max(grace, KEY_TTL_SECONDS) + SLACK
        # And the new key still works
        assert await write_status(session, api.url, new) == 422
