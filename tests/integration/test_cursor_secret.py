"""Cursors are signed with CURSOR_SECRET: every API process (``--workers N``, a restart) reads the others' cursors,
and a cursor signed with any other key is 400."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from shared.cursors import Cursors
from shared.settings import Settings
from tests.conftest import ADMIN
from tests.support.processes import api_process


async def _page(url: str, cursor: str | None = None) -> tuple[int, dict[str, object]]:
    # A connection of its own each time: with --workers N, SO_REUSEPORT spreads them over the processes.
    async with aiohttp.ClientSession() as session:
        query = "?limit=1" + (f"&cursor={cursor}" if cursor else "")
        async with session.get(url + "/api/records" + query) as r:
            return r.status, await r.json(content_type=None)


async def _create_records(url: str, count: int) -> None:
    async with aiohttp.ClientSession() as session:
        for n in range(count):
            async with session.post(url + "/api/records", json={"n": n}, headers=ADMIN) as r:
                assert r.status == 201


@pytest.mark.slow
async def test_every_process_and_a_restart_read_the_same_cursors(settings: Settings, tmp_path: Path) -> None:
    # Given no CURSOR_SECRET, an API of two processes, and three records
    secret_file = tmp_path / "var" / "cursor-secret"
    env = {"CURSOR_SECRET_FILE": str(secret_file)}
    async with api_process(settings, tmp_path / "api.log", "--workers", "2", **env) as api:
        await _create_records(api.url, 3)
        status, first = await _page(api.url)
        assert status == 200
        cursor = first["next_cursor"]
        assert isinstance(cursor, str)

        # When the next page is asked for, over many connections (both processes answer some)
        statuses = {(await _page(api.url, cursor))[0] for _ in range(20)}

        # Then every process accepts the cursor; one signed with another key is refused
        assert statuses == {200}
        forged = Cursors("not-the-service-secret-0123").encode("records", [1])
        assert (await _page(api.url, forged))[0] == 400

    # And after a restart (the secret kept in its file) the old cursor still works
    assert secret_file.exists()
    async with api_process(settings, tmp_path / "api2.log", **env) as api:
        status, second = await _page(api.url, cursor)
        assert status == 200
        assert second["items"] != first["items"]


@pytest.mark.slow
async def test_the_cursor_secret_setting_signs_the_cursors(settings: Settings, tmp_path: Path) -> None:
    # Given an API run with CURSOR_SECRET set, and two records
    secret = "operator-chosen-cursor-secret-42"
    async with api_process(settings, tmp_path / "api.log", CURSOR_SECRET=secret) as api:
        await _create_records(api.url, 2)
        status, first = await _page(api.url)
        assert status == 200

        # Then its cursors are those that secret makes, and one made with it is accepted
        key = Cursors(secret).decode("records", str(first["next_cursor"]))
        assert (await _page(api.url, Cursors(secret).encode("records", key)))[0] == 200
