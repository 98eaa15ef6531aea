"""The event pipeline's capacity: its ceiling, the drain of a burst, sustained creates and latency, CPU per event.

Scenarios (``BENCH_ONLY`` names), each run by :func:`run` inside ``make bench``'s stack:

- ``drain``: the ceiling first, a bare aio-pika publisher with pipelined confirms and a bare consumer doing one
  Redis write per message, as two processes moving :data:`BURST` persistent messages at once (messages/s end to
  end); then the API alone fills the outbox with :data:`BURST` creates (write-through off, no relay running: the
  API's create rate alone), then the relay and one cache worker process are started and the drain rate is timed
  from the first projection to the last, with the CPU of every process over that window.
- ``drain2``: the same burst again, drained by two cache worker processes.
- ``sustained``: the whole stack (API, relay, one cache worker) at :data:`SUSTAINED_RATE` creates/s for
  :data:`PHASE_SECONDS`: creates accepted per second and commit -> projection p50/p95/p99.
- ``latency``: commit -> projection at 200 writes/s and at half the measured drain rate, with CPU per event.

The latency probe is :mod:`bench.latency` (one poller for every pending slug); CPU per event is :mod:`bench.cpu`.
``python -m bench.pipeline consume|publish`` are the ceiling's two processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import redis
import redis.asyncio as aioredis

from bench import cpu, latency
from bench.stack import Proc, free_port, wait_http
from shared.readmodel.keys import product_index

#: The API keys the bench seeded (set by :func:`run`): creates are spread over them (50/s per key by default).
_KEYS: list[str] = []

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
#: Events in a burst, and messages the ceiling moves.
BURST = int(os.environ.get("BENCH_BURST", 20_000))
#: Creates in flight while the API fills the outbox.
FILL_CONCURRENCY = 64
#: The whole stack's target rate (issue 12), and the seconds of every steady phase.
SUSTAINED_RATE = 600
LATENCY_RATE = 200
PHASE_SECONDS = float(os.environ.get("BENCH_PHASE_SECONDS", 10))
#: Seconds of a drain that ``BENCH_PROFILE`` samples.
PROFILE_SECONDS = 8
#: A drain that has not finished after this many seconds is reported as it stands.
DRAIN_LIMIT = 120.0
#: The ceiling's queue (in the bench's vhost) and its consumer's prefetch; the publisher keeps this many unconfirmed.
CEILING_QUEUE = "bench-ceiling"
PREFETCH = 100
IN_FLIGHT = 100
#: Targets (issue 12 item 1).
TARGETS = {
    "drain": 1000.0,
    "drain_ceiling": 0.50,
    "drain_create": 1.0,
    "sustained": 600.0,
    "sustained_p99": 250.0,
    "latency_p99": 50.0,
    "burst_cpu": 1.5,
    "steady_cpu": 2.5,
}
#: The processes whose CPU is the pipeline's own cost (the API and PostgreSQL are the write's).
PIPELINE = ("relay", "cache worker", "RabbitMQ")
#: The shared servers counted by command name (every process: RabbitMQ and Redis cannot tell one user from another).
SHARED_SERVERS = {"RabbitMQ": ["beam.smp"], "Redis": ["redis-server"]}
SCENARIOS = ("drain", "drain2", "sustained", "latency")


@dataclass
class Figures:
    """Everything the pipeline scenarios measured, for the table."""

    ceiling: float = 0.0
    create_alone: list[float] = field(default_factory=list)
    #: Creates of the fills that were not accepted (503 overload on a busy machine, for example).
    fill_failed: int = 0
    drain: dict[int, float] = field(default_factory=dict)
    drain_cpu: dict[int, dict[str, float]] = field(default_factory=dict)
    relay_alone: list[float] = field(default_factory=list)
    worker_alone: dict[int, float] = field(default_factory=dict)
    worker_alone_cpu: dict[int, float] = field(default_factory=dict)
    steady: dict[str, dict[str, float]] = field(default_factory=dict)
    steady_cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    load: list[str] = field(default_factory=list)


def _cpu(roots: dict[str, int], env: dict[str, str]) -> dict[str, float]:
    """CPU seconds so far: our processes, PostgreSQL's for the bench's database, RabbitMQ and Redis."""
    return {**cpu.snapshot(roots, SHARED_SERVERS), "PostgreSQL": cpu.postgres(env["DATABASE_URL"].rsplit("/", 1)[1])}


def _uptime() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split(" ", 3)[:3])


# -- the ceiling: two bare processes ---------------------------------------------------------------------------


async def _consume(url: str, redis_url: str, count: int) -> None:
    """Consume ``count`` messages, one Redis SET and one ack each; print the time of the first and the last."""
    r = aioredis.from_url(redis_url)
    conn = await aio_pika.connect(url)
    channel = await conn.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    queue = await channel.declare_queue(CEILING_QUEUE, durable=True)
    await queue.purge()
    got, first, done = 0, 0.0, asyncio.Event()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal got, first
        await r.set(f"bench:ceiling:{got % 1000}", message.body)
        await message.ack()
        got += 1
        if got == 1:
            first = time.time()
        if got >= count:
            done.set()

    await queue.consume(on_message)
    print("READY", flush=True)
    await done.wait()
    print("BENCHJSON " + json.dumps({"first": first, "last": time.time(), "count": got}), flush=True)
    await conn.close()
    await r.aclose()


async def _publish(url: str, count: int) -> None:
    """Publish ``count`` persistent messages with confirms, :data:`IN_FLIGHT` unconfirmed at a time."""
    conn = await aio_pika.connect(url)
    channel = await conn.channel(publisher_confirms=True)
    body = b'{"queue_name":"bench-ceiling","actor_name":"a","args":[{"id":"' + b"0" * 200 + b'"}],"kwargs":{}}'
    started = time.time()
    for start in range(0, count, IN_FLIGHT):
        await asyncio.gather(
            *(
                channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), CEILING_QUEUE
                )
                for _ in range(min(IN_FLIGHT, count - start))
            )
        )
    print("BENCHJSON " + json.dumps({"started": started, "confirmed": time.time()}), flush=True)
    await conn.close()


def _ceiling(env: dict[str, str]) -> float:
    """Messages/s end to end, publisher and consumer running at once."""
    consumer = subprocess.Popen(
        [PY, "-m", "bench.pipeline", "consume", "--count", str(BURST)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert consumer.stdout is not None
        if consumer.stdout.readline().strip() != "READY":
            raise SystemExit("bench: the ceiling's consumer did not start")
        started = _child(["publish", "--count", str(BURST)], env)["started"]
        out, _ = consumer.communicate(timeout=DRAIN_LIMIT)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    got = _benchjson(out)
    return float(got["count"] / (got["last"] - started))


def _child(args: list[str], env: dict[str, str], core: int | None = None) -> dict[str, Any]:
    """Run ``python -m bench.pipeline ARGS`` (pinned to ``core`` if given) and return what it printed."""
    pin = ["taskset", "-c", str(core)] if core is not None else []
    out = subprocess.run(
        [*pin, PY, "-m", "bench.pipeline", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    if out.returncode != 0:
        raise SystemExit(f"bench: {args[0]} failed:\n{out.stderr[-3000:]}")
    return _benchjson(out.stdout)


def _benchjson(stdout: str) -> dict[str, Any]:
    line = next(x for x in stdout.splitlines() if x.startswith("BENCHJSON "))
    result: dict[str, Any] = json.loads(line.removeprefix("BENCHJSON "))
    return result


# -- the burst ---------------------------------------------------------------------------------------------------


async def _fill(url: str, keys: Sequence[str], count: int, tag: str) -> tuple[float, int]:
    """``count`` creates through the API, :data:`FILL_CONCURRENCY` in flight: creates/s, and how many failed."""
    todo = iter(range(count))
    failed = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failed
        for n in todo:
            key = keys[n % len(keys)]
            headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": f"10.252.{n % 200}.{n % 250 + 1}"}
            body = {"name": f"Burst {tag} {n}", "price": "2.50", "category": f"category-{n % 20 + 1}", "stock": 3}
            async with session.post(url + "/api/products", json=body, headers=headers) as r:
                failed += r.status != 201
                await r.read()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=FILL_CONCURRENCY)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(FILL_CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return (count - failed) / elapsed, failed


def _fill_process(
    env: dict[str, str], url: str, keys: Sequence[str], tag: str, count: int = BURST
) -> tuple[float, int]:
    """The fill, from a process of its own on core 1 (as wrk is): the bench's own work stays off the API's core."""
    args = ["fill", "--url", url, "--tag", tag, "--count", str(count), "--keys", ",".join(keys)]
    out = _child(args, env, core=1)
    return float(out["rate"]), int(out["failed"])


def _projected(r: redis.Redis) -> int:
    """Products in the read model's listing index: each projection of a new product adds one."""
    return int(r.zcard(product_index("created")))


