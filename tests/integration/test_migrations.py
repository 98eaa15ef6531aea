"""The migration runner: idempotent, safe to run concurrently, refuses edited history, creates the database."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from migrations.runner import MIGRATIONS_DIR, MigrationError, discover, migrate
from tests.conftest import _dsn, drop_database
from tests.support.processes import run_python


@pytest.fixture
async def fresh_dsn(services: None) -> AsyncIterator[str]:
    """The DSN of a database that does not exist yet (dropped after the test if something made it)."""
    name = f"stockroom_mig_{uuid.uuid4().hex[:12]}"
    yield _dsn(name)
    await drop_database(name)


async def _applied(dsn: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    return [(r["version"], r["name"]) for r in rows]


def _write(directory: Path, name: str, sql: str) -> None:
    (directory / name).write_text(sql, encoding="utf-8")


async def test_migrate_creates_the_database_when_missing(fresh_dsn) -> None:
    # Given a database name that does not exist
    # When the project's migrations run against it
    applied = await migrate(fresh_dsn)
    # Then the database exists with every migration recorded once
    expected = [m.name for m in discover()]
    assert applied == expected
    assert [name for _, name in await _applied(fresh_dsn)] == expected


async def test_second_run_applies_nothing(fresh_dsn) -> None:
    # Given a migrated database
    await migrate(fresh_dsn)
    # When the runner runs again
    again = await migrate(fresh_dsn)
    # Then nothing is applied and the history is unchanged
    assert again == []
    assert len(await _applied(fresh_dsn)) == len(discover())


async def test_concurrent_runs_on_a_new_database_apply_each_migration_once(fresh_dsn) -> None:
    # Given a database that does not exist yet
    # When two runners start at the same time
    first, second = await asyncio.gather(migrate(fresh_dsn), migrate(fresh_dsn))
    # Then both succeed, and between them each migration was applied exactly once
    expected = [m.name for m in discover()]
    assert sorted(first + second) == sorted(expected)
    assert [] in (first, second)
    assert [name for _, name in await _applied(fresh_dsn)] == expected


async def test_only_pending_migrations_are_applied_in_order(fresh_dsn, tmp_path: Path) -> None:
    # Given a directory with one migration, applied
    _write(tmp_path, "0001_first.sql", "CREATE TABLE a (id int);")
    assert await migrate(fresh_dsn, tmp_path) == ["0001_first.sql"]
    # When two more are added and the runner runs again
    _write(tmp_path, "0003_third.sql", "INSERT INTO a VALUES (3);")
    _write(tmp_path, "0002_second.sql", "INSERT INTO a VALUES (2);")
    applied = await migrate(fresh_dsn, tmp_path)
    # Then only those run, in version order
    assert applied == ["0002_second.sql", "0003_third.sql"]
    conn = await asyncpg.connect(fresh_dsn)
    try:
        assert [r["id"] for r in await conn.fetch("SELECT id FROM a")] == [2, 3]
    finally:
        await conn.close()


async def test_edited_applied_migration_raises(fresh_dsn, tmp_path: Path) -> None:
    # Given an applied migration
    _write(tmp_path, "0001_first.sql", "CREATE TABLE a (id int);")
    await migrate(fresh_dsn, tmp_path)
    # When its file is edited and the runner runs
    _write(tmp_path, "0001_first.sql", "CREATE TABLE a (id bigint);")
    # Then it refuses
    with pytest.raises(MigrationError, match=r"0001_first\.sql was edited"):
        await migrate(fresh_dsn, tmp_path)


async def test_failing_migration_is_rolled_back_and_not_recorded(fresh_dsn, tmp_path: Path) -> None:
    # Given a good migration and a broken one after it
    _write(tmp_path, "0001_first.sql", "CREATE TABLE a (id int);")
    _write(tmp_path, "0002_broken.sql", "CREATE TABLE b (id int); SELECT no_such_function();")
    # When the runner runs
    with pytest.raises(asyncpg.PostgresError):
        await migrate(fresh_dsn, tmp_path)
    # Then the first is recorded, the broken one left nothing behind, and the lock is free for the next run
    assert await _applied(fresh_dsn) == [(1, "0001_first.sql")]
    conn = await asyncpg.connect(fresh_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('b')") is None
    finally:
        await conn.close()
    _write(tmp_path, "0002_broken.sql", "CREATE TABLE b (id int);")
    assert await migrate(fresh_dsn, tmp_path) == ["0002_broken.sql"]


@pytest.mark.parametrize("name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql"])
def test_badly_named_file_raises(tmp_path: Path, name: str) -> None:
    _write(tmp_path, name, "SELECT 1;")
    with pytest.raises(MigrationError):
        discover(tmp_path)


def test_two_files_with_one_number_raise(tmp_path: Path) -> None:
    _write(tmp_path, "0001_a.sql", "SELECT 1;")
    _write(tmp_path, "0001_b.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="used twice"):
        discover(tmp_path)


def test_project_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in discover(MIGRATIONS_DIR)]
    assert versions == list(range(1, len(versions) + 1))


@pytest.mark.parametrize("argv", [["--help"], ["--nonsense"], ["upgrade"]])
async def test_the_command_applies_nothing_when_given_arguments(fresh_dsn, argv: list[str]) -> None:
    # Given a database that does not exist yet, when the command is run with an argument (it takes none)
    done = await asyncio.to_thread(
        run_python, "-m", "migrations", *argv, env={**os.environ, "DATABASE_URL": fresh_dsn}, timeout=60
    )
    # Then --help prints its usage and succeeds, anything else is refused, and nothing was applied (the runner
    # creates a missing database first: it was not even created)
    assert done.returncode == (0 if argv == ["--help"] else 2), done.stderr
    assert "usage: python -m migrations" in done.stdout + done.stderr
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(fresh_dsn)
