"""Event latency: a steady rate of product creations, and for each, the time from the API's 201 (the row and its
outbox event are committed by then) until the cache worker's projection of it is in Redis.

The API under test runs with READ_MODEL_WRITE_THROUGH=false, so the projection can only come through the
pipeline: outbox -> NOTIFY -> relay -> RabbitMQ -> dramatiq worker -> PostgreSQL read -> Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.parse

import orjson
import uvloop

from shared.readmodel import keys
from shared.readmodel.client import FastRedis


class Http:
    """Keep-alive HTTP/1.1 connections to one server, for the probe's own requests.

    The probe shares the two cores with the stack it measures, so it must cost little: with aiohttp's client and
    redis-py's pipeline for the poller, the whole stack accepted 549 creates/s of the 600 offered; with this
    client and the poller on hiredis, 581/s in the next run, the probe costing 0.23 ms of CPU per create
    (bench/RESULTS.md, 2026-12-02). This writes a request's bytes and reads the status line, ``Content-Length``
    and body, nothing else (the API answers every request with a length)."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """``POST path`` with a JSON ``body``: the status and the response's body."""
        reader, writer = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        )
        writer.write(head.encode() + body)
        try:
            lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
            status, length, close = int(lines[0].split()[1]), 0, False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            payload = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if close:
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status, payload

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _write(http: Http, key: str, n: int, run: str, pending: dict[str, float]) -> bool:
    body = orjson.dumps({"name": f"Latency {run} {n}", "price": "1.00", "category": "category-2"})
    # Each key is one client with an address of its own, as behind nginx (the bench's API trusts 127.0.0.1).
    headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": f"10.251.0.{n % 250 + 1}"}
    try:
        status, payload = await http.post("/api/products", body, headers)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        return False
    if status != 201:
        return False
    pending[orjson.loads(payload)["slug"]] = time.perf_counter()
    return True


async def _watch(redis: FastRedis, pending: dict[str, float], seen: list[float], stop: asyncio.Event) -> None:
    """One poller for every pending slug: their EXISTS pipelined in one write per turn, every millisecond, on the
    API's own hiredis client (redis-py's pipeline object costs more per turn)."""
    while not (stop.is_set() and not pending):
        slugs = list(pending)
        if slugs:
            sent = [redis.execute("EXISTS", keys.product_copy(slug)) for slug in slugs]
            found = [await f for f in sent]
            now = time.perf_counter()
            for slug, hit in zip(slugs, found, strict=True):
                if hit:
                    seen.append(now - pending.pop(slug))
                elif now - pending[slug] > 10:
                    pending.pop(slug)
        await asyncio.sleep(0.001)


async def measure(url: str, redis_url: str, keys: list[str], rate: float, seconds: float) -> dict[str, float]:
    """``rate`` creates/s for ``seconds`` on a steady schedule; commit -> projection of each. Run it on uvloop
    (:func:`run`): the probe's loop costs less there too."""
    redis = FastRedis(redis_url, timeout=5.0)
    await redis.execute("PING")
    run = str(int(time.time()))
    pending: dict[str, float] = {}
    seen: list[float] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(redis, pending, seen, stop))
    tasks = []
    http = Http(url)
    start = time.perf_counter()
    for n in range(int(rate * seconds)):
        # A steady schedule, not a closed loop: each write starts at its slot whatever the others do.
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        # Spread over the keys given: one key alone would meet the default write limit (50/s per key).
        key = keys[n % len(keys)]
        tasks.append(asyncio.create_task(_write(http, key, n, run, pending)))
    written = sum(await asyncio.gather(*tasks))
    # Until the last write was answered: an API that falls behind the schedule takes longer than it.
    write_seconds = time.perf_counter() - start
    http.close()
    stop.set()
    await watcher
    redis.close()
    done = sorted(seen)
    if not done:
        return {"count": 0, "lost": len(tasks), "failed_writes": len(tasks) - written, "write_seconds": write_seconds}

    def pct(p: float) -> float:
        return done[min(len(done) - 1, int(p / 100 * len(done)))] * 1000

    return {
        "count": len(done),
        "lost": len(tasks) - len(done),
        "failed_writes": len(tasks) - written,
        "write_seconds": write_seconds,
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
    }


def run(url: str, redis_url: str, keys: list[str], rate: float, seconds: float) -> dict[str, float]:
    """:func:`measure` on its own uvloop event loop."""
    return uvloop.run(measure(url, redis_url, keys, rate, seconds))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--key", required=True, help="API keys, comma-separated")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args(argv)
    result = run(args.url, args.redis_url, args.key.split(","), args.rate, args.seconds)
    print("BENCHJSON " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