def _drain(env: dict[str, str], logs: Path, redis_url: str, processes: int, figures: Figures, url: str) -> None:
    """Fill the outbox, then start the relay and ``processes`` cache worker processes and time the drain."""
    r = redis.Redis.from_url(redis_url)
    tag = f"{processes}-{int(time.time())}"
    rate, failed = _fill_process(env, url, _KEYS, tag)
    figures.create_alone.append(rate)
    figures.fill_failed += failed
    start_count = _projected(r)
    target = start_count + BURST - failed
    relay = Proc([PY, "-m", "worker", "relay"], env, None, logs / f"drain{processes}-relay.log")
    worker = Proc(
        [PY, "-m", "worker", "cache", "--processes", str(processes)], env, None, logs / f"drain{processes}-w.log"
    )
    roots = {"relay": relay.p.pid, "cache worker": worker.p.pid}
    try:
        deadline = time.monotonic() + DRAIN_LIMIT
        while _projected(r) == start_count and time.monotonic() < deadline:
            time.sleep(0.005)
        first, before = time.perf_counter(), _cpu(roots, env)
        first_count = _projected(r)
        spies = _profile(roots, processes)
        while (n := _projected(r)) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        last, after = time.perf_counter(), _cpu(roots, env)
        for spy in spies:
            spy.wait(30)
        events = max(1, n - first_count)
        figures.drain[processes] = events / max(1e-6, last - first)
        figures.drain_cpu[processes] = {k: (after[k] - before[k]) * 1000 / events for k in before}
        if n < target:
            print(f"  drain with {processes} worker(s) unfinished after {DRAIN_LIMIT:.0f} s: {n - start_count}")
    finally:
        worker.stop()
        relay.stop()
    figures.load.append(f"drain{processes}: load {_uptime()}")
    print(
        f"  burst of {BURST}: API alone {figures.create_alone[-1]:.0f} creates/s; drained by relay + {processes} "
        f"cache worker process(es) at {figures.drain[processes]:.0f} events/s; CPU/event "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in figures.drain_cpu[processes].items())
    )


