"""``make bench``: start a stack of its own, seed 10,000 products, measure, write bench/RESULTS.md.

One server process is pinned to core 0 and the load generator (wrk) to core 1. The ceilings (a bare aiohttp
handler, a bare one-statement insert) run in the same run on the same core, so every figure is read as a ratio
to what this machine can do at best. Traffic goes to 127.0.0.1 only, each run bounded in time.

Interleaved rounds: a shared virtual machine's speed drifts by up to 2x within a minute (measured: the bare
handler at 14k-30k req/s in consecutive 2 s windows). So the API and the ceiling server both run (both on core
0, only one loaded at a time), each scenario alternates short windows with its ceiling, and a ratio is the median
of the ratios of adjacent windows; req/s and latencies are medians over the rounds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import asyncpg
import redis

from bench import cpu, pipeline
from bench.stack import Proc, free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PY = sys.executable
KEY = "bench-bootstrap-key"
DB = "stockroom_bench"
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DSN = f"postgresql://postgres@127.0.0.1:5432/{DB}"
VHOST = "stockroom-bench"
RABBITMQ = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
#: wrk settings: connections, warm-up and measured seconds per scenario.
CONNECTIONS, WARMUP, SECONDS = 64, int(os.environ.get("BENCH_WARMUP", 2)), int(os.environ.get("BENCH_SECONDS", 2))
#: Rounds per scenario: each is one window of the scenario, then one of its ceiling.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 7))
#: Goals: ratios to the ceiling (issue 3; read by slug >= 50 % with the default settings, issue 10), and for the
#: refusals, their rate against the cache hit's in the same run (>= 100 %: a refusal costs no more CPU than a hit).
GOALS = {"read": 0.50, "page": 0.35, "page_cat": 0.35, "create": 0.75, "refusal": 1.0}
#: API keys the create scenario spreads its writes over: the default write limit is 50/s per key.
WRITE_KEYS = 200
MARK_START, MARK_END = "<!-- http-bench:start -->", "<!-- http-bench:end -->"
#: Every scenario, by the name ``BENCH_ONLY`` picks it with.
SCENARIOS = ("read", "page", "page_cat", "refused", "unauthorized", "missing", "create", *pipeline.SCENARIOS)


def _only() -> frozenset[str]:
    """``BENCH_ONLY`` (comma-separated scenario names): run just those; unset runs all. A subset prints its table
    and leaves RESULTS.md as it is (the table there is a whole run's)."""
    names = frozenset(n.strip() for n in os.environ.get("BENCH_ONLY", "").split(",") if n.strip())
    if unknown := names - set(SCENARIOS):
        raise SystemExit(f"bench: unknown BENCH_ONLY scenario(s) {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    return names or frozenset(SCENARIOS)


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    #: CPU time of the server process per request, in microseconds (from /proc: robust to a busy machine, where
    #: req/s is not).
    cpu_us: float = 0.0


#: Base URL -> pid of the server process behind it, for the CPU per request.
SERVERS: dict[str, int] = {}


def _server_cpu(url: str) -> float:
    pid = next((p for base, p in SERVERS.items() if url.startswith(base)), None)
    return 0.0 if pid is None else cpu.snapshot({"server": pid}, {})["server"]


def _new_keys() -> list[str]:
    return [f"sr_bench-{os.getpid()}-{n}-{os.urandom(8).hex()}" for n in range(WRITE_KEYS)]


def _redis_url() -> str:
    """A Redis database index of the bench's own, claimed like the test suite claims one."""
    base = redis.Redis()
    for n in range(15, 0, -1):
        if base.set(f"stockroom-test-lock:{n}", f"bench-{os.getpid()}", nx=True, ex=900):
            return f"redis://127.0.0.1:6379/{n}"
    raise SystemExit("bench: no free Redis database index")


def _release_redis(url: str) -> None:
    redis.Redis().delete(f"stockroom-test-lock:{url.rsplit('/', 1)[1]}")


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def _vhost() -> None:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", VHOST], capture_output=True, timeout=60)
    _sh("rabbitmqctl", "-q", "add_vhost", VHOST)
    _sh("rabbitmqctl", "-q", "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")


async def _seed(keys: list[str]) -> None:
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    await admin.close()
    _sh(PY, "-m", "migrations")
    conn = await asyncpg.connect(DSN)
    await conn.execute(
        """
INSERT INTO categories (slug, name) SELECT 'category-' || g, 'Category ' || g FROM generate_series(1, 20) g;
INSERT INTO products (slug, name, description, price, category_id, stock, created_at, updated_at)
SELECT 'product-' || g, 'Product ' || g, 'Seeded product number ' || g, (g % 500) + 0.99, ((g - 1) % 20) + 1,
       g % 7, now() - make_interval(secs => 10000 - g), now() - make_interval(secs => 10000 - g)
FROM generate_series(1, 10000) g;
ANALYZE;
"""
    )
    # The keys the create scenario writes with (stored as the API stores keys: their SHA-256 only).
    await conn.executemany(
        "INSERT INTO api_keys (name, key_hash, scope) VALUES ($1, $2, 'write')",
        [(f"bench-{n}", hashlib.sha256(k.encode()).hexdigest()) for n, k in enumerate(keys)],
    )
    await conn.close()


async def _mark_outbox_sent() -> None:
    conn = await asyncpg.connect(DSN)
    await conn.execute("UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL")
    await conn.close()


def _script(name: str, path: str = "/api/products", keys: list[str] | None = None) -> str:
    text = (BENCH / "wrk" / f"{name}.lua").read_text() if name else ""
    listed = ", ".join(f'"{k}"' for k in (keys or [KEY]))
    text = text.replace("BENCH_KEYS", listed).replace("BENCH_PATH", path)
    text += (BENCH / "wrk" / "report.lua").read_text()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(text)
    return f.name


def _wrk_cmd(script: str) -> list[str]:
    base = ["taskset", "-c", "1"] if shutil.which("taskset") else []
    return [*base, "wrk", "-t1", f"-c{CONNECTIONS}", "--timeout", "5s", "-s", script]


def _warm(url: str, script: str) -> None:
    subprocess.run([*_wrk_cmd(script), f"-d{WARMUP}s", url], check=True, capture_output=True, timeout=60)


def _window(label: str, url: str, script: str, seconds: int = SECONDS, refused: bool = False) -> Result:
    """One wrk window; for a scenario of ``refused`` requests, non-2xx answers are what is measured, not errors."""
    before = _server_cpu(url)
    out = subprocess.run(
        [*_wrk_cmd(script), f"-d{seconds}s", url], check=True, capture_output=True, text=True, timeout=120
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("BENCHJSON "))
    d = json.loads(line.removeprefix("BENCHJSON "))
    rps = d["requests"] / (d["duration_us"] / 1e6)
    # A refusal scenario's 4xx are what it measures; a client past its limit still gets its 200 a second through.
    errors = d["socket_errors"] + (0 if refused else d["non2xx"])
    spent = _server_cpu(url) - before
    return Result(label, rps, d["p50"] / 1000, d["p99"] / 1000, errors, spent * 1e6 / max(1, d["requests"]))


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _summary(label: str, rounds: list[Result]) -> Result:
    r = Result(
        label,
        _median([x.rps for x in rounds]),
        _median([x.p50_ms for x in rounds]),
        _median([x.p99_ms for x in rounds]),
        sum(x.errors for x in rounds),
        _median([x.cpu_us for x in rounds]),
    )
    print(
        f"  {label:<34} {r.rps:>9.0f} req/s  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  errors {r.errors}"
        f"  CPU {r.cpu_us:6.1f} us/req"
    )
    return r


def _paired(
    label: str,
    url: str,
    script: str,
    ceiling_label: str,
    ceiling_url: str,
    ceiling_script: str,
    refused: bool = False,
) -> tuple[Result, Result, float, list[float], list[Result]]:
    """ROUNDS rounds of (scenario window, ceiling window): medians, and the median of the per-round ratios.
    ``refused``: the scenario's answers are meant to be 4xx (errors then counts the 2xx and socket errors)."""
    _warm(url, script)
    _warm(ceiling_url, ceiling_script)
    mine: list[Result] = []
    bare: list[Result] = []
    for _ in range(ROUNDS):
        mine.append(_window(label, url, script, refused=refused))
        bare.append(_window(ceiling_label, ceiling_url, ceiling_script))
    ratios = [m.rps / b.rps for m, b in zip(mine, bare, strict=True)]
    me, ce = _summary(label, mine), _summary(ceiling_label, bare)
    print(f"  {'':<34} ratio per round: {', '.join(f'{x:.0%}' for x in ratios)}; median {_median(ratios):.0%}")
    return me, ce, _median(ratios), ratios, bare


def _versions() -> str:
    pg = subprocess.run(["psql", PG_ADMIN, "-tAc", "SHOW server_version"], capture_output=True, text=True).stdout
    rv = redis.Redis().info("server").get("redis_version", "?")
    libs = ", ".join(f"{p} {metadata.version(p)}" for p in ("aiohttp", "asyncpg", "redis", "orjson", "uvloop"))
    return f"Python {platform.python_version()}, {libs}; PostgreSQL {pg.strip()}, Redis {rv}, wrk 4.1"


def _cpu() -> str:
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", text)
    return f"{model.group(1) if model else platform.processor()}, {os.cpu_count()} logical CPUs"


Row = tuple[str, Result, str, float | None, list[float] | None, float | None]
#: Refusal rows of the table -> the CPU per request of the cache hits measured beside them.
REFUSALS: dict[str, float] = {}


def _table(rows: list[Row]) -> list[str]:
    """The scenario table's lines (markdown)."""
    lines = [
        "| scenario | req/s | p50 ms | p99 ms | errors | CPU us/req | ceiling | ratio [range] | goal |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for label, r, ceiling, ratio, ratios, goal in rows:
        ratio_s = f"{ratio:.0%}" if ratio is not None else ""
        if ratios:
            ratio_s += f" [{min(ratios):.0%}-{max(ratios):.0%}]"
        goal_s = f">= {goal:.0%} {'met' if ratio is not None and ratio >= goal else 'MISSED'}" if goal else ""
        if label in REFUSALS:
            hit_cpu = REFUSALS[label]
            goal_s = f"CPU {r.cpu_us / hit_cpu:.0%} of a hit's: {'met' if r.cpu_us <= hit_cpu else 'MISSED'}"
        cells = [label, f"{r.rps:,.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}", str(r.errors), f"{r.cpu_us:.0f}"]
        cells += [ceiling, ratio_s, goal_s]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _write_results(rows: list[Row], pipeline_lines: list[str]) -> str:
    lines = [
        MARK_START,
        f"## HTTP and event pipeline ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {_cpu()}. {_versions()}.",
        "The API runs with its default settings (rate limits on, logs at INFO), trusting 127.0.0.1 as its proxy: "
        "the load carries X-Forwarded-For from many client addresses, as behind nginx. "
        f"The API and the ceiling server pinned to core 0 (one loaded at a time), wrk (1 thread, {CONNECTIONS} "
        f"connections) on core 1; PostgreSQL and Redis float. 10,000 seeded products in 20 categories. "
        f"Each scenario: {ROUNDS} rounds of a {SECONDS} s window of it and a {SECONDS} s window of its ceiling, "
        f"after a {WARMUP} s warm-up of each; req/s and latencies are medians of the windows, the ratio is the "
        "median of the per-round ratios (range in brackets).",
        "",
        "The server's CPU per request (from /proc, median of the windows) does not depend on how busy the machine "
        "is, as req/s does: for the refusals the goal is read on it (a refusal's CPU over a hit's, measured in "
        "adjacent windows).",
        "",
        *_table(rows),
    ]
    if pipeline_lines:
        lines += [
            "",
            "The event pipeline (`bench/pipeline.py`), write-through off so that only the pipeline projects: the "
            "ceiling, the drain of a burst (outbox filled first by the API alone, then relay + cache worker "
            "started), the whole stack at a steady rate, commit -> projection, and the CPU per event of every "
            "process (from /proc; PostgreSQL: the bench database's backends and the server's shared processes; "
            "RabbitMQ and Redis: all their processes, whoever they serve).",
            "",
            *pipeline_lines,
        ]
    lines.append(MARK_END)
    section = "\n".join(lines)
    write_section(section, MARK_START, MARK_END)
    return section


def write_section(section: str, start: str, end: str) -> None:
    """Put ``section`` (which begins with ``start`` and ends with ``end``) into RESULTS.md in place of the one
    between those marks, or after the rest: each benchmark keeps its own section."""
    path = BENCH / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if start in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> int:
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk is missing (make bench installs it: apt-get install wrk)")
    redis_url = _redis_url()
    redis.Redis.from_url(redis_url).flushdb()
    logs = Path(tempfile.mkdtemp(prefix="stockroom-bench-"))
    env = {
        **os.environ,
        "DATABASE_URL": DSN,
        "REDIS_URL": redis_url,
        "RABBITMQ_URL": RABBITMQ,
        "BOOTSTRAP_API_KEY": KEY,
        # The default settings (rate limits on, logs at INFO), behind a proxy as in production: the load
        # generator's requests carry X-Forwarded-For, as nginx's do, so that they come from many clients.
        "TRUSTED_PROXIES": "127.0.0.1",
        "RELAY_METRICS_PORT": "0",
        "dramatiq_prom_port": str(free_port()),
    }
    procs: list[Proc] = []
    only = _only()
    done: dict[str, Scenario] = {}
    figures = pipeline.Figures()
    try:
        print("bench: seeding 10,000 products and projecting them into Redis")
        os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "RABBITMQ_URL")})
        _vhost()
        keys = _new_keys()
        asyncio.run(_seed(keys))
        _sh(PY, "-m", "worker", "cache", "rebuild")

        port, cport = free_port(), free_port()
        url, curl = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{cport}"
        api = Proc([PY, "-m", "api", "--host", "127.0.0.1", "--port", str(port)], env, core=0, log=logs / "api.log")
        ceiling = Proc([PY, "-m", "bench.ceiling", "--port", str(cport), "--dsn", DSN], env, core=0)
        procs += [api, ceiling]
        SERVERS.update({url: api.p.pid, curl: ceiling.p.pid})
        wait_http(url + "/health/live")
        wait_http(curl + "/json")
        print(f"bench: Stockroom API and the ceilings, both on core 0; {ROUNDS} rounds of {SECONDS} s windows each")
        bare_label, cte_label = "bare handler, constant JSON", "bare handler, one CTE insert"
        bare_json = (bare_label, curl + "/json", _script(""))
        hit = ("read by slug (Redis hit)", url, _script("read"))
        if "read" in only:
            done["read"] = _paired("read by slug (Redis hit)", url, _script("read"), *bare_json)
        if "page" in only:
            done["page"] = _paired("first page /api/products", url, _script("page", "/api/products"), *bare_json)
        if "page_cat" in only:
            page_path = "/api/products?category=category-3"
            done["page_cat"] = _paired("first page ?category=category-3", url, _script("page", page_path), *bare_json)
        if "refused" in only:
            done["refused"] = _paired("429, one client past its limit", url, _script("refused"), *hit, refused=True)
        if "unauthorized" in only:
            done["unauthorized"] = _paired("401, a key nobody issued", url, _script("unauthorized"), *hit, refused=True)
        if "missing" in only:
            done["missing"] = _paired("404, a product that does not exist", url, _script("missing"), *hit, refused=True)
        if "create" in only:
            create_script = _script("create", keys=keys)
            done["create"] = _paired(
                "create product (auth, validation)", url, create_script, cte_label, curl, create_script
            )
        api.stop()
        ceiling.stop()
        asyncio.run(_mark_outbox_sent())
        figures = pipeline.run(only, env, keys, redis_url, logs, procs)
    finally:
        for p in reversed(procs):
            p.stop()
        _release_redis(redis_url)

    rows = _rows(done)
    print()
    if only == frozenset(SCENARIOS):
        print(_write_results(rows, pipeline.table(figures)))
        print(f"\nbench: logs in {logs}; results in bench/RESULTS.md")
    else:
        print("\n".join([*_table(rows), "", *pipeline.table(figures)]))
        print(f"\nbench: logs in {logs}; a subset ({', '.join(sorted(only))}): RESULTS.md left as it was")
    return 0


