"""``make bench-scale`` (``python -m bench scale``): every listing and search at 1k, 100k and 1M products.

For each size: a database of its own (``stockroom_scale_<N>``, seeded by ``python -m bench seed`` and kept: a
later run reuses it while it holds exactly N products), an empty Redis index of the bench's own, then the timed
``cache rebuild`` and the Redis memory it took per product (``used_memory`` before and after; the server is shared,
so others' keys move it a little). Then one API process pinned to core 0 and wrk on core 1 measure each scenario:
warm (after a warm-up window) and cold (the window starts right after the read model is flushed: listings come
from PostgreSQL until a rebuild, products by slug until each is read once; every warm window runs before the first
cold one, on the read model the rebuild made), and each listing once more, warm, with a
trickle of writes beside it (:data:`TRICKLE_PER_SECOND` edits of random products' attributes, nothing a listing
filters by: how many of its pages still come from the cache, by the API's cache counters). Writes go through the
API's write-through, no relay runs. The products a run creates are deleted at its end, so the databases stay
reusable (the trickle's edits stay: they change attributes only).
It prints each p99's growth from the smallest to the largest size against the goal (< 1.5x) and writes the table
to bench/RESULTS.md with the machine and date.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import random
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import asyncpg
import redis

from bench.__main__ import (
    BENCH,
    KEY,
    PG_ADMIN,
    PY,
    SERVERS,
    Proc,
    Result,
    _cpu,
    _new_keys,
    _redis_url,
    _release_redis,
    _versions,
    _warm,
    _window,
    write_section,
)
from bench.stack import free_port, wait_http

SIZES = (1_000, 100_000, 1_000_000)
#: p99 at the largest size over p99 at the smallest: the goal (issue 13).
GROWTH_GOAL = 1.5
#: Seconds of each measured window (warm and cold) and of each warm-up.
SECONDS = int(os.environ.get("BENCH_SECONDS", 3))
MARK_START, MARK_END = "<!-- scale-bench:start -->", "<!-- scale-bench:end -->"
#: Slugs a read-by-slug window picks from at random.
SAMPLE = 2_000


def _dsn(size: int) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/stockroom_scale_{size}"


async def _rows(size: int) -> int | None:
    try:
        conn = await asyncpg.connect(_dsn(size))
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        return int(await conn.fetchval("SELECT count(*) FROM products"))
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()


def _database(size: int, env: dict[str, str]) -> str:
    """The size's database, seeded unless it already holds exactly ``size`` products; what was done."""
    if asyncio.run(_rows(size)) == size:
        subprocess.run([PY, "-m", "migrations"], env=env, check=True, capture_output=True, timeout=120)
        return "reused"
    name = f"stockroom_scale_{size}"
    for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
        subprocess.run(["psql", PG_ADMIN, "-qc", sql], check=True, capture_output=True, timeout=120)
    subprocess.run([PY, "-m", "migrations"], env=env, check=True, capture_output=True, timeout=120)
    t0 = time.monotonic()
    seed = [PY, "-m", "bench", "seed", "--products", str(size), "--no-rebuild", "--random-seed", "13"]
    subprocess.run(seed, env=env, check=True, capture_output=True, timeout=900)
    return f"seeded in {time.monotonic() - t0:.0f} s"


async def _facts(size: int, keys: list[str]) -> dict[str, object]:
    """What the scenarios need from the database (sample slugs, a category, a word), and the keys to write with."""
    conn = await asyncpg.connect(_dsn(size))
    try:
        await conn.execute("DELETE FROM api_keys WHERE name LIKE 'bench-scale-%'")
        await conn.executemany(
            "INSERT INTO api_keys (name, key_hash, scope) VALUES ($1, $2, 'write')",
            [(f"bench-scale-{n}", hashlib.sha256(k.encode()).hexdigest()) for n, k in enumerate(keys)],
        )
        slugs = [r["slug"] for r in await conn.fetch("SELECT slug FROM products ORDER BY random() LIMIT $1", SAMPLE)]
        cat = await conn.fetchval(
            "SELECT c.slug FROM categories c JOIN category_product_counts n ON n.category_id = c.id"
            " GROUP BY c.slug ORDER BY sum(n.n) DESC LIMIT 1"
        )
        name = await conn.fetchval(
            "SELECT name FROM products WHERE category_id = (SELECT id FROM categories WHERE slug = $1) LIMIT 1", cat
        )
        word = name.split()[-1].lower()
        top = await conn.fetchval("SELECT coalesce(max(id), 0) FROM products")
        return {"slugs": slugs, "category": cat, "name": name, "word": word, "top": top}
    finally:
        await conn.close()


