"""`make run` for humans: console logs when make's output is a terminal, JSON otherwise, the environment first.

make itself is run (not its file read): with its standard output on a pseudo-terminal, and on a pipe.
"""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

import pytest

from ._files import ROOT

#: A target that prints what `make run` exports as LOG_FORMAT, added beside the Makefile (never in the repo).
PROBE = "probe-run-log-format:\n\t@echo LOG_FORMAT=$(RUN_LOG_FORMAT)\n"


def make_probe(tmp_path: Path, *, terminal: bool, **env: str) -> str:
    probe = tmp_path / "probe.mk"
    probe.write_text(PROBE)
    environ = {k: v for k, v in os.environ.items() if k not in ("LOG_FORMAT", "MAKEFLAGS", "MAKELEVEL")}
    environ.update(env)
    argv = ["make", "-s", "-C", str(tmp_path), "-f", str(ROOT / "Makefile"), "-f", str(probe), "probe-run-log-format"]
    if not terminal:
        return subprocess.run(argv, env=environ, capture_output=True, text=True, check=True, timeout=30).stdout
    main, child = pty.openpty()
    try:
        proc = subprocess.Popen(argv, env=environ, stdout=child, stderr=subprocess.DEVNULL)
        os.close(child)
        out = b""
        while chunk := _read(main):
            out += chunk
        assert proc.wait(timeout=30) == 0
    finally:
        os.close(main)
    return out.decode()


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: the other side closed
        return b""


def test_make_run_logs_for_humans_on_a_terminal(tmp_path: Path) -> None:
    assert make_probe(tmp_path, terminal=True).strip() == "LOG_FORMAT=console"


def test_make_run_logs_json_when_its_output_is_not_a_terminal(tmp_path: Path) -> None:
    assert make_probe(tmp_path, terminal=False).strip() == "LOG_FORMAT=json"


@pytest.mark.parametrize("terminal", [True, False])
def test_log_format_from_the_environment_wins(tmp_path: Path, terminal: bool) -> None:
    assert make_probe(tmp_path, terminal=terminal, LOG_FORMAT="json").strip() == "LOG_FORMAT=json"


def test_log_format_from_dot_env_wins_over_the_terminal(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LOG_LEVEL=INFO\nLOG_FORMAT=json\n")

    assert make_probe(tmp_path, terminal=True).strip() == "LOG_FORMAT=json"


def test_make_run_exports_that_choice_to_its_processes() -> None:
    makefile = (ROOT / "Makefile").read_text()

    assert "run: export LOG_FORMAT := $(RUN_LOG_FORMAT)\n" in makefile
