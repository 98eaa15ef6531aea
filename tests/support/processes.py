"""Run ``python -m api`` (and other entry points) as real processes, the way users start them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a process needs to run with ``settings`` (the services' URLs, the admin key, media)."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "RABBITMQ_URL": settings.rabbitmq_url,
        "MEDIA_ROOT": settings.media_root,
        "BOOTSTRAP_API_KEY": settings.bootstrap_api_key or "",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "LOG_EVENTS": "false",
        "RELAY_METRICS_PORT": "0",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env


@dataclass
class Process:
    proc: asyncio.subprocess.Process
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


async def wait_live(url: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url + "/health/live") as r:
                    if r.status == 200:
                        return
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not come up within {within} s")
            await asyncio.sleep(0.1)


def run_python(
    *argv: str, env: dict[str, str] | None, timeout: float, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """``python *argv`` from the repo root to its end, with ``env`` (None: this process's), its output as text;
    ``check`` raises if it fails."""
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=check
    )


async def spawn(log: Path, *argv: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    """``python *argv`` from the repo root with ``env``, its stdout and stderr written to ``log``."""
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, *argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def stop(*procs: asyncio.subprocess.Process, within: float) -> None:
    """SIGTERM each of ``procs`` that still runs (all at once: they stop side by side, each signalled once), and
    SIGKILL any that has not exited ``within`` seconds later."""
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), within)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def api_process(settings: Settings, log: Path, *args: str, **env: str) -> AsyncIterator[Process]:
    """``python -m api --host 127.0.0.1 --port <free> *args``, live; stopped (SIGTERM, then SIGKILL) at the end."""
    port = free_port()
    argv = ("-m", "api", "--host", "127.0.0.1", "--port", str(port), *args)
    proc = await spawn(log, *argv, env=env_for(settings, **env))
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            await wait_live(url)
        except AssertionError:
            proc.kill()
            raise AssertionError(log.read_text(errors="replace")[-3000:]) from None  # noqa: ASYNC240
        yield Process(proc, url, log)
    finally:
        await stop(proc, within=20)


@contextlib.asynccontextmanager
async def worker_processes(
    settings: Settings, rabbitmq_url: str, tmp_path: Path, *runs: tuple[tuple[str, ...], dict[str, str]]
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """``python -m worker *args`` for each run, with its extra environment, logged to ``tmp_path/<args[0]>.log``;
    SIGTERM (then SIGKILL) at the end."""
    procs = []
    try:
        for args, env in runs:
            full = env_for(settings, RABBITMQ_URL=rabbitmq_url, **env)
            procs.append(await spawn(tmp_path / f"{args[0]}.log", "-m", "worker", *args, env=full))
        yield procs
    finally:
        await stop(*procs, within=30)


async def run_module(settings: Settings, *argv: str, seconds: float, **env: str) -> tuple[int, str, str]:
    """``python *argv`` from the repo root with the settings' environment (and ``env``): (exit status, stdout,
    stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        cwd=ROOT,
        env=env_for(settings, **env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), seconds)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