async def _forget_writes(size: int, top: int) -> None:
    """Delete what the run wrote (its products, their events, its keys): the database holds the seed again."""
    conn = await asyncpg.connect(_dsn(size))
    try:
        await conn.execute("DELETE FROM products WHERE id > $1", top)
        await conn.execute("DELETE FROM outbox")
        await conn.execute("DELETE FROM api_keys WHERE name LIKE 'bench-scale-%'")
    finally:
        await conn.close()


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _rebuild(env: dict[str, str], client: redis.Redis, size: int) -> tuple[float, float]:
    """Seconds of a rebuild into the flushed index, and the bytes of Redis memory it took per product."""
    client.flushdb()
    time.sleep(0.5)
    before = _used(client)
    t0 = time.monotonic()
    done = subprocess.run(
        [PY, "-m", "worker", "cache", "rebuild"], env=env, capture_output=True, timeout=600, text=True
    )
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"bench-scale: the rebuild failed:\n{done.stderr[-3000:]}")
    time.sleep(0.5)
    return seconds, (_used(client) - before) / size


def _paths_script(paths: list[str]) -> str:
    """A wrk script that GETs one of ``paths`` at random, each request from one of many client addresses."""
    listed = ", ".join(json.dumps(p) for p in paths)
    text = (BENCH / "wrk" / "paths.lua").read_text().replace("BENCH_PATHS", listed)
    return _temp_script(text)


def _create_script(keys: list[str], name: str | None, category: str) -> str:
    text = (BENCH / "wrk" / "create_named.lua").read_text()
    text = text.replace("BENCH_KEYS", ", ".join(f'"{k}"' for k in keys)).replace("BENCH_CATEGORY", category)
    text = text.replace("BENCH_NAME", json.dumps(name or ""))
    return _temp_script(text)