async def _drain_outbox(dsn: str, limit: float) -> float:
    """Seconds from the first outbox row seen sent until none is unsent (polled every 10 ms)."""
    conn = await asyncpg.connect(dsn)
    try:
        sql = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
        total = await conn.fetchval(sql)
        deadline = time.monotonic() + limit
        first = None
        while time.monotonic() < deadline:
            left = await conn.fetchval(sql)
            if left < total and first is None:
                first = time.perf_counter()
            if not left:
                break
            await asyncio.sleep(0.01)
        return time.perf_counter() - (first or time.perf_counter())
    finally:
        await conn.close()


def _stage_by_stage(
    env: dict[str, str], logs: Path, redis_url: str, processes: int, figures: Figures, url: str
) -> None:
    """Half a burst through each stage alone: the relay publishes the filled outbox with no worker running (its rate
    alone), then ``processes`` cache worker processes project the queue it filled (theirs alone)."""
    r = redis.Redis.from_url(redis_url)
    count = BURST // 2
    _, failed = _fill_process(env, url, _KEYS, f"stage{processes}-{int(time.time())}", count)
    figures.fill_failed += failed
    relay = Proc([PY, "-m", "worker", "relay"], env, None, logs / f"stage{processes}-relay.log")
    try:
        seconds = asyncio.run(_drain_outbox(env["DATABASE_URL"], DRAIN_LIMIT))
    finally:
        relay.stop()
    figures.relay_alone.append((count - failed) / max(1e-6, seconds))
    start_count = _projected(r)
    target = start_count + count - failed
    worker = Proc([PY, "-m", "worker", "cache", "--processes", str(processes)], env, None, logs / "stage-w.log")
    roots = {"cache worker": worker.p.pid}
    try:
        deadline = time.monotonic() + DRAIN_LIMIT
        while _projected(r) == start_count and time.monotonic() < deadline:
            time.sleep(0.005)
        first, before, first_count = time.perf_counter(), _cpu(roots, env), _projected(r)
        while (n := _projected(r)) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        last, after = time.perf_counter(), _cpu(roots, env)
    finally:
        worker.stop()
    events = max(1, n - first_count)
    figures.worker_alone[processes] = events / max(1e-6, last - first)
    figures.worker_alone_cpu[processes] = (after["cache worker"] - before["cache worker"]) * 1000 / events
    figures.load.append(f"stage{processes}: load {_uptime()}")
    print(
        f"  half a burst, stage by stage: relay alone {figures.relay_alone[-1]:.0f} events/s; then {processes} cache "
        f"worker process(es) alone {figures.worker_alone[processes]:.0f} events/s "
        f"({figures.worker_alone_cpu[processes]:.2f} ms CPU per event)"
    )


