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

import aiohttp
import redis.asyncio as aioredis

from shared.readmodel import keys


async def _write(
    session: aiohttp.ClientSession, url: str, key: str, n: int, run: str, pending: dict[str, float]
) -> bool:
    body = {"name": f"Latency {run} {n}", "price": "1.00", "category": "category-2"}
    # Each key is one client with an address of its own, as behind nginx (the bench's API trusts 127.0.0.1).
    headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": f"10.251.0.{n % 250 + 1}"}
    async with session.post(url + "/api/products", json=body, headers=headers) as r:
        if r.status != 201:
            return False
        pending[(await r.json())["slug"]] = time.perf_counter()
    return True


async def _watch(redis: aioredis.Redis, pending: dict[str, float], seen: list[float], stop: asyncio.Event) -> None:
    """One poller for every pending slug: a pipeline of EXISTS per turn, every millisecond."""
    while not (stop.is_set() and not pending):
        slugs = list(pending)
        if slugs:
            async with redis.pipeline(transaction=False) as pipe:
                for slug in slugs:
                    pipe.exists(keys.product_copy(slug))
                found = await pipe.execute()
            now = time.perf_counter()
            for slug, hit in zip(slugs, found, strict=True):
                if hit:
                    seen.append(now - pending.pop(slug))
                elif now - pending[slug] > 10:
                    pending.pop(slug)
        await asyncio.sleep(0.001)


async def measure(url: str, redis_url: str, keys: list[str], rate: float, seconds: float) -> dict[str, float]:
    redis = aioredis.from_url(redis_url)
    run = str(int(time.time()))
    pending: dict[str, float] = {}
    seen: list[float] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(redis, pending, seen, stop))
    tasks = []
    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        for n in range(int(rate * seconds)):
            # A steady schedule, not a closed loop: each write starts at its slot whatever the others do.
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            # Spread over the keys given: one key alone would meet the default write limit (50/s per key).
            key = keys[n % len(keys)]
            tasks.append(asyncio.create_task(_write(session, url, key, n, run, pending)))
        written = sum(await asyncio.gather(*tasks))
        # Until the last write was answered: an API that falls behind the schedule takes longer than it.
        write_seconds = time.perf_counter() - start
    stop.set()
    await watcher
    await redis.aclose()
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--key", required=True, help="API keys, comma-separated")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.url, args.redis_url, args.key.split(","), args.rate, args.seconds))
    print("BENCHJSON " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
