"""Security review: API keys compared in constant time, header and body limits, no path traversal in media keys.

(SQL built only from fixed text: ``test_security_sql.py``. ``/metrics`` off or on an internal port:
``test_metrics.py``; the docs off: ``test_docs.py``.)
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from api.app import create_app
from shared.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.support.processes import api_process

ROOT = Path(__file__).resolve().parents[2]


async def raw(url: str, request: bytes) -> bytes:
    """Send ``request`` as bytes (no client normalises the path or refuses the headers); the answer's bytes.

    Written in 8 KiB pieces while the answer is read: a server refusing a request it has not read to the end
    answers and closes, and what it answered must be read before the connection's reset discards it.
    """
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    answer = bytearray()

    async def read() -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                answer.extend(chunk)
                if b"\r\n\r\n" in answer and not request.endswith(b"\r\n\r\n"):
                    return

    reading = asyncio.create_task(read())
    try:
        for start in range(0, len(request), 8192):
            if reading.done():
                break
            writer.write(request[start : start + 8192])
            await writer.drain()
            await asyncio.sleep(0.001)
    except ConnectionError:
        pass
    try:
        await asyncio.wait_for(reading, 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return bytes(answer)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")) else 0


# -- API keys ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        ADMIN_KEY[:-1] + ("x" if ADMIN_KEY[-1] != "x" else "y"),  # same length, one character off
        ADMIN_KEY[:-1],  # a prefix
        ADMIN_KEY + "x",  # longer
        "x" * 4096,
        "é" * 8,  # not ASCII
    ],
)
async def test_a_wrong_key_of_any_length_is_401_and_writes_nothing(client, pg, key: str) -> None:
    r = await client.post("/api/records", json={"a": 1}, headers={"Authorization": f"Bearer {key}"})
    assert r.status == 401
    assert await pg.fetchval("SELECT count(*) FROM records") == 0


SECRET_NAMES = frozenset({"key", "token", "boot", "bootstrap_api_key", "secret", "digest"})


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def test_keys_are_never_compared_with_equality() -> None:
    # The bootstrap key is compared with hmac.compare_digest; stored keys are looked up by their SHA-256, so no
    # comparison ever touches a key; nothing compares a key (or its digest) with == or != in Python.
    auth = ast.parse((ROOT / "api" / "auth.py").read_text())
    repo = ast.parse((ROOT / "shared" / "store" / "apikeys.py").read_text())
    for tree in (auth, repo):
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
                operands = [node.left, *node.comparators]
                assert not any(_names(o) & SECRET_NAMES for o in operands), ast.unparse(node)
    calls = {ast.unparse(n.func) for n in ast.walk(auth) if isinstance(n, ast.Call)}
    assert "hmac.compare_digest" in calls
    lookups = [n for n in ast.walk(repo) if isinstance(n, ast.Constant) and "FROM api_keys WHERE" in str(n.value)]
    assert lookups
    assert all("key_hash = $1" in str(n.value) for n in lookups)


# -- header and body limits (the real server, as ``python -m api`` configures it) -------------------------------


@pytest.mark.slow
async def test_header_and_body_limits_are_refused_with_4xx_never_5xx(settings: Settings, tmp_path: Path) -> None:
    async with api_process(settings, tmp_path / "api.log") as api:
        host = b"Host: 127.0.0.1\r\nConnection: close\r\n"

        async def get(extra: bytes, path: bytes = b"/health/live") -> int:
            return status_of(await raw(api.url, b"GET " + path + b" HTTP/1.1\r\n" + host + extra + b"\r\n"))

        # A header of 100 KiB, or of 9 KiB, is refused; one of 7 KiB is fine
        assert await get(b"X-Big: " + b"a" * 100 * 1024 + b"\r\n") in (400, 431)
        assert await get(b"X-Big: " + b"a" * 9 * 1024 + b"\r\n") in (400, 431)
        assert await get(b"X-Big: " + b"a" * 7 * 1024 + b"\r\n") == 200
        # As are 200 header lines, and a request line of 100 KiB
        assert await get(b"".join(b"X-H%d: v\r\n" % i for i in range(200))) in (400, 431)
        assert await get(b"", path=b"/api/products?q=" + b"a" * 100 * 1024) in (400, 414)
        # A JSON body over 1 MiB is 413, announced or streamed
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
            big = b'{"a": "' + b"x" * (1024 * 1024 + 1) + b'"}'
            async with session.post(
                api.url + "/api/records", data=io.BytesIO(big), headers={**headers, "Content-Type": "application/json"}
            ) as r:
                assert r.status == 413

            async def chunks():  # type: ignore[no-untyped-def]
                for _ in range(24):
                    yield b"x" * 65536

            async with session.post(
                api.url + "/api/records", data=chunks(), headers={**headers, "Content-Type": "application/json"}
            ) as r:
                assert r.status == 413
            # And the server is still there
            async with session.get(api.url + "/health/live") as r:
                assert r.status == 200
    # And the refusals are logged as one line each, without a traceback or the request's bytes
    assert "Traceback" not in api.output()
    assert "malformed_request_refused" in api.output()
    assert "aaaaaaaa" not in api.output()


# -- media keys ----------------------------------------------------------------------------------------------------

TRAVERSALS = [
    b"/media/../secret.txt",
    b"/media/..%2fsecret.txt",
    b"/media/..%2Fsecret.txt",
    b"/media/%2e%2e/secret.txt",
    b"/media/%2e%2e%2fsecret.txt",
    b"/media/%252e%252e%252fsecret.txt",
    b"/media/..%5csecret.txt",
    b"/media/..\\secret.txt",
    b"/media/....//secret.txt",
    b"/media/originals/../../secret.txt",
    b"/media/./../secret.txt",
    b"/media/%2fetc%2fpasswd",
    b"/media//etc/passwd",
    b"/media/../../../../../../etc/passwd",
    b"/media/secret.txt%00.jpg",
    b"/media/%c0%ae%c0%ae/secret.txt",
]


@pytest.mark.parametrize("path", TRAVERSALS, ids=lambda p: p.decode())
async def test_media_paths_never_reach_a_file_outside_the_media_root(
    aiohttp_client, settings: Settings, tmp_path: Path, path: bytes
) -> None:
    # Given a secret file just outside the media root
    media = tmp_path / "media"
    media.mkdir()
    (tmp_path / "secret.txt").write_text("TOP-SECRET-CONTENT")
    (media / "secret.txt").write_text("NOT-A-KEY-CONTENT")  # inside, but not a key this service writes
    client = await aiohttp_client(create_app(settings.model_copy(update={"media_root": str(media)})))
    # When it is asked for through every spelling of a traversal, sent as raw bytes
    url = str(client.make_url("/"))
    answer = await raw(url, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    # Then the answer is a 4xx, and neither file is in it
    assert 400 <= status_of(answer) < 500, answer[:200]
    assert b"TOP-SECRET" not in answer
    assert b"NOT-A-KEY" not in answer
    assert b"root:" not in answer