def _profile(roots: dict[str, int], tag: object) -> list[subprocess.Popen[bytes]]:
    """With ``BENCH_PROFILE=DIR``: py-spy (``--nonblocking``: the process is never paused) samples the relay and the
    cache worker for :data:`PROFILE_SECONDS` of a drain or a steady phase, into DIR/<name>-<tag>.txt (raw, folded
    stacks); with ``BENCH_PROFILE_API=1`` the API too.
    Its own CPU then counts in the machine's, not in the figures of the processes it samples."""
    folder = os.environ.get("BENCH_PROFILE")
    if not folder:
        return []
    spy = [str(Path(PY).with_name("py-spy")), "record", "--nonblocking", "--subprocesses", "-r", "200", "-f", "raw"]
    return [
        subprocess.Popen(
            [
                *spy,
                "-d",
                str(PROFILE_SECONDS),
                "-o",
                _profile_path(folder, name, tag),
                "-p",
                str(pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in roots.items()
        if name != "API" or os.environ.get("BENCH_PROFILE_API")
    ]


def _profile_path(folder: str, name: str, tag: object) -> str:
    return f"{folder}/{name.replace(' ', '-')}-{str(tag).replace('/', '')}.txt"


# -- steady phases -------------------------------------------------------------------------------------------------


def _steady(
    name: str, rate: float, url: str, redis_url: str, roots: dict[str, int], env: dict[str, str], figures: Figures
) -> None:
    """``rate`` creates/s for :data:`PHASE_SECONDS` through the stack; latency and CPU per event."""
    before = _cpu(roots, env)
    probe = resource.getrusage(resource.RUSAGE_SELF)
    spies = _profile(roots, name)
    result = latency.run(url, redis_url, _KEYS, rate, PHASE_SECONDS)
    after = _cpu(roots, env)
    probed = resource.getrusage(resource.RUSAGE_SELF)
    # The probe itself (this process: the creates and the poller) shares the cores too: its cost is shown.
    before["probe"], after["probe"] = probe.ru_utime + probe.ru_stime, probed.ru_utime + probed.ru_stime
    for spy in spies:
        spy.wait(30)
    events = max(1, int(result.get("count", 0)))
    written = result.get("count", 0) + result.get("lost", 0) - result.get("failed_writes", 0)
    # Creates accepted per second of the schedule, and how far behind it the last answer came: a stack that keeps
    # pace accepts every create offered and answers the last one within its latency. (Dividing by the time until
    # the last answer instead, a stack answering every create in 20 ms reads 598/s at 600 offered, never 600.)
    result["accepted_per_s"] = written / PHASE_SECONDS
    result["lag_s"] = max(0.0, result.get("write_seconds", PHASE_SECONDS) - PHASE_SECONDS)
    result["rate"] = rate
    figures.steady[name] = result
    figures.steady_cpu[name] = {k: (after[k] - before[k]) * 1000 / events for k in before}
    figures.load.append(f"{name}: load {_uptime()}")
    print(f"  {name} at {rate:.0f}/s: {result}")
    print("  CPU per event: " + ", ".join(f"{k} {v:.2f} ms" for k, v in figures.steady_cpu[name].items()))


def _stack(env: dict[str, str], logs: Path, procs: list[Proc]) -> tuple[str, dict[str, int]]:
    """An API (write-through off), the relay and one cache worker: the URL and the pids to count CPU of."""
    port = free_port()
    # Nothing pinned: the whole stack and the probe share the two cores, as the target says.
    api = Proc(
        [PY, "-m", "api", "--host", "127.0.0.1", "--port", str(port)],
        {**env, "READ_MODEL_WRITE_THROUGH": "false"},
        None,
        logs / "steady-api.log",
    )
    relay = Proc([PY, "-m", "worker", "relay"], env, None, logs / "steady-relay.log")
    worker = Proc([PY, "-m", "worker", "cache", "--processes", "1"], env, None, logs / "steady-w.log")
    procs += [api, relay, worker]
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health/live")
    time.sleep(3)  # the worker and the relay connect and declare their queues
    return url, {"relay": relay.p.pid, "cache worker": worker.p.pid, "API": api.p.pid}


# -- the run -------------------------------------------------------------------------------------------------------


def run(
    only: frozenset[str],
    env: dict[str, str],
    keys: list[str],
    redis_url: str,
    logs: Path,
    procs: list[Proc],
) -> Figures:
    """Run the pipeline scenarios in ``only``; their processes are appended to ``procs`` (the caller stops them)."""
    _KEYS[:] = keys
    figures = Figures()
    wanted = only & set(SCENARIOS)
    if not wanted:
        return figures
    print("bench: the event pipeline (write-through off: only the pipeline projects)")
    if wanted & {"drain", "drain2"}:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        api = Proc(
            [PY, "-m", "api", "--host", "127.0.0.1", "--port", str(port)],
            {**env, "READ_MODEL_WRITE_THROUGH": "false"},
            0,
            logs / "burst-api.log",
        )
        procs.append(api)
        wait_http(url + "/health/live")
        if "drain" in wanted:
            figures.ceiling = _ceiling(env)
            figures.load.append(f"ceiling: load {_uptime()}")
            print(f"  ceiling: bare publisher (confirms) + bare consumer (1 Redis SET each): {figures.ceiling:.0f}/s")
            _drain(env, logs, redis_url, 1, figures, url)
        if "drain2" in wanted:
            _drain(env, logs, redis_url, 2, figures, url)
            for processes in (1, 2):
                _stage_by_stage(env, logs, redis_url, processes, figures, url)
        api.stop()
    if wanted & {"sustained", "latency"}:
        url, roots = _stack(env, logs, procs)
        if "latency" in wanted:
            _steady("200/s", LATENCY_RATE, url, redis_url, roots, env, figures)
        if "sustained" in wanted:
            _steady("sustained", SUSTAINED_RATE, url, redis_url, roots, env, figures)
        if "latency" in wanted and figures.drain.get(1):
            # Half the drain rate, but never more than the API accepts alone: past it the phase measures only the
            # API's queue (a drain several times the create rate made it an overload test of many minutes).
            rate = min(figures.drain[1] / 2, *(0.8 * x for x in figures.create_alone))
            _steady("half drain", rate, url, redis_url, roots, env, figures)
    return figures


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def table(f: Figures) -> list[str]:
    """The pipeline's table (markdown): each figure with its target."""
    lines = ["| figure | measured | target |", "| --- | ---: | --- |"]

    def row(what: str, value: str, target: str = "") -> None:
        lines.append(f"| {what} | {value} | {target} |")

    if f.ceiling:
        row("ceiling: bare publisher (confirms) + bare consumer (1 Redis SET each), msg/s", f"{f.ceiling:,.0f}")
    if f.create_alone:
        rates = ", ".join(f"{x:,.0f}" for x in f.create_alone)
        row("API creates/s alone (burst fill, write-through off)", f"{rates} ({f.fill_failed} not accepted)")
    for n, rate in f.drain.items():
        label = f"drain of a {BURST:,}-event burst, relay + {n} cache worker process(es), events/s"
        target = f">= {TARGETS['drain']:,.0f} {_met(rate >= TARGETS['drain'])}" if n == 1 else ""
        if n == 2 and 1 in f.drain:
            target = f"x{rate / f.drain[1]:.2f} of one (the relay is the limit when it is below the worker alone)"
        row(label, f"{rate:,.0f}", target)
        if n == 1 and f.ceiling:
            ratio = rate / f.ceiling
            row("drain / ceiling", f"{ratio:.0%}", f">= 50 % {_met(ratio >= TARGETS['drain_ceiling'])}")
        if n == 1 and f.create_alone:
            ratio = rate / f.create_alone[0]
            row("drain / API create rate", f"{ratio:.0%}", f">= 100 % {_met(ratio >= TARGETS['drain_create'])}")
        cpu_ms = f.drain_cpu[n]
        own = sum(cpu_ms[k] for k in PIPELINE)
        row(
            f"CPU per event in that burst ({n} worker process(es)), ms",
            ", ".join(f"{k} {v:.2f}" for k, v in cpu_ms.items()),
            f"relay + cache worker + RabbitMQ {own:.2f} <= 1.5 {_met(own <= TARGETS['burst_cpu'])}" if n == 1 else "",
        )
    if f.relay_alone:
        row(
            f"relay alone on half a burst ({BURST // 2:,} events), events/s",
            ", ".join(f"{x:,.0f}" for x in f.relay_alone),
        )
    for n, rate in f.worker_alone.items():
        target = ""
        if n == 2 and 1 in f.worker_alone:
            ratio = rate / f.worker_alone[1]
            target = f"x{ratio:.2f} of one process: {_met(ratio > 1)} (a second process raises it)"
        row(
            f"cache worker alone on the queue the relay filled, {n} process(es), events/s",
            f"{rate:,.0f} ({f.worker_alone_cpu[n]:.2f} ms CPU per event)",
            target,
        )
    for name, r in f.steady.items():
        if not r.get("count"):
            row(f"{name}: commit -> projection", f"nothing projected: {r}")
            continue
        limit = TARGETS["sustained_p99"] if name == "sustained" else TARGETS["latency_p99"]
        target = f"p99 < {limit:.0f} ms {_met(r['p99'] < limit)}" if name != "half drain" else ""
        value = f"p50 {r['p50']:.1f}, p95 {r['p95']:.1f}, p99 {r['p99']:.1f} ms"
        extra = f" ({r['count']:.0f} events, {r['lost']:.0f} not projected in 10 s, {r['failed_writes']:.0f} failed)"
        row(f"{name} ({r['rate']:.0f} creates/s offered): commit -> projection", value + extra, target)
        if name == "sustained":
            lag_ms = r["lag_s"] * 1000
            ok = r["accepted_per_s"] >= TARGETS["sustained"] and lag_ms <= TARGETS["sustained_p99"]
            row(
                "sustained: creates/s accepted, whole stack (last answer after the schedule's end)",
                f"{r['accepted_per_s']:,.1f} ({lag_ms:.0f} ms)",
                f">= 600, within {TARGETS['sustained_p99']:.0f} ms {_met(ok)}",
            )
        cpu_ms = f.steady_cpu[name]
        own = sum(cpu_ms[k] for k in PIPELINE)
        target = f"relay + cache worker + RabbitMQ {own:.2f} <= 2.5 {_met(own <= TARGETS['steady_cpu'])}"
        row(
            f"CPU per event at {name}, ms",
            ", ".join(f"{k} {v:.2f}" for k, v in cpu_ms.items()),
            target if name == "200/s" else f"relay + cache worker + RabbitMQ {own:.2f}",
        )
    if f.load:
        row("load average (1, 5, 15 min) after each phase", "; ".join(f.load))
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline")
    parser.add_argument("command", choices=("consume", "publish", "fill"))
    parser.add_argument("--count", type=int, default=BURST)
    parser.add_argument("--url", default="")
    parser.add_argument("--tag", default="")
    parser.add_argument("--keys", default="")
    args = parser.parse_args(argv)
    if args.command == "consume":
        asyncio.run(_consume(os.environ["RABBITMQ_URL"], os.environ["REDIS_URL"], args.count))
    elif args.command == "publish":
        asyncio.run(_publish(os.environ["RABBITMQ_URL"], args.count))
    else:
        rate, failed = asyncio.run(_fill(args.url, args.keys.split(","), args.count, args.tag))
        print("BENCHJSON " + json.dumps({"rate": rate, "failed": failed}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
