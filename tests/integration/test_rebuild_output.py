"""``python -m worker cache rebuild`` as ``make run`` starts it: its output read through a pipe, line by line."""

from __future__ import annotations

import asyncio
import sys

from aiohttp.test_utils import TestClient

from shared.settings import Settings
from tests.support.api import category
from tests.support.processes import ROOT, env_for


async def test_rebuild_progress_through_a_pipe_is_whole_lines(client: TestClient, settings: Settings) -> None:
    # Given two categories
    await category(client, "Tools")
    await category(client, "Seeds")
    # When a rebuild runs with its output on a pipe (a process manager's, a container's)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "worker", "cache", "rebuild"),
        cwd=ROOT,
        env=env_for(settings),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,  # bytes: a text-mode reader would turn each \r into a line end itself
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr
    # Then its progress is lines, no carriage-return redraws, each kind's last line complete
    err = stderr.decode()
    assert "\r" not in err
    lines = err.split("\n")
    assert any(line.startswith("categories: 100%") and "2/2" in line for line in lines), err
    assert any(line.startswith("products:") for line in lines), err
