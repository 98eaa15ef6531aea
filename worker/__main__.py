"""``python -m worker relay | cache [rebuild] | thumbnails [regenerate | collect] | dead-letters list|replay|purge``."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from shared.events import CACHE_QUEUE, THUMBNAILS_QUEUE
from shared.settings import Settings

#: The cache worker's default threads: a batch holds up to one event per thread (measured in bench/RESULTS.md).
CACHE_THREADS = 16
#: dramatiq entry modules: each sets up the broker, then imports its actors.
ENTRIES = {"cache": ("worker.readmodel.boot", CACHE_QUEUE), "thumbnails": ("worker.thumbnails.boot", THUMBNAILS_QUEUE)}


def _dramatiq(kind: str, argv: list[str]) -> int:
    """Run dramatiq's own CLI for one queue; ``--processes`` defaults to 1, not the host's CPU count."""
    # dramatiq's consumer handles acks and new deliveries only when it wakes, by default once a second when
    # idle; with a small prefetch that throttled the cache worker to seconds of lag at 200 events/s (measured in
    # bench/). 100 ms keeps it prompt at a negligible cost. Read at import, so set before it; the env wins.
    os.environ.setdefault("dramatiq_worker_timeout", "100")
    # dramatiq's Prometheus middleware listens on dramatiq_prom_host (read at import, default 0.0.0.0): loopback
    # here unless told otherwise, like the relay's port.
    os.environ.setdefault("dramatiq_prom_host", Settings().worker_metrics_host)
    metrics_dir = _fresh_metrics_dir(kind)
    try:
        return _run_dramatiq(kind, argv)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _fresh_metrics_dir(kind: str) -> str:
    """A new, empty directory for this worker's Prometheus multiprocess files, named in the environment its
    processes inherit. dramatiq's middleware defaults to one shared folder (``$TMPDIR/dramatiq-prometheus``) that
    its exposition server sums over: every worker on a host then reported the others' counts, and a SIGKILLed
    process's gauge (in progress: 1) for ever. Set before dramatiq or prometheus_client is imported: both read
    it at import."""
    path = tempfile.mkdtemp(prefix=f"stockroom-{kind}-metrics-{os.getpid()}-")
    os.environ["dramatiq_prom_db"] = path  # noqa: SIM112  (dramatiq reads it in lower case)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def _run_dramatiq(kind: str, argv: list[str]) -> int:
    import dramatiq.cli

    parser = argparse.ArgumentParser(prog=f"python -m worker {kind}")
    parser.add_argument("--processes", "-p", type=int, default=1)
    # The cache worker projects the events of all its threads' messages in one batch: its threads are the batch.
    parser.add_argument("--threads", "-t", type=int, default=CACHE_THREADS if kind == "cache" else 1)
    args = parser.parse_args(argv)
    module, queue = ENTRIES[kind]
    # A thumbnail job may take minutes (its time limit is 10): on SIGTERM let it finish rather than requeue it.
    shutdown_ms = "600000" if kind == "thumbnails" else "30000"
    dargs = dramatiq.cli.make_argument_parser().parse_args(  # type: ignore[no-untyped-call]
        [
            module,
            "--processes",
            str(args.processes),
            "--threads",
            str(args.threads),
            "--queues",
            queue,
            "--skip-logging",
            "--worker-shutdown-timeout",
            shutdown_ms,
        ]
    )
    code = dramatiq.cli.main(dargs)  # type: ignore[no-untyped-call]
    return int(code or 0)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(__doc__ + "\n")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "dead-letters":
        from worker.dead_letters import main as dead_letters_main

        return dead_letters_main(rest)
    if command == "relay":
        from worker.relay import main as relay_main

        return relay_main(rest)
    if command == "cache" and rest[:1] == ["rebuild"]:
        from worker.readmodel.rebuild import main as rebuild_main

        return rebuild_main(rest[1:])
    if command == "thumbnails" and rest[:1] == ["regenerate"]:
        from worker.thumbnails.regenerate import main as regenerate_main

        return regenerate_main(rest[1:])
    if command == "thumbnails" and rest[:1] == ["collect"]:
        from worker.thumbnails.collect import main as collect_main

        return collect_main(rest[1:])
    if command in ENTRIES:
        return _dramatiq(command, rest)
    sys.stderr.write(f"unknown command {command!r}; expected relay, cache, thumbnails or dead-letters\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
