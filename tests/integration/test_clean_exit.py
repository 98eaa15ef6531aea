"""Shutdown is clean: the API exits 0 after SIGTERM even when PostgreSQL is slow to close its connections."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp

from api.server import SHUTDOWN_TIMEOUT
from shared.settings import Settings
from tests.conftest import ADMIN
from tests.support.processes import api_process
from tests.support.tcp_proxy import TcpProxy


async def test_the_api_exits_0_within_its_drain_window_when_postgres_does_not_answer_the_close(
    settings: Settings, tmp_path: Path
) -> None:
    # Given an API whose PostgreSQL sits behind a proxy, with connections open in its pool
    host, port = settings.database_url.split("@", 1)[1].split("/", 1)[0].split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    try:
        async with api_process(
            settings, tmp_path / "api.log", DATABASE_URL=proxy.url_for(settings.database_url)
        ) as api:
            async with aiohttp.ClientSession() as session:
                for n in range(3):
                    async with session.post(f"{api.url}/api/records", json={"n": n}, headers=ADMIN) as r:
                        assert r.status == 201
            # When PostgreSQL stops answering (the socket stays open) and the API gets SIGTERM
            proxy.stall(True)
            started = time.monotonic()
            api.proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(api.proc.wait(), SHUTDOWN_TIMEOUT + 5)
            took = time.monotonic() - started
            # Then it exits 0, within its drain window, saying it dropped the connections
            assert code == 0, api.output()[-3000:]
            assert took < SHUTDOWN_TIMEOUT
            assert "postgres_pool_terminated" in api.output()
            assert "api_stopped" in api.output()
    finally:
        proxy.stall(False)
        await proxy.stop()
