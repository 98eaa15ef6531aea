"""`make run`'s process runner: every line of a Procfile as one process, their output interleaved, one stop for all.

    python scripts/procs.py [--while FILE] [--grace SECONDS] Procfile

Each line (`name: command`) runs under bash in a session of its own, so a terminal's Ctrl-C reaches only this
runner (and make), never the processes themselves. A stop sends each of them exactly one SIGTERM, to the process
alone (not its group): a dramatiq master passes it on to its workers once (a second SIGTERM kills a dramatiq
worker at once, unfinished messages and all), `python -m api --workers N` to its children likewise. So every
Procfile command must `exec` its one process.

The stack stops when this runner gets SIGINT or SIGTERM, when any process exits, or when FILE (`--while`)
disappears. The last is how `make run` stops it on every signal make gets: make deletes the target of a recipe
still running on SIGINT, SIGTERM, SIGHUP or SIGQUIT (GNU make's manual, "Interrupts"), even when, as with a SIGINT
sent to make's pid alone, it passes the signal on to no one. Processes get `--grace` seconds to finish (enough
for the thumbnail worker's 10-minute jobs), then SIGKILL; a second SIGINT or SIGTERM kills them at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

#: How often the runner looks at its processes and at the `--while` file.
TICK = 0.2


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    signalled: bool = False


def parse_procfile(path: Path) -> list[tuple[str, str]]:
    entries = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or not command.strip():
            raise SystemExit(f"{path}: not 'name: command': {raw!r}")
        entries.append((name.strip(), command.strip()))
    return entries


def say(width: int, name: str, text: str) -> None:
    sys.stdout.write(f"{time.strftime('%H:%M:%S')} {name:<{width}} | {text}\n")
    sys.stdout.flush()


def pump(proc: Proc, width: int) -> None:
    assert proc.popen.stdout is not None
    for line in iter(proc.popen.stdout.readline, b""):
        say(width, proc.name, line.decode("utf-8", "replace").rstrip("\n"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/procs.py", description=__doc__.split("\n")[0])
    parser.add_argument("procfile", type=Path)
    parser.add_argument("--while", dest="sentinel", type=Path, help="stop everything once this file is gone")
    parser.add_argument("--grace", type=float, default=660.0, help="seconds to finish after SIGTERM (%(default)s)")
    args = parser.parse_args(argv)
    entries = parse_procfile(args.procfile)
    width = max([len(n) for n, _ in entries] + [6])

    requests: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _: requests.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, _: requests.append(signum))
    if args.sentinel is not None:
        args.sentinel.parent.mkdir(parents=True, exist_ok=True)
        # Written after make looked at it, so its time differs from what make saw: make deletes it on a signal.
        args.sentinel.write_text(f"{os.getpid()}\n")

    procs: list[Proc] = []
    for name, command in entries:
        popen = subprocess.Popen(
            ["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        proc = Proc(name, popen)
        procs.append(proc)
        threading.Thread(target=pump, args=(proc, width), daemon=True).start()
        say(width, "procs", f"{name} started (pid={popen.pid})")

    code = 0
    stopping_since: float | None = None
    reported: set[str] = set()
    try:
        while True:
            for p in procs:
                rc = p.popen.poll()
                if rc is not None and p.name not in reported:
                    reported.add(p.name)
                    say(width, "procs", f"{p.name} stopped (rc={rc})")
                    if stopping_since is None:
                        code = rc or 1  # one process ending on its own ends the stack, as a failure
            if len(reported) == len(procs):
                break
            why = None
            if requests and stopping_since is None:
                why = f"{signal.Signals(requests[0]).name} received"
            elif args.sentinel is not None and stopping_since is None and not args.sentinel.exists():
                why = f"{args.sentinel} is gone (make was stopped)"
            elif reported and stopping_since is None:
                why = "a process stopped"
            if why is not None:
                say(width, "procs", f"{why}: sending SIGTERM to every process")
                stopping_since = time.monotonic()
                for p in procs:
                    if p.popen.poll() is None and not p.signalled:
                        p.signalled = True
                        os.kill(p.popen.pid, signal.SIGTERM)
            elif stopping_since is not None and (len(requests) > 1 or time.monotonic() - stopping_since > args.grace):
                say(width, "procs", "sending SIGKILL to every process group")
                for p in procs:
                    if p.popen.poll() is None:
                        os.killpg(p.popen.pid, signal.SIGKILL)
                requests.clear()
                requests.append(signal.SIGKILL)
            time.sleep(TICK)
    finally:
        if args.sentinel is not None:
            args.sentinel.unlink(missing_ok=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
