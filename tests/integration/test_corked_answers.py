"""The API sends the answers it made in one turn of its event loop together (api/transport.py): against a real
``python -m api``, every answer still arrives whole and in order, on kept-alive, pipelined and closing
connections alike, a large one and a file too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from api.transport import FLUSH_AT
from shared.settings import Settings
from tests.conftest import ADMIN
from tests.support.processes import Process, api_process

pytestmark = pytest.mark.timeout(90)

PRODUCTS = 20


@pytest.fixture
async def api(settings: Settings, tmp_path: Path) -> AsyncIterator[Process]:
    # Rate limits as the defaults would let 50 connections through: the requests here come from one address.
    async with api_process(settings, tmp_path / "api.log", RATE_LIMIT_READS_PER_SECOND="100000") as proc:
        async with aiohttp.ClientSession(proc.url, headers=ADMIN) as s:
            r = await s.post("/api/categories", json={"name": "Tools"})
            assert r.status == 201, await r.text()
            for i in range(PRODUCTS):
                r = await s.post("/api/products", json={"name": f"Item {i}", "price": f"{i}.50", "category": "tools"})
                assert r.status == 201, await r.text()
        yield proc


async def _open(api: Process) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(api.url)
    return await asyncio.open_connection(url.hostname, url.port)


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer with a Content-Length: status, headers (lower-cased names), body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if x)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    return status, headers, body


def _get(path: str, *extra: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: stockroom", *extra, "", ""]).encode()


async def test_pipelined_requests_on_one_connection_get_their_answers_whole_and_in_order(api: Process) -> None:
    # Given one connection that sends eight requests in one packet, as a pipelining client does
    reader, writer = await _open(api)
    slugs = [f"item-{i}" for i in range(8)]
    writer.write(b"".join(_get(f"/api/products/{s}") for s in slugs))
    await writer.drain()
    # Then the eight answers come back whole, each the product it asked for, in the order asked
    got = [await _answer(reader) for _ in slugs]
    assert [status for status, _, _ in got] == [200] * 8
    assert [json.loads(body)["slug"] for _, _, body in got] == slugs
    writer.close()


async def test_many_kept_alive_connections_each_get_every_answer_they_asked_for(api: Process) -> None:
    # Given 50 connections at once, each asking five times in turn for products, kept alive between requests
    async def one(n: int) -> list[tuple[int, str]]:
        reader, writer = await _open(api)
        out = []
        for k in range(5):
            slug = f"item-{(n + k) % PRODUCTS}"
            writer.write(_get(f"/api/products/{slug}"))
            status, _, body = await _answer(reader)
            out.append((status, json.loads(body)["slug"]))
        writer.close()
        return out

    results = await asyncio.gather(*(one(n) for n in range(50)))
    # Then every answer is a 200 for the very product its connection asked for
    for n, answers in enumerate(results):
        assert answers == [(200, f"item-{(n + k) % PRODUCTS}") for k in range(5)]


async def test_an_answer_on_a_connection_closed_after_it_arrives_whole_before_the_close(api: Process) -> None:
    # Given a request that asks the server to close the connection after its answer
    reader, writer = await _open(api)
    writer.write(_get("/api/products/item-3", "Connection: close"))
    await writer.drain()
    # Then the whole answer arrives, and then the connection ends
    status, headers, body = await _answer(reader)
    assert status == 200
    assert json.loads(body)["slug"] == "item-3"
    assert headers.get("connection", "").lower() == "close"
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()


async def test_answers_larger_than_a_turn_holds_arrive_whole(api: Process) -> None:
    # Given answers far larger than what one connection holds for the end of a turn: the OpenAPI document and
    # a file of the docs page (written through the same transport, uvloop having no sendfile)
    reader, writer = await _open(api)
    writer.write(_get("/api/openapi.json") + _get("/api/docs/static/swagger-ui-bundle.js") + _get("/health/live"))
    await writer.drain()
    status, _, doc = await _answer(reader)
    assert status == 200
    assert len(doc) > FLUSH_AT
    assert json.loads(doc)["openapi"].startswith("3.")
    status, _, js = await _answer(reader)
    on_disk = (Path(__file__).parents[2] / "api/static/swagger-ui/swagger-ui-bundle.js").read_bytes()
    assert status == 200
    assert js == on_disk
    # And the answer pipelined after them still comes, whole
    status, _, _ = await _answer(reader)
    assert status == 200
    writer.close()