Scenario = tuple[Result, Result, float, list[float], list[Result]]
#: Table rows, in order: scenario name, label, ceiling it is read against, goal.
ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("read", "GET /api/products/{slug} (Redis hit)", "framework", "read"),
    ("page", "GET /api/products first page", "framework", "page"),
    ("page_cat", "GET /api/products?category= first page", "framework", "page_cat"),
    ("create", "POST /api/products (auth, validation, slug, outbox)", "write", "create"),
    ("refused", "429 (rate limited read) vs a cache hit", "cache hit", "refusal"),
    ("unauthorized", "401 (unknown key) vs a cache hit", "cache hit", "refusal"),
    ("missing", "404 (no such product) vs a cache hit", "cache hit", "refusal"),
)


def _rows(done: dict[str, Scenario]) -> list[Row]:
    """The table's rows for the scenarios that ran: the ceilings first, then each scenario against its own."""
    rows: list[Row] = []
    framework = [w for name in ("read", "page", "page_cat") if name in done for w in done[name][4]]
    if framework:
        bare = _summary("framework ceiling, every window", framework)
        rows.append(("bare aiohttp + uvloop, constant JSON (framework ceiling)", bare, "", None, None, None))
    if "create" in done:
        write_ceiling = done["create"][1]
        rows.append(("bare handler, product + outbox in one CTE (write ceiling)", write_ceiling, "", None, None, None))
    for name, label, ceiling, goal in ROWS:
        if name not in done:
            continue
        me, beside, ratio, ratios, _ = done[name]
        rows.append((label, me, ceiling, ratio, ratios, GOALS[goal]))
        if ceiling == "cache hit":
            REFUSALS[label] = beside.cpu_us
    return rows


def cli(argv: list[str]) -> int:
    """``python -m bench`` runs the benchmark; ``python -m bench seed ...`` seeds. Anything else is refused."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", metavar="{seed,scale,plans}")
    commands.add_parser("seed", help="load N realistic products fast (python -m bench seed --help)", add_help=False)
    commands.add_parser("scale", help="listings and searches at 1k, 100k and 1M products", add_help=False)
    commands.add_parser("plans", help="every listing list_page may run, timed on a seeded table", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "seed":
        from bench.seed import main as seed_main

        return seed_main(rest)
    if args.command == "scale":
        from bench.scale import main as scale_main

        return scale_main(rest)
    if args.command == "plans":
        from bench.plans import main as plans_main

        return plans_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return main()


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
