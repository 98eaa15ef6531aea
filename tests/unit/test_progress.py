"""Progress bars through a pipe (``make run``'s process manager, container logs): whole lines, never redraws."""

from __future__ import annotations

import io
import time

import pytest

from worker import progress
from worker.progress import LineWriter, progress_bar


def test_off_a_terminal_the_bar_is_written_as_whole_lines(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given stderr that is no terminal, and a line at most every 10 ms
    monkeypatch.setattr(progress, "LINE_INTERVAL", 0.01)
    # When a bar of 3 steps advances, slowly enough for a line each time
    with progress_bar(total=3, desc="products", unit="") as bar:
        for _ in range(3):
            time.sleep(0.02)
            bar.update(1)
    err = capsys.readouterr().err
    # Then there is no carriage return: each state is a line of its own, the last one complete
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) >= 3, err
    assert all(line.startswith("products:") for line in lines), err
    assert "100%" in lines[-1]
    assert "3/3" in lines[-1]


def test_the_line_writer_turns_redraws_into_lines() -> None:
    out = io.StringIO()
    writer = LineWriter(out)

    writer.write("\rusers:  50%|#####     | 1/2")
    writer.write("\rusers: 100%|##########| 2/2   ")
    writer.write("\n")

    assert out.getvalue() == "users:  50%|#####     | 1/2\nusers: 100%|##########| 2/2\n"


def test_a_disabled_bar_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar(total=2, desc="records", disable=True) as bar:
        bar.update(2)

    assert capsys.readouterr().err == ""
