"""Thumbnail throughput: ``python -m worker thumbnails`` against a bare Pillow loop doing the same resize.

``.venv/bin/python -m bench.thumbnails [--images N]``

- ceiling: a bare Pillow loop over a 12-megapixel JPEG (open, draft, exif_transpose, thumbnail to every size,
  WebP + JPEG each), in 1 and in 2 processes at once;
- worker: the real worker (``--processes 1`` then ``2``, one thread each) with real PostgreSQL, RabbitMQ and
  local storage; jobs published straight to the ``thumbnails`` queue (the relay is not measured here), timed from
  the first publish to the last product ``ready`` in PostgreSQL.

Prints a table and appends a section to ``bench/RESULTS.md``. Needs the services of ``make services``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import dramatiq
import PIL
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from PIL import Image, ImageOps

from migrations.runner import migrate
from shared.settings import Settings
from shared.storage import LocalStorage
from shared.store import images as repo
from shared.store.pool import init_connection
from worker.thumbnails.imaging import parse_sizes

ROOT = Path(__file__).resolve().parents[1]
SIZES = parse_sizes(Settings(_env_file=None).thumbnail_sizes)  # type: ignore[call-arg]


def photo(width: int = 4000, height: int = 3000) -> bytes:
    """A photo-like 12 MP JPEG: noise over a gradient (as hard to compress as a real photo)."""
    noise = Image.effect_noise((width, height), 40).convert("RGB")
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buf = io.BytesIO()
    Image.blend(noise, gradient, 0.5).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def bare(data: bytes) -> None:
    """The same resize as worker.thumbnails.imaging, written out plainly: the ceiling."""
    im = Image.open(io.BytesIO(data))
    largest = max(SIZES.values())
    scale = largest / max(im.size)
    im.draft("RGB", (round(im.width * scale), round(im.height * scale)))
    ImageOps.exif_transpose(im, in_place=True)
    for box in sorted(SIZES.values(), reverse=True):
        im.thumbnail((box, box), Image.Resampling.LANCZOS)
        im.save(io.BytesIO(), "WEBP", quality=80, method=4)
        im.save(io.BytesIO(), "JPEG", quality=85)


def _bare_loop(args: tuple[bytes, int]) -> float:
    data, n = args
    bare(data)  # warm-up
    started = time.perf_counter()
    for _ in range(n):
        bare(data)
    return time.perf_counter() - started


def ceiling(data: bytes, n: int, processes: int) -> float:
    """Images per second per process of the bare loop, ``processes`` running at once."""
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        times = pool.map(_bare_loop, [(data, n)] * processes)
    return sum(n / t for t in times) / processes


def _dsn(base: str, name: str) -> str:
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}"))


async def _setup(settings: Settings, data: bytes, products: int) -> list[dict[str, object]]:
    """Products with the photo as their pending original, each with its product.image_uploaded event."""
    key = await LocalStorage(settings.media_root).save_bytes(data, prefix="originals", ext="jpg")
    conn = await asyncpg.connect(settings.database_url)
    try:
        await init_connection(conn)
        cat = await conn.fetchval("INSERT INTO categories (slug, name) VALUES ('bench', 'Bench') RETURNING id")
        await conn.execute(
            "INSERT INTO products (slug, name, price, category_id) SELECT 'p' || g, 'P' || g, 1, $1 "
            "FROM generate_series(1, $2) g",
            cat,
            products,
        )
        for slug in await conn.fetch("SELECT slug FROM products ORDER BY id"):
            await repo.set_original(conn, slug["slug"], key, None, "bench")
        rows = await conn.fetch(
            "SELECT event_id::text AS id, type, aggregate, aggregate_id, version, request_id FROM outbox "
            "WHERE type = 'product.image_uploaded' ORDER BY outbox.id"
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def _ready(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        n: int = await conn.fetchval("SELECT count(*) FROM products WHERE image_status = 'ready'")
        return n
    finally:
        await conn.close()


def worker_rate(base: Settings, data: bytes, n: int, processes: int) -> float:
    """Images per second per process of ``python -m worker thumbnails --processes N`` (one thread each)."""
    tag = f"{os.getpid()}_{processes}_{uuid.uuid4().hex[:6]}"
    dbname, vhost = f"stockroom_bench_{tag}", f"stockroom-bench-{tag}"
    admin = _dsn(base.database_url, "postgres")
    asyncio.run(_exec(admin, f'CREATE DATABASE "{dbname}"'))
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    media = tempfile.mkdtemp(prefix="bench-media-")
    rabbit = base.rabbitmq_url.rsplit("/", 1)[0] + "/" + vhost
    settings = base.model_copy(
        update={"database_url": _dsn(base.database_url, dbname), "rabbitmq_url": rabbit, "media_root": media}
    )
    proc = None
    try:
        asyncio.run(migrate(settings.database_url))
        warmup = processes * 2
        events = asyncio.run(_setup(settings, data, warmup + n * processes))
        broker = RabbitmqBroker(url=rabbit)
        broker.declare_queue("thumbnails")
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "RABBITMQ_URL": rabbit,
            "MEDIA_ROOT": media,
            "LOG_LEVEL": "WARNING",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "thumbnails", "--processes", str(processes), "--threads", "1"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def publish(batch: list[dict[str, object]]) -> None:
            for ev in batch:
                broker.enqueue(dramatiq.Message("thumbnails", "make_thumbnails", (ev,), {}, {}))

        def wait(count: int) -> None:
            while asyncio.run(_ready(settings.database_url)) < count:
                time.sleep(0.05)

        publish(events[:warmup])  # every worker process started, imported and connected
        wait(warmup)
        started = time.perf_counter()
        publish(events[warmup:])
        wait(len(events))
        elapsed = time.perf_counter() - started
        broker.close()
        return n * processes / elapsed / processes
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)
        asyncio.run(_exec(admin, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        subprocess.run(["rm", "-rf", media], check=False)


async def _exec(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.thumbnails")
    parser.add_argument("--images", type=int, default=20, help="images per process per measurement")
    args = parser.parse_args()
    data = photo()
    settings = Settings()
    rows = []
    for processes in (1, 2):
        ceil = ceiling(data, args.images, processes)
        work = worker_rate(settings, data, args.images, processes)
        rows.append((processes, ceil, work))
    lines = [
        f"## Thumbnails ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs, shared); Python {platform.python_version()}, "
        f"Pillow {PIL.__version__}, dramatiq {dramatiq.__version__}.",
        f"One 12-megapixel JPEG ({len(data) / 1e6:.1f} MB) to {', '.join(f'{k} {v}px' for k, v in SIZES.items())}, "
        f"WebP + JPEG each; {args.images} images per process per row.",
        "",
        "| processes | bare Pillow loop (ceiling), img/s per process | worker, img/s per process | worker / ceiling |",
        "| --- | --- | --- | --- |",
    ]
    for processes, ceil, work in rows:
        lines.append(f"| {processes} | {ceil:.1f} | {work:.1f} | {work / ceil:.0%} |")
    one, two = rows[0][2], rows[1][2]
    lines += [
        "",
        f"Worker scaling 1 -> 2 processes: {one:.1f} -> {2 * two:.1f} img/s in all ({2 * two / one:.2f}x).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    with (ROOT / "bench" / "RESULTS.md").open("a") as f:
        f.write("\n" + text)


if __name__ == "__main__":
    main()
