"""CURSOR_SECRET: set, it is used; unset, the first process makes one in ``cursor_secret_file`` and every later one
(a restart, another ``--workers`` process) reads the same."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from shared.settings import Settings, with_cursor_secret


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_the_setting_wins_and_no_file_is_made(tmp_path: Path) -> None:
    s = with_cursor_secret(_settings(cursor_secret="a-secret-of-sixteen+", cursor_secret_file=str(tmp_path / "k")))

    assert s.cursor_secret == SecretStr("a-secret-of-sixteen+")
    assert not (tmp_path / "k").exists()


def test_without_the_setting_one_secret_is_made_once_and_kept(tmp_path: Path) -> None:
    # Given no CURSOR_SECRET and no file yet
    path = tmp_path / "var" / "cursor-secret"

    # When a process starts, and then another (a restart)
    first = with_cursor_secret(_settings(cursor_secret_file=str(path)))
    second = with_cursor_secret(_settings(cursor_secret_file=str(path)))

    # Then both sign with the same generated secret, kept in a file only its owner reads
    assert first.cursor_secret is not None
    assert len(first.cursor_secret.get_secret_value()) >= 32
    assert first.cursor_secret == second.cursor_secret
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["cursor-secret"]


def test_a_short_secret_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="CURSOR_SECRET"):
        _settings(cursor_secret="short")


def test_the_secret_never_shows_in_the_settings_repr() -> None:
    assert "a-secret-of-sixteen+" not in repr(_settings(cursor_secret="a-secret-of-sixteen+"))
