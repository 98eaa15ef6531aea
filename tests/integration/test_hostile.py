"""A hostile client: every input below once answered 500 (or kept a value other than the one sent). Each is sent as
raw bytes to a live API over a real socket; each must answer a 4xx problem document and change nothing, in
PostgreSQL (every row) and in the outbox.

The catalogue is one parametrised suite (:data:`CASES`); the behaviours that need more than one request (a client
that disconnects mid-body, values that must read back exactly) follow it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.parsing import MAX_JSON_DEPTH
from shared.cursors import Cursors
from shared.settings import Settings
from tests.conftest import ADMIN, ADMIN_KEY
from tests.support.processes import api_process
from tests.support.tcp_proxy import TcpProxy

SECRET = "hostile-suite-cursor-secret-0123456789"
#: The same key as the app's: a cursor signed with it passes the MAC, so only the range checks stand between it
#: and PostgreSQL (a leaked key, or a bug in the code that makes cursors).
SIGNED = Cursors(SECRET)
OTHER_KEY = Cursors("another-secret-entirely-0123456789")
PROBLEM = "application/problem+json"

TABLES = ("categories", "products", "records", "users", "idempotency_keys", "api_keys", "outbox")


@dataclass(frozen=True)
class Case:
    """One hostile request: its method, path (raw, already percent-encoded), extra header lines (raw bytes) and
    body; the status it must get."""

    id: str
    method: str
    path: str
    status: int
    body: bytes = b""
    headers: list[bytes] = field(default_factory=list)
    auth: bool = True


def nested(depth: int, leaf: str = "1") -> bytes:
    """A JSON object whose innermost value sits ``depth`` objects and arrays deep (alternating)."""
    opening = "".join('{"a":' if i % 2 == 0 else "[" for i in range(depth))
    closing = "".join("}" if i % 2 == 0 else "]" for i in reversed(range(depth)))
    return (opening + leaf + closing).encode()


def in_product(doc: bytes) -> bytes:
    return b'{"name":"Deep","category":"garden-tools","price":"1.00","attributes":' + doc + b"}"


def cursor_query(sort: str, key: list[Any], signer: Cursors = SIGNED) -> str:
    return f"/api/products?sort={sort}&cursor={signer.encode(f'products:{sort}', key)}"


BIG = 123456789012345678901234567890


def _cases() -> list[Case]:
    cases: list[Case] = []

    # -- numbers in query parameters: asyncpg cannot encode 1e-20000 and wrapped 1e131072 into another number
    for name, value in [
        ("min_price", "1e-20000"),
        ("max_price", "1e1000000"),
        ("min_price", "1e131072"),
        ("max_price", "1e-131072"),
        ("min_price", "NaN"),
        ("max_price", "sNaN"),
        ("min_price", "Infinity"),
        ("max_price", "-Infinity"),
        ("min_price", "-1"),
        ("max_price", "0.001"),
        ("min_price", "1" * 40),
        ("max_price", "abc"),
    ]:
        cases.append(Case(f"query-{name}-{value[:12]}", "GET", f"/api/products?{name}={quote(value)}", 400))

    # -- numbers in bodies: the same rule, as 422
    for price in ['"1e-20000"', '"1e1000000"', '"1e131072"', '"NaN"', '"Infinity"', "1e999", '"-0.01"', "true"]:
        body = b'{"name":"P","category":"garden-tools","price":' + price.encode() + b"}"
        status = 400 if price == "1e999" else 422  # orjson refuses a number it would read as infinity: not JSON
        cases.append(Case(f"body-price-{price}", "POST", "/api/products", status, body))
    cases.append(Case("patch-price-1e-20000", "PATCH", "/api/products/steel-spade", 422, b'{"price":"1e-20000"}'))

    # -- integers beyond 64 bits: orjson read them as floats (123456789012345678901234567890 -> 1.2345678901234568e+29)
    for where, path, method, body in [
        ("record", "/api/records", "POST", b'{"n":%d}' % BIG),
        ("record-array", "/api/records", "POST", b'{"n":[1,2,%d]}' % BIG),
        ("record-2^63", "/api/records", "POST", b'{"n":%d}' % 2**63),
        ("record-2^64", "/api/records", "POST", b'{"n":%d}' % 2**64),
        ("record-neg", "/api/records", "POST", b'{"n":%d}' % (-(2**63) - 1)),
        ("record-5000-digits", "/api/records", "POST", b'{"n":' + b"9" * 5000 + b"}"),
        ("record-put", "/api/records/1", "PUT", b'{"n":%d}' % BIG),
        ("picus", "/picus/put", "POST", b'{"n":%d}' % BIG),
        ("data", "/data", "POST", b'{"id":%d,"name":"x","value":1}' % BIG),
        ("attributes", "/api/products", "POST", in_product(b'{"n":%d}' % BIG)),
        ("attributes-patch", "/api/products/steel-spade", "PATCH", b'{"attributes":{"n":%d}}' % BIG),
        ("stock", "/api/products/steel-spade", "PATCH", b'{"stock":%d}' % BIG),
    ]:
        cases.append(Case(f"bigint-{where}", method, path, 422, body))

    # -- nesting: orjson reads 1,023 levels but writes 254, and the merge patch recursed past Python's limit
    for depth in (MAX_JSON_DEPTH + 1, 254, 500, 1000, 1023, 1024, 5000):
        cases += [
            Case(f"depth-{depth}-record", "POST", "/api/records", 400, nested(depth)),
            Case(f"depth-{depth}-attributes", "POST", "/api/products", 400, in_product(nested(depth))),
            Case(
                f"depth-{depth}-patch",
                "PATCH",
                "/api/products/steel-spade",
                400,
                b'{"attributes":' + nested(depth) + b"}",
            ),
        ]
    for depth in (254, 1000):
        cases += [
            Case(f"depth-{depth}-record-put", "PUT", "/api/records/1", 400, nested(depth)),
            Case(f"depth-{depth}-picus", "POST", "/picus/put", 400, nested(depth)),
            Case(f"depth-{depth}-data", "POST", "/data", 400, nested(depth)),
            Case(f"depth-{depth}-category-patch", "PATCH", "/api/categories/garden-tools", 400, nested(depth)),
            Case(f"depth-{depth}-hello", "PUT", "/hello/ann", 400, nested(depth)),
        ]
    cases.append(Case("nul-at-depth-1000", "POST", "/api/records", 400, nested(1000, '"\\u0000"')))
    cases.append(Case("nul-at-depth-1000-patch", "PATCH", "/api/products/steel-spade", 400, nested(1000, '"\\u0000"')))
    cases.append(Case("nul-at-depth-60", "POST", "/api/records", 422, nested(60, '"\\u0000"')))
    cases.append(Case("nul-in-a-key", "POST", "/picus/put", 422, b'{"a\\u0000":1}'))

    # -- headers: aiohttp hands non-UTF-8 bytes to handlers as surrogates, which nothing can encode again
    for name, method, path, body in [
        (b"Authorization: Bearer \xff\xfe", "POST", "/api/records", b'{"a":1}'),
        (b"Idempotency-Key: k\xff", "POST", "/api/records", b'{"a":1}'),
        (b'If-Match: "1\xff"', "PUT", "/api/records/1", b'{"a":1}'),
        (b'If-None-Match: "1\xff"', "GET", "/api/records/1", b""),
        (b"X-Request-ID: id\xff", "GET", "/api/products", b""),
        (b"Content-Type: application/json\xff", "POST", "/api/records", b'{"a":1}'),
        (b"X-Forwarded-For: 10.0.0.1\xff", "GET", "/api/products", b""),
        (b"Accept: \xc3\x28", "GET", "/api/categories", b""),
    ]:
        header = name.split(b":")[0].decode()
        cases.append(Case(f"header-{header}-{method}", method, path, 400, body, [name], auth=header != "Authorization"))

    # -- cursors: forged (another key, cut, edited) or signed but carrying values out of range
    good = SIGNED.encode("products:-created_at", ["2026-01-01T00:00:00+00:00", 1])
    forged = {
        "other-key": cursor_query("-created_at", ["2026-01-01T00:00:00+00:00", 1], OTHER_KEY),
        "cut": f"/api/products?cursor={good[:-3]}",
        "edited": f"/api/products?cursor={good[:-1]}{'A' if good[-1] != 'A' else 'B'}",
        "not-base64": "/api/products?cursor=%25%25%25",
        "non-ascii": "/api/products?cursor=%C3%A9",
        "other-listing": f"/api/products?sort=price&cursor={good}",
        "id-2^63": cursor_query("-created_at", ["2026-01-01T00:00:00+00:00", 2**63]),
        "id-2^64-1": cursor_query("created_at", ["2026-01-01T00:00:00+00:00", 2**64 - 1]),
        "id-negative": cursor_query("-created_at", ["2026-01-01T00:00:00+00:00", -1]),
        "id-bool": cursor_query("-created_at", ["2026-01-01T00:00:00+00:00", True]),
        "id-float": cursor_query("-created_at", ["2026-01-01T00:00:00+00:00", 1.5]),
        "id-string": cursor_query("-created_at", ["2026-01-01T00:00:00+00:00", "1"]),
        "price-1e-20000": cursor_query("price", ["1e-20000", 1]),
        "price-1e131072": cursor_query("-price", ["1e131072", 1]),
        "price-nan": cursor_query("price", ["NaN", 1]),
        "price-negative": cursor_query("price", ["-5.00", 1]),
        "price-number": cursor_query("price", [5, 1]),
        "name-nul": cursor_query("name", ["a\x00b", 1]),
        "name-long": cursor_query("name", ["n" * 5000, 1]),
        "name-number": cursor_query("name", [5, 1]),
        "date-year-1": cursor_query("-created_at", ["0001-01-01T00:00:00+05:00", 1]),
        "date-year-1-utc": cursor_query("created_at", ["0001-01-01T00:00:00+00:00", 1]),
        "date-year-9999": cursor_query("created_at", ["9999-12-31T23:59:59-05:00", 1]),
        "date-year-9999-utc": cursor_query("-created_at", ["9999-12-31T23:59:59.999999+00:00", 1]),
        "date-naive": cursor_query("-created_at", ["2026-01-01T00:00:00", 1]),
        "date-garbage": cursor_query("-created_at", ["yesterday", 1]),
        "key-too-short": cursor_query("-created_at", ["2026-01-01T00:00:00+00:00"]),
        "key-too-long": cursor_query("-created_at", ["2026-01-01T00:00:00+00:00", 1, 2]),
        "key-empty": cursor_query("price", []),
        "categories-2^63": f"/api/categories?cursor={SIGNED.encode('categories', [2**63])}",
        "categories-negative": f"/api/categories?cursor={SIGNED.encode('categories', [-1])}",
        "categories-bool": f"/api/categories?cursor={SIGNED.encode('categories', [True])}",
        "records-2^63": f"/api/records?cursor={SIGNED.encode('records', [2**63])}",
        "records-string": f"/api/records?cursor={SIGNED.encode('records', ['1'])}",
        "records-two": f"/api/records?cursor={SIGNED.encode('records', [1, 2])}",
    }
    for name, path in forged.items():
        cases.append(Case(f"cursor-{name}", "GET", path, 400))

    # -- numbered pages (Django REST framework's page, page_size): never a 5xx, whatever the number
    for query, status in [
        ("page=0", 400),
        ("page=-1", 400),
        ("page=-0", 400),
        ("page=1.0", 400),
        ("page=1e3", 400),
        ("page=%EF%BC%91", 400),  # a full-width digit one: str.isdigit() says yes, int() reads it
        ("page=%00", 400),
        ("page=" + "9" * 5000, 404),
        ("page=" + "9" * 19, 404),
        ("page=9223372036854775808", 404),
        ("page=2&ordering=name&page_size=1", 404),
        ("page_size=101", 400),
        ("page_size=" + "9" * 5000, 400),
        ("page_size=-5", 400),
        ("page=1&page_size=0", 400),
        ("page=1&ordering=-name", 400),
        ("page=1&ordering=" + "price," * 500, 400),
        ("page=1&cursor=" + "A" * 100, 400),
        ("page=1&search=" + "a" * 201, 400),
        ("page=1&is_active=yes", 400),
    ]:
        cases.append(Case(f"numbered-{query[:40]}", "GET", f"/api/products?{query}", status))

    # -- found while writing this suite
    cases.append(Case("path-slug-not-utf8", "GET", "/api/products/%FF", 404))
    cases.append(Case("path-hello-not-utf8", "PUT", "/hello/%FF", 422, b'{"dateOfBirth":"1990-01-01"}'))
    cases.append(Case("body-not-utf8", "POST", "/api/records", 400, b'{"a":"\xff"}'))
    return cases


CASES = _cases()


@pytest.fixture
async def hostile(aiohttp_client, settings: Settings, pg: asyncpg.Connection) -> TestClient:  # type: ignore[no-untyped-def]
    """A live API holding one of each resource, its cursors signed with :data:`SECRET`."""
    from pydantic import SecretStr

    app = create_app(settings.model_copy(update={"cursor_secret": SecretStr(SECRET)}))
    client: TestClient = await aiohttp_client(app)
    for method, path, body in [
        ("POST", "/api/categories", {"name": "Garden Tools"}),
        ("POST", "/api/products", {"name": "Steel Spade", "category": "garden-tools", "price": "19.99", "stock": 7}),
        ("POST", "/api/records", {"kept": [1, 2**63 - 1, -(2**63)]}),
        ("PUT", "/hello/ann", {"dateOfBirth": "1990-05-17"}),
    ]:
        r = await client.request(method, path, json=body, headers=ADMIN)
        assert r.status < 300, await r.text()
    return client


async def snapshot(pg: asyncpg.Connection) -> dict[str, list[str]]:
    """Every row of every table, as text: what "nothing changed" compares."""
    return {t: [r[0] for r in await pg.fetch(f"SELECT t::text FROM {t} t ORDER BY 1")] for t in TABLES}


async def send(client: TestClient, case: Case) -> tuple[int, dict[str, str], bytes]:
    """``case`` as raw bytes over a new connection; the status, headers and body of the answer."""
    url = urlsplit(str(client.make_url("/")))
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    lines = [f"{case.method} {case.path} HTTP/1.1".encode(), f"Host: {url.hostname}".encode(), b"Connection: close"]
    if case.auth:
        lines.append(f"Authorization: Bearer {ADMIN_KEY}".encode())
    if case.body and not any(h.lower().startswith(b"content-type:") for h in case.headers):
        lines.append(b"Content-Type: application/json")
    lines += case.headers
    lines.append(b"Content-Length: %d" % len(case.body))
    try:
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + case.body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_hostile_input_is_a_4xx_problem_and_changes_nothing(
    hostile: TestClient, pg: asyncpg.Connection, case: Case
) -> None:
    # Given a service holding a category, a product, a record and a user
    before = await snapshot(pg)

    # When the hostile request arrives
    status, headers, body = await send(hostile, case)

    # Then it is refused with the status it deserves, as a problem document, and nothing was written
    assert status < 500, body[:500]
    assert headers.get("content-type", "").startswith(PROBLEM), (status, headers, body[:200])
    problem = json.loads(body)
    assert problem["status"] == status
    assert status == case.status, problem
    assert await snapshot(pg) == before


async def test_the_api_answers_after_the_whole_hostile_catalogue(hostile: TestClient) -> None:
    # Given every hostile request, one after another on one app
    for case in CASES:
        await send(hostile, case)

    # Then the service still answers a plain read
    r = await hostile.get("/api/products/steel-spade")
    assert r.status == 200


# -- values read back as they were sent -----------------------------------------------------------------------------


async def test_integers_at_the_edges_of_64_bits_read_back_exactly(hostile: TestClient) -> None:
    # Given a record and product attributes holding the extreme 64-bit integers, and digits inside strings
    doc = {"max": 2**63 - 1, "min": -(2**63), "text": str(BIG), "list": [0, 2**63 - 1]}
    r = await hostile.post("/api/records", json=doc, headers=ADMIN)
    assert r.status == 201, await r.text()
    rid = (await r.json())["id"]
    r = await hostile.post(
        "/api/products",
        json={"name": "Big", "category": "garden-tools", "price": "1.00", "attributes": doc},
        headers=ADMIN,
    )
    assert r.status == 201, await r.text()

    # When they are read back (raw bytes: no client parsing in between)
    record = orjson.loads(await (await hostile.get(f"/api/records/{rid}")).read())
    product = json.loads(await (await hostile.get("/api/products/big")).read())

    # Then every value is the one that was sent, an integer still
    assert record["data"] == doc
    assert product["attributes"] == doc
    assert all(type(product["attributes"][k]) is int for k in ("max", "min"))


async def test_a_body_nested_to_the_limit_is_stored_and_read_back(hostile: TestClient) -> None:
    # Given a record nested exactly MAX_JSON_DEPTH levels deep, holding a NUL-free string at the bottom
    body = nested(MAX_JSON_DEPTH, '"bottom"')

    # When it is stored and read back
    r = await hostile.post("/api/records", data=body, headers={**ADMIN, "Content-Type": "application/json"})
    assert r.status == 201, await r.text()
    got = await (await hostile.get(f"/api/records/{(await r.json())['id']}")).json()

    # Then it is the same document
    assert got["data"] == json.loads(body)


async def test_a_cursor_the_service_made_is_still_read_after_the_checks(hostile: TestClient) -> None:
    # Given three products, listed two to a page in every sort order
    for name in ("Fork", "Rake"):
        r = await hostile.post(
            "/api/products", json={"name": name, "category": "garden-tools", "price": "5.50"}, headers=ADMIN
        )
        assert r.status == 201
    for sort in ("-created_at", "created_at", "price", "-price", "name"):
        # When the second page is asked for with the first page's cursor
        first = await (await hostile.get(f"/api/products?sort={sort}&limit=2")).json()
        second = await hostile.get(f"/api/products?sort={sort}&limit=2&cursor={first['next_cursor']}")

        # Then it answers, with the one product left
        assert second.status == 200, await second.text()
        assert len((await second.json())["items"]) == 1


def test_cursor_macs_depend_on_the_secret() -> None:
    # A cursor signed with another key fails the MAC; the same key reads it back.
    body = orjson.dumps(["records", [1]])
    mac = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()[:8]
    ours = base64.urlsafe_b64encode(mac + body).rstrip(b"=").decode()
    assert SIGNED.decode("records", ours) == [1]
    assert ours != OTHER_KEY.encode("records", [1])


# -- a client that goes away mid-request ---------------------------------------------------------------------------


async def test_a_client_that_disconnects_mid_body_is_logged_and_counted_as_499(
    settings: Settings, tmp_path: Path
) -> None:
    # Given a live API process, logging JSON lines
    async with api_process(settings, tmp_path / "api.log") as api:
        url = urlsplit(api.url)
        # When a client announces a 100,000-byte body, sends 10 bytes of it and closes the connection
        for _ in range(3):
            _reader, writer = await asyncio.open_connection(url.hostname, url.port)
            writer.write(
                b"POST /api/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Length: 100000\r\n\r\n".encode()
                + b'{"a": "xxx'
            )
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession() as session, session.get(api.url + "/metrics") as r:
            metrics = await r.text()
        output = api.output()

    # Then each is one access line with status 499 and a disconnect line, without a traceback or a 500
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("event") == "request" and r.get("route") == "/api/records"]
    assert [r["status"] for r in access] == [499, 499, 499], output[-3000:]
    assert sum(r.get("event") == "client_disconnected" for r in records) == 3, output[-3000:]
    assert "Traceback" not in output
    assert not [r for r in records if r.get("level") in ("error", "critical")], output[-3000:]
    assert 'route="/api/records",status="499"' in metrics.replace('method="POST",', "")


async def test_a_client_that_leaves_while_its_write_waits_is_counted_as_499(settings: Settings, tmp_path: Path) -> None:
    # Given an API process (aiohttp does not cancel its handlers when a client goes) whose PostgreSQL hangs
    proxy = TcpProxy("127.0.0.1", urlsplit(settings.database_url).port or 5432)
    await proxy.start()
    try:
        stalled = settings.model_copy(update={"database_url": proxy.url_for(settings.database_url)})
        async with api_process(stalled, tmp_path / "api.log") as api:
            proxy.stall(True)
            url = urlsplit(api.url)

            # When a client sends a whole write, then gives up before the answer and closes the connection
            _reader, writer = await asyncio.open_connection(url.hostname, url.port)
            body = b'{"a": 1}'
            writer.write(
                b"POST /api/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            await asyncio.sleep(2.5)  # the write deadline (1.9 s) passes: the handler answers 503 to nobody
            proxy.stall(False)
            async with aiohttp.ClientSession() as session, session.get(api.url + "/metrics") as r:
                metrics = await r.text()
            output = api.output()
    finally:
        await proxy.stop()

    # Then the request is logged and counted as the client's disconnect, not as the 503 nobody received
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [r["status"] for r in records if r.get("event") == "request" and r.get("route") == "/api/records"]
    assert access == [499], output[-3000:]
    assert [r.get("answer") for r in records if r.get("event") == "client_disconnected"] == [503]
    counted = [line for line in metrics.splitlines() if 'route="/api/records"' in line and "_total{" in line]
    assert any('status="499"' in line for line in counted), counted
    assert not any('status="503"' in line for line in counted), counted