def _temp_script(text: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(text + (BENCH / "wrk" / "report.lua").read_text())
    return f.name


def _deep_cursor(url: str, pages: int) -> str:
    """The cursor of page ``pages`` of the newest-first listing (walked page by page, as a client would)."""
    cursor = ""
    for n in range(pages - 1):
        query = "?" + urllib.parse.urlencode({"cursor": cursor}) if cursor else ""
        # A client address per page, as the load's: one address would meet the read limit.
        client = f"10.9.{n // 250}.{n % 250 + 1}"
        req = urllib.request.Request(url + "/api/products" + query, headers={"X-Forwarded-For": client})
        with urllib.request.urlopen(req, timeout=30) as resp:
            cursor = json.loads(resp.read())["next_cursor"]
        if cursor is None:
            raise SystemExit(f"bench-scale: fewer than {pages} pages")
    return cursor


def _scenarios(facts: dict[str, object], deep: str) -> dict[str, list[str]]:
    slugs = facts["slugs"]
    assert isinstance(slugs, list)
    cat, word = facts["category"], facts["word"]
    q = urllib.parse.quote
    return {
        "read by slug": [f"/api/products/{s}" for s in slugs],
        "first page": ["/api/products"],
        "page 500 deep": ["/api/products?cursor=" + q(deep)],
        "by category": [f"/api/products?category={cat}"],
        **{f"sort={s}": [f"/api/products?sort={s}"] for s in ("created_at", "price", "-price", "name")},
        "q matching": [f"/api/products?q={word}"],
        "q matching nothing": ["/api/products?q=zzyzxq"],
        "price range": ["/api/products?min_price=10&max_price=20"],
        "in_stock": ["/api/products?in_stock=true"],
    }


#: Writes a second beside each listing's "with writes" window (issue 13 item 4: a trickle of writes elsewhere must
#: not send every listing to PostgreSQL).
TRICKLE_PER_SECOND = 10
#: The scenarios that are not listings (the trickle's window is measured for the others).
_NOT_LISTINGS = ("read by slug", "create, a colliding name", "create, a fresh name")


class _Trickle(threading.Thread):
    """PATCHes a random product's attributes :data:`TRICKLE_PER_SECOND` times a second until stopped."""

    def __init__(self, url: str, slugs: list[str]) -> None:
        super().__init__(daemon=True)
        self.url, self.slugs, self.done, self.writes, self.failed = url, slugs, threading.Event(), 0, 0

    def run(self) -> None:
        while not self.done.wait(1 / TRICKLE_PER_SECOND):
            body = json.dumps({"attributes": {"bench": self.writes}}).encode()
            request = urllib.request.Request(
                f"{self.url}/api/products/{random.choice(self.slugs)}",
                data=body,
                method="PATCH",
                headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/merge-patch+json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    r.read()
                self.writes += 1
            except OSError:
                self.failed += 1


def _cache_counts(url: str) -> tuple[float, float]:
    """(hits, misses) of the API's cache counters."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    found = {}
    for line in text.splitlines():
        for name in ("hits", "misses"):
            if line.startswith(f"stockroom_cache_{name}_total "):
                found[name] = float(line.split()[-1])
    return found["hits"], found["misses"]


def _with_writes(url: str, script: str, label: str, slugs: list[str]) -> tuple[Result, float]:
    """A warm window with the trickle beside it: the result and the share of reads answered from the cache."""
    _warm(url, script)
    trickle = _Trickle(url, slugs)
    hits, misses = _cache_counts(url)
    trickle.start()
    try:
        result = _window(label, url, script, seconds=SECONDS)
    finally:
        trickle.done.set()
        trickle.join()
    hits, misses = (a - b for a, b in zip(_cache_counts(url), (hits, misses), strict=True))
    if trickle.failed:
        print(f"  {label}: {trickle.failed} of the trickle's writes failed ({trickle.writes} made)")
    return result, hits / max(1.0, hits + misses)


def _measure(url: str, script: str, label: str, flush: redis.Redis | None) -> Result:
    if flush is None:
        _warm(url, script)
    else:
        flush.flushdb(asynchronous=True)  # FLUSHDB ASYNC: a million keys freed without blocking Redis
    return _window(label, url, script, seconds=SECONDS)


def _size(size: int, redis_url: str, logs: Path) -> dict[str, object]:
    env = {
        **os.environ,
        "DATABASE_URL": _dsn(size),
        "REDIS_URL": redis_url,
        "BOOTSTRAP_API_KEY": KEY,
        "TRUSTED_PROXIES": "127.0.0.1",
        "CURSOR_SECRET": "bench-scale-cursor-secret-0123456789",
    }
    client = redis.Redis.from_url(redis_url)
    how = _database(size, env)
    seconds, per_product = _rebuild(env, client, size)
    print(f"bench-scale: {size:,} products ({how}); rebuild {seconds:.1f} s, {per_product:.0f} B of Redis a product")
    keys = _new_keys()
    facts = asyncio.run(_facts(size, keys))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = Proc([PY, "-m", "api", "--host", "127.0.0.1", "--port", str(port)], env, core=0, log=logs / f"api-{size}.log")
    SERVERS[url] = api.p.pid
    results: dict[str, tuple[Result, Result]] = {}
    trickled: dict[str, tuple[Result, float]] = {}
    try:
        wait_http(url + "/health/live")
        # Half the pages a size holds at most (some seeded products are inactive, outside the listing).
        deep = _deep_cursor(url, min(500, size // 40))
        scenarios = {label: _paths_script(paths) for label, paths in _scenarios(facts, deep).items()}
        scenarios["create, a colliding name"] = _create_script(keys, str(facts["name"]), str(facts["category"]))
        scenarios["create, a fresh name"] = _create_script(keys, None, str(facts["category"]))
        # Every warm window first, then those with writes, on the read model as the rebuild left it (a cold window
        # flushes it, and listings then come from cached pages built from PostgreSQL until the next rebuild).
        warm = {label: _measure(url, script, label, None) for label, script in scenarios.items()}
        slugs = [str(s) for s in facts["slugs"]]  # type: ignore[attr-defined]
        for label, script in scenarios.items():
            if label not in _NOT_LISTINGS:
                trickled[label] = _with_writes(url, script, label, slugs)
                result, cached = trickled[label]
                print(f"  {label:<26} with writes p99 {result.p99_ms:7.2f} ms, {cached:.0%} from the cache")
        for label, script in scenarios.items():
            cold = _measure(url, script, label, client)
            results[label] = (warm[label], cold)
            w = warm[label]
            print(
                f"  {label:<26} warm {w.rps:>7.0f} req/s p50 {w.p50_ms:6.2f} p99 {w.p99_ms:7.2f} ms"
                f" | cold {cold.rps:>7.0f} req/s p50 {cold.p50_ms:6.2f} p99 {cold.p99_ms:7.2f} ms"
                f"  errors {w.errors + cold.errors}  ({time.strftime('%H:%M:%S')}, load {os.getloadavg()[0]:.1f})"
            )
    finally:
        api.stop()
        asyncio.run(_forget_writes(size, int(str(facts["top"]))))
    return {
        "rebuild_s": seconds,
        "bytes": per_product,
        "how": how,
        "results": results,
        "trickled": trickled,
        "load": os.getloadavg(),
    }


def _report(sizes: tuple[int, ...], runs: dict[int, dict[str, object]], started: dt.datetime) -> str:
    lo, hi = sizes[0], sizes[-1]
    head = "| scenario | " + " | ".join(f"{n:,}: req/s, p50, p99 ms (warm / cold)" for n in sizes)
    head += f" | p99 growth {lo:,} -> {hi:,} (warm / cold) |"
    lines = [head, "| --- | " + " | ".join("---" for _ in sizes) + " | --- |"]
    labels = list(runs[lo]["results"])  # type: ignore[call-overload]
    for label in labels:
        cells = []
        for n in sizes:
            w, c = runs[n]["results"][label]  # type: ignore[index]
            cells.append(f"{w.rps:,.0f}, {w.p50_ms:.2f}, {w.p99_ms:.2f} / {c.rps:,.0f}, {c.p50_ms:.2f}, {c.p99_ms:.2f}")
        w0, c0 = runs[lo]["results"][label]  # type: ignore[index]
        w1, c1 = runs[hi]["results"][label]  # type: ignore[index]
        gw, gc = w1.p99_ms / max(w0.p99_ms, 0.001), c1.p99_ms / max(c0.p99_ms, 0.001)
        verdict = "met" if gw < GROWTH_GOAL else "MISSED"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {gw:.2f}x / {gc:.2f}x (warm {verdict}) |")
    trickle = [
        "| listing | " + " | ".join(f"{n:,}: p99 ms, share from the cache" for n in sizes) + " |",
        "| --- | " + " | ".join("---" for _ in sizes) + " |",
    ]
    for label in runs[lo]["trickled"]:  # type: ignore[attr-defined]
        cells = [
            f"{runs[n]['trickled'][label][0].p99_ms:.2f}, {runs[n]['trickled'][label][1]:.0%}"  # type: ignore[index]
            for n in sizes
        ]
        trickle.append(f"| {label} | " + " | ".join(cells) + " |")
    rebuild = ", ".join(
        f"{n:,}: {runs[n]['rebuild_s']:.1f} s, {runs[n]['bytes']:.0f} B/product ({runs[n]['how']})" for n in sizes
    )
    loads = ", ".join(f"{n:,}: {runs[n]['load'][0]:.1f}" for n in sizes)  # type: ignore[index]
    return "\n".join(
        [
            MARK_START,
            f"## Scale: 1k to 1M products ({started:%Y-%m-%d %H:%M} UTC)",
            "",
            f"Machine: {_cpu()}. {_versions()}.",
            "One API process pinned to core 0, wrk (1 thread, 64 connections) on core 1, PostgreSQL and Redis float; "
            f"each cell one {SECONDS} s window: warm after a {SECONDS} s warm-up, cold right after the read model is "
            "flushed. Goal: p99 at 1M under 1.5x p99 at 1k (issue 13).",
            "",
            *lines,
            "",
            f"With a trickle of writes ({TRICKLE_PER_SECOND}/s, random products' attributes edited through the API) "
            f"beside a warm {SECONDS} s window: p99, and the share of the window's reads the API's cache counters "
            "count as answered from Redis (a page built again from PostgreSQL is a miss).",
            "",
            *trickle,
            "",
            f"Rebuild (`python -m worker cache rebuild`, 2 processes, empty Redis) and Redis memory per product: "
            f"{rebuild}. Load average (1 min) at the end of each size: {loads}.",
            MARK_END,
        ]
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="product counts (default 1k,100k,1M)")
    args = parser.parse_args(argv)
    sizes = tuple(sorted(int(s) for s in args.sizes.split(",")))
    started = dt.datetime.now(dt.UTC)
    random.seed(13)
    logs = Path(f"/tmp/stockroom-bench-scale-{os.getpid()}")
    logs.mkdir(exist_ok=True)
    redis_url = _redis_url()
    lock = redis.Redis()
    runs: dict[int, dict[str, object]] = {}
    try:
        for size in sizes:
            lock.expire(f"stockroom-test-lock:{redis_url.rsplit('/', 1)[1]}", 1800)
            runs[size] = _size(size, redis_url, logs)
    finally:
        redis.Redis.from_url(redis_url).flushdb(asynchronous=True)
        _release_redis(redis_url)
    section = _report(sizes, runs, started)
    print(section)
    if sizes == SIZES:
        write_section(section, MARK_START, MARK_END)
        print(f"bench-scale: results in bench/RESULTS.md; API logs in {logs}")
    else:
        print("bench-scale: other sizes than the default: RESULTS.md left as it was")
    return 0
