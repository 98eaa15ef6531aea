"""Progress bars that read well on a terminal and through a process manager or a log file alike.

On a terminal, tqdm's bar redraws one line with carriage returns. Anywhere else (``make run``'s process manager
reads each process's output through a pipe, line by line; so do container logs) those redraws pile up as one
endless line, shown only when the command ends. There the bar is written as whole lines instead, at most one
every :data:`LINE_INTERVAL` seconds, and a last one when it is done.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from tqdm import tqdm

#: Seconds between two progress lines when the output is not a terminal.
LINE_INTERVAL = 5.0


class LineWriter:
    """A file for tqdm that turns each redraw (``\\r`` + the bar) into a line of its own."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, text: str) -> int:
        for part in text.replace("\r", "\n").split("\n"):
            if part.strip():
                self.out.write(part.rstrip() + "\n")
        return len(text)

    def flush(self) -> None:
        self.out.flush()


def progress_bar(*, total: int | None, desc: str, unit: str = "it", disable: bool = False) -> tqdm[Any]:
    """tqdm on stderr: redrawn in place on a terminal, else whole lines every few seconds."""
    out = sys.stderr
    if disable or out.isatty():
        return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=out)
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=LineWriter(out),
        mininterval=LINE_INTERVAL,
        # Without a terminal tqdm cannot know the width: a fixed one keeps the lines short and alike.
        ncols=80,
        ascii=True,
    )
