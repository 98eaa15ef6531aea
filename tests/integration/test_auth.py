"""API keys: reads are public, writes need a key, restore needs the admin scope; AUTH_DISABLED turns it off."""

from __future__ import annotations

import os

import pytest

from api.app import create_app
from shared.settings import Settings
from tests.conftest import ADMIN
from tests.support.api import category, outbox, problem
from tests.support.processes import run_python


def _make_key(database_url: str, name: str, scope: str) -> str:
    """A key made the way an operator makes one: ``python -m api keys create NAME --scope S``."""
    env = {**os.environ, "DATABASE_URL": database_url}
    done = run_python("-m", "api", "keys", "create", name, "--scope", scope, env=env, timeout=30, check=True)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    return lines[0]


@pytest.fixture
def write_key(database_url: str) -> str:
    return _make_key(database_url, "ci-writer", "write")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_write_without_key_is_401(client, pg) -> None:
    # When a category is posted without a key
    r = await client.post("/api/categories", json={"name": "Tools"})
    # Then it is 401 with a Bearer challenge, and nothing is written
    await problem(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert await outbox(pg) == []


async def test_write_with_bad_key_is_401(client, pg) -> None:
    for header in ("Bearer nope", "Bearer ", "Basic dXNlcjpwYXNz", "sr_notakey", "Bearer sr_" + "x" * 43):
        r = await client.post("/api/categories", json={"name": "Tools"}, headers={"Authorization": header})
        await problem(r, 401)
    assert await outbox(pg) == []


async def test_reads_need_no_key(client) -> None:
    await category(client, "Tools")
    assert (await client.get("/api/categories/tools")).status == 200
    assert (await client.get("/api/categories")).status == 200


async def test_key_from_the_cli_is_printed_once_and_stored_only_as_a_hash(database_url, pg) -> None:
    # When a key is created with the CLI
    key = _make_key(database_url, "ops", "admin")
    # Then it looks like a key, and only its hash is stored
    assert key.startswith("sr_")
    assert len(key) > 30
    row = await pg.fetchrow("SELECT name, scope, key_hash FROM api_keys")
    assert (row["name"], row["scope"]) == ("ops", "admin")
    assert key not in row["key_hash"]
    assert await pg.fetchval("SELECT count(*) FROM api_keys WHERE key_hash LIKE '%' || $1 || '%'", key) == 0


async def test_write_key_from_the_cli_can_write(client, write_key) -> None:
    # Given a key with the write scope
    # When it creates, changes and deletes a category
    created = await client.post("/api/categories", json={"name": "Tools"}, headers=bearer(write_key))
    patched = await client.patch("/api/categories/tools", json={"name": "X"}, headers=bearer(write_key))
    deleted = await client.delete("/api/categories/tools", headers=bearer(write_key))
    # Then each is allowed
    assert (created.status, patched.status, deleted.status) == (201, 200, 204)


async def test_write_key_calling_restore_is_403(client, write_key) -> None:
    # Given a deleted category
    await category(client, "Tools")
    await client.delete("/api/categories/tools", headers=ADMIN)
    # When a write key restores it
    r = await client.post("/api/categories/tools/restore", headers=bearer(write_key))
    # Then it is forbidden and the category stays deleted
    await problem(r, 403)
    assert (await client.get("/api/categories/tools")).status == 404


async def test_admin_key_from_the_cli_can_restore(client, database_url) -> None:
    key = _make_key(database_url, "ops", "admin")
    await category(client, "Tools")
    await client.delete("/api/categories/tools", headers=ADMIN)
    r = await client.post("/api/categories/tools/restore", headers=bearer(key))
    assert r.status == 200


async def test_revoked_key_is_401(aiohttp_client, settings, pg, database_url) -> None:
    # Given a key that was revoked before the app ever saw it
    key = _make_key(database_url, "gone", "write")
    await pg.execute("UPDATE api_keys SET revoked_at = now()")
    client = await aiohttp_client(create_app(settings))
    # When it is used
    r = await client.post("/api/categories", json={"name": "Tools"}, headers=bearer(key))
    # Then it is refused
    await problem(r, 401)


async def test_auth_disabled_lets_writes_through_without_a_key(aiohttp_client, settings: Settings, pg) -> None:
    # Given an app started with AUTH_DISABLED=true
    client = await aiohttp_client(create_app(settings.model_copy(update={"auth_disabled": True})))
    # When a category is created and restored without any key
    created = await client.post("/api/categories", json={"name": "Tools"})
    await client.delete("/api/categories/tools")
    restored = await client.post("/api/categories/tools/restore")
    # Then both succeed
    assert (created.status, restored.status) == (201, 200)


async def test_auth_disabled_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_DISABLED", "true")
    assert Settings(_env_file=None).auth_disabled is True  # type: ignore[call-arg]
