"""``make run`` stops every process, once, however make is stopped: Ctrl-C, or SIGINT or SIGTERM to make's pid."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.support.processes import ROOT, env_for, free_port

#: A master and its worker, as dramatiq runs them (one process group): the master passes a SIGTERM on to the worker
#: (a moment later, so that a second signal to the group cannot merge with it). Both record every SIGTERM and
#: SIGINT they get; the worker takes 6 s to finish its work, longer than honcho waited before its SIGKILL.
RECORDER = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    from pathlib import Path
    log, ready, role = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    stop = []
    def got(signum, _):
        with log.open("a") as f:
            f.write(f"{role}:{signal.Signals(signum).name}\\n")
        stop.append(time.monotonic())
    signal.signal(signal.SIGTERM, got)
    signal.signal(signal.SIGINT, got)
    if role == "master":
        worker = subprocess.Popen([sys.executable, *sys.argv[:3], "worker"])
        while not stop:
            time.sleep(0.05)
        time.sleep(0.3)
        worker.send_signal(signal.SIGTERM)
        sys.exit(worker.wait())
    ready.write_text("ready")
    while not stop or time.monotonic() - stop[0] < 6.0:
        time.sleep(0.05)
    """
)


def sessions_alive(sids: list[int]) -> list[int]:
    """The pids of live processes in any of these sessions."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sids and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


@pytest.mark.parametrize("how", ["Ctrl-C", "SIGINT to make", "SIGTERM to make"])
def test_make_run_stops_every_process_once(settings: Settings, rabbitmq_url: str, tmp_path: Path, how: str) -> None:
    # Given `make run` with a Procfile of a real dramatiq worker and a process that records its signals
    (tmp_path / "recorder.py").write_text(RECORDER)
    signals, ready = tmp_path / "signals", tmp_path / "ready"
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        f"cache: exec {sys.executable} -m worker cache\n"
        f"recorder: exec {sys.executable} {tmp_path / 'recorder.py'} {signals} {ready} master\n"
    )
    env = env_for(settings, dramatiq_prom_port=str(free_port()), MAKEFLAGS="", MAKELEVEL="")
    log = tmp_path / "make.log"
    with log.open("wb") as out:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PROCFILE={procfile}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives it
        )
    try:
        deadline = time.monotonic() + 90
        while not (ready.exists() and "Worker process is ready" in log.read_text(errors="replace")):
            assert make.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        pids = [int(p) for p in re.findall(r"started \(pid=(\d+)\)", log.read_text())]
        assert len(pids) == 2
        # When make is stopped
        if how == "Ctrl-C":
            os.killpg(make.pid, signal.SIGINT)  # what a terminal does: the whole foreground group
        else:
            make.send_signal(signal.SIGINT if how == "SIGINT to make" else signal.SIGTERM)
        # Then make exits, and with it every process of the stack (dramatiq's workers included)
        make.wait(timeout=60)
        output = log.read_text(errors="replace")
        assert sessions_alive(pids) == [], output
        # And each got exactly one SIGTERM (workers from their master only), and had the time to finish
        assert sorted(signals.read_text().split()) == ["master:SIGTERM", "worker:SIGTERM"], output
        assert "Stopping worker process" in output
        assert "Killing worker process" not in output
        assert "cache stopped (rc=0)" in output
        assert "recorder stopped (rc=0)" in output
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
