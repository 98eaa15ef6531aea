"""Slow clients hold nothing forever: a connection whose request headers or body arrive too slowly is closed
after the documented timeouts (``HTTP_HEADER_TIMEOUT``, ``HTTP_BODY_TIMEOUT``), against a real ``python -m api``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from shared.settings import Settings
from tests.conftest import ADMIN
from tests.support.processes import Process, api_process

#: The timeouts the API under test runs with (seconds).
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
#: How late the close may come (scheduling on a loaded machine, aiohttp's one second of lingering).
SLACK = 2.5

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def api(settings: Settings, tmp_path: Path) -> AsyncIterator[Process]:
    env = {"HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "HTTP_BODY_TIMEOUT": str(BODY_TIMEOUT)}
    async with api_process(settings, tmp_path / "api.log", **env) as proc:
        yield proc


async def _connect(api: Process) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(api.url)
    return await asyncio.open_connection(url.hostname, url.port)


async def _trickle(writer: asyncio.StreamWriter, data: bytes, reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Send ``data`` one byte a second until the server closes; the bytes sent and what came back."""
    sent = 0
    for i in range(len(data)):
        try:
            writer.write(data[i : i + 1])
            await writer.drain()
        except ConnectionError:
            break
        sent += 1
        try:
            answer = await asyncio.wait_for(reader.read(65536), 1.0)
        except TimeoutError:
            continue
        except ConnectionError:
            return sent, b""
        return sent, answer
    return sent, b""


async def test_headers_trickling_a_byte_a_second_are_cut_off(api: Process) -> None:
    # Given a client that sends its request line and headers one byte a second
    reader, writer = await _connect(api)
    request = b"GET /api/categories HTTP/1.1\r\nHost: localhost\r\nX-Padding: " + b"p" * 60 + b"\r\n\r\n"
    started = time.monotonic()
    sent, answer = await _trickle(writer, request, reader)
    elapsed = time.monotonic() - started
    writer.close()
    # Then the server closed the connection after the header timeout, long before the headers were complete
    assert sent < len(request)
    assert answer == b""
    assert HEADER_TIMEOUT - 0.5 <= elapsed <= HEADER_TIMEOUT + SLACK


async def test_an_idle_connection_is_closed_after_the_header_timeout(api: Process) -> None:
    reader, writer = await _connect(api)
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), HEADER_TIMEOUT + SLACK + 5) == b""
    assert time.monotonic() - started <= HEADER_TIMEOUT + SLACK
    writer.close()


async def test_a_body_trickling_after_its_headers_is_408_and_closed(api: Process) -> None:
    # Given a client that sends a write's headers at once, then its body one byte a second
    reader, writer = await _connect(api)
    body = b'{"note": "' + b"x" * 40 + b'"}'
    head = (
        b"POST /api/records HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + f"Authorization: {ADMIN['Authorization']}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    writer.write(head)
    await writer.drain()
    started = time.monotonic()
    sent, answer = await _trickle(writer, body, reader)
    # Then it is answered 408 (a problem document) once the body timeout has passed, and the connection closed
    answer += await asyncio.wait_for(reader.read(), SLACK)  # the rest, up to the close
    elapsed = time.monotonic() - started
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"application/problem+json" in answer
    assert sent < len(body)
    assert elapsed <= BODY_TIMEOUT + SLACK


async def test_a_client_sending_at_a_normal_pace_is_answered_on_one_connection(api: Process) -> None:
    # A keep-alive client sending requests in time is unaffected by the timeouts
    reader, writer = await _connect(api)
    for _ in range(3):
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.startswith(b"HTTP/1.1 200")
        await asyncio.sleep(HEADER_TIMEOUT / 2)
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
    writer.close()
