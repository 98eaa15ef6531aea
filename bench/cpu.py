"""CPU time of processes and their descendants, read from /proc (Linux): where an event's CPU goes."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int, own: bool = False) -> tuple[str, int, float] | None:
    """(command name, parent pid, CPU seconds) of one process, or None if it is gone. The seconds are its own user
    and system time plus that of its children it has reaped: a worker process or a PostgreSQL backend that
    ended during the measurement still counts, in its parent. ``own``: its own time only."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The name is in parentheses and may hold spaces; the fields after it are numbers.
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return name, int(fields[1]), sum(int(x) for x in fields[11 : 13 if own else 15]) / _TICK


def _table() -> dict[int, tuple[str, int, float]]:
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = st
    return table


def snapshot(roots: Mapping[str, int], names: Mapping[str, Iterable[str]]) -> dict[str, float]:
    """CPU seconds so far, per label: of each root pid with all its descendants (``roots``), and of every
    process whose command name is one of the given ones (``names``: e.g. all of PostgreSQL's processes)."""
    table = _table()
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[str, float] = {}
    for label, root in roots.items():
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            if pid in table:
                total += table[pid][2]
            todo.extend(children.get(pid, ()))
        out[label] = total
    for label, commands in names.items():
        wanted = set(commands)
        out[label] = sum(seconds for name, _, seconds in table.values() if name in wanted)
    return out


def postgres(database: str) -> float:
    """CPU seconds so far of PostgreSQL's work for ``database``: the backends connected to it and the server's
    shared processes (postmaster, WAL writer, checkpointer...), each its own time only. The postmaster's reaped
    children are left out: on a machine shared with test suites they are mostly other databases' ended sessions."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            args = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if not args.startswith("postgres: ") and "/bin/postgres " not in args:
            continue
        # A backend's title: "postgres: 15/main: <user> <database> <address> <state>"; the shared ones have none.
        parts = args.split()
        backend = len(parts) >= 5 and ("(" in parts[4] or parts[4][:1].isdigit() or parts[4] == "[local]")
        if backend and parts[3] != database:
            continue
        if (st := _stat(int(entry.name), own=True)) is not None:
            total += st[2]
    return total
