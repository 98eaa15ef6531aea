"""Safe exposure by default: metrics ports on loopback, no content sniffing, no versions in ``Server``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from shared.settings import Settings
from tests.support.processes import api_process, env_for, free_port, spawn, stop


def listening_on(port: int) -> set[str]:
    """The local addresses (IPv4, hex as in /proc) that listen on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, hex_port = local.rsplit(":", 1)
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(addr)
    return found


#: 127.0.0.1 and 0.0.0.0 as /proc/net/tcp writes them.
LOOPBACK, ANY = "0100007F", "00000000"


@contextlib.asynccontextmanager
async def running(log: Path, *args: str, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await spawn(log, *args, env=env)
    try:
        yield proc
    finally:
        await stop(proc, within=40)


async def wait_listening(port: int, log: Path, within: float = 30.0) -> set[str]:
    deadline = time.monotonic() + within
    while not (found := listening_on(port)):
        assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]  # noqa: ASYNC240
        await asyncio.sleep(0.1)
    return found


@pytest.mark.parametrize(
    ("args", "port_variable"),
    [(("-m", "worker", "relay"), "RELAY_METRICS_PORT"), (("-m", "worker", "cache"), "dramatiq_prom_port")],
    ids=["relay", "cache worker"],
)
@pytest.mark.parametrize(("host", "expected"), [(None, LOOPBACK), ("0.0.0.0", ANY)], ids=["default", "told"])
async def test_metrics_ports_listen_on_loopback_unless_told_otherwise(
    settings: Settings, tmp_path: Path, args: tuple[str, ...], port_variable: str, host: str | None, expected: str
) -> None:
    # Given a relay or worker started with a metrics port (and WORKER_METRICS_HOST, or not)
    port = free_port()
    env = env_for(settings, **{port_variable: str(port)})
    env.pop("dramatiq_prom_host", None)
    env.pop("WORKER_METRICS_HOST", None)
    if host is not None:
        env["WORKER_METRICS_HOST"] = host
    log = tmp_path / "process.log"
    async with running(log, *args, env=env):
        # Then its metrics port listens on loopback only by default, on every interface when told
        assert await wait_listening(port, log) == {expected}


@pytest.mark.parametrize(
    "path", ["/api/products", "/api/products/nope", "/health/live", "/api/categories?limit=0", "/nowhere"]
)
async def test_json_and_problem_responses_forbid_sniffing_and_name_no_versions(client: TestClient, path: str) -> None:
    r = await client.get(path)
    assert r.content_type in ("application/json", "application/problem+json")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers.getall("Server") == ["stockroom"]


async def test_requests_the_parser_refuses_name_no_versions_either(settings: Settings, tmp_path: Path) -> None:
    # Given a real API process
    async with api_process(settings, tmp_path / "api.log") as api:
        host, port = api.url.removeprefix("http://").split(":")
        # When a request too malformed for any handler arrives (aiohttp answers it itself)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        head = (await asyncio.wait_for(reader.read(4096), 5)).decode("latin-1")
        writer.close()
    # Then it is 400, and its Server header names no versions
    assert head.split(" ")[1] == "400"
    server = [line for line in head.split("\r\n") if line.lower().startswith("server:")]
    assert server == ["Server: stockroom"]
