"""The processes a bench run starts: started pinned to a core if asked, stopped by their pid; ports and readiness."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Proc:
    """A process the bench started (and so may stop), pinned to a core if asked."""

    def __init__(self, args: list[str], env: dict[str, str], core: int | None = None, log: Path | None = None):
        cmd = (["taskset", "-c", str(core)] if core is not None and shutil.which("taskset") else []) + args
        out = log.open("ab") if log else subprocess.DEVNULL
        self.p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"bench: {url} did not come up")
