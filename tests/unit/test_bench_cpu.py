"""The bench's CPU accounting: a process's descendants count towards it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import cpu

BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


def test_the_cpu_of_a_grandchild_counts_for_its_root() -> None:
    # Given a process whose child burns 0.3 s of CPU (as dramatiq's parent and its worker processes)
    root = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BURN!r}])"]
    )
    before = cpu.snapshot({"root": root.pid}, {})
    # When the child has burnt it and ended (the root waits for it)
    after = before
    while root.poll() is None:
        after = cpu.snapshot({"root": root.pid}, {})
    # Then the root's count grew by most of it, whether the last look saw the child alive or already reaped
    assert after["root"] - before["root"] >= 0.2


def test_processes_are_counted_by_command_name() -> None:
    # This interpreter is one of the processes named like it
    name = Path("/proc/self/comm").read_text().strip()
    assert cpu.snapshot({}, {"us": [name]})["us"] > 0
    assert cpu.snapshot({}, {"nobody": ["no-such-command"]})["nobody"] == 0
