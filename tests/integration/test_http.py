"""HTTP behaviour common to every endpoint: body limits, content types, bad JSON, trailing slashes, problem+json."""

from __future__ import annotations

import asyncio
import io

import orjson
import pytest

from tests.conftest import ADMIN
from tests.support.api import category, locs, outbox, problem, record

MIB = 1024 * 1024
JSON_HEADERS = {**ADMIN, "Content-Type": "application/json"}


async def test_json_body_over_1_mib_is_413(client, pg) -> None:
    # Given a record body just over 1 MiB
    body = orjson.dumps({"blob": "x" * MIB})
    # When it is posted
    r = await client.post("/api/records", data=io.BytesIO(body), headers=JSON_HEADERS)
    # Then it is 413 and nothing is written
    await problem(r, 413)
    assert await outbox(pg) == []


async def test_json_body_of_just_under_1_mib_is_accepted(client) -> None:
    body = orjson.dumps({"blob": "x" * (MIB - 20)})
    assert len(body) <= MIB
    r = await client.post("/api/records", data=body, headers=JSON_HEADERS)
    assert r.status == 201


async def test_non_json_content_type_is_415(client, pg) -> None:
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "image/png"):
        r = await client.post("/api/categories", data=b'{"name": "Tools"}', headers={**ADMIN, "Content-Type": ctype})
        await problem(r, 415)
    assert await outbox(pg) == []


async def test_json_with_charset_and_merge_patch_types_are_accepted(client) -> None:
    r = await client.post(
        "/api/categories",
        data=b'{"name": "Tools"}',
        headers={**ADMIN, "Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status == 201
    r = await client.patch(
        "/api/categories/tools",
        data=b'{"name": "X"}',
        headers={**ADMIN, "Content-Type": "application/merge-patch+json"},
    )
    assert r.status == 200


async def test_invalid_json_is_400(client) -> None:
    for body in (b"{", b"", b"{'name': 'x'}", b"\xff\xfe", b'{"name": "Tools"} trailing'):
        r = await client.post("/api/categories", data=body, headers=JSON_HEADERS)
        await problem(r, 400)


async def test_invalid_json_is_400_on_every_write(client) -> None:
    await category(client, "Tools")
    for method, path in (
        ("PUT", "/api/categories/tools"),
        ("PATCH", "/api/categories/tools"),
        ("POST", "/api/products"),
        ("POST", "/api/records"),
        ("PUT", "/api/records/1"),
        ("POST", "/picus/put"),
        ("POST", "/data"),
        ("PUT", "/hello/alice"),
    ):
        r = await client.request(method, path, data=b"{nope", headers=JSON_HEADERS)
        await problem(r, 400)


async def test_json_that_is_not_an_object_is_422(client) -> None:
    r = await client.post("/api/categories", data=b"[1, 2]", headers=JSON_HEADERS)
    await problem(r, 422)


async def test_paths_answer_with_and_without_trailing_slash_without_redirect(client) -> None:
    # Given a category and a record
    await category(client, "Tools")
    rec = await record(client, {"a": 1})
    doc = await (await client.post("/picus/put", json={"a": 1}, headers=ADMIN)).json()
    # When every read path is asked with a trailing slash
    for path in (
        "/api/categories/",
        "/api/categories/tools/",
        "/api/products/",
        f"/api/records/{rec['id']}/",
        "/api/records/",
        "/picus/list/",
        f"/picus/get/{doc['id']}/",
        "/data/",
        "/health/live/",
    ):
        r = await client.get(path, allow_redirects=False)
        # Then each answers 200 directly
        assert r.status == 200, path


async def test_writes_answer_with_a_trailing_slash(client) -> None:
    created = await client.post("/api/categories/", json={"name": "Tools"}, headers=ADMIN)
    patched = await client.patch("/api/categories/tools/", json={"name": "X"}, headers=ADMIN)
    deleted = await client.delete("/api/categories/tools/", headers=ADMIN)
    restored = await client.post("/api/categories/tools/restore/", headers=ADMIN)
    assert (created.status, patched.status, deleted.status, restored.status) == (201, 200, 204, 200)


async def test_unknown_path_is_404_problem_json(client) -> None:
    await problem(await client.get("/api/nothing-here"), 404)
    # Encoded control characters too (a regular expression's "." stops at a newline)
    await problem(await client.get("/media/%C2%8F%0A%0B%F0%BB%92%99"), 404)


async def test_a_request_target_without_a_path_is_404_problem_json(client) -> None:
    # Given a raw connection (HTTP clients send no asterisk-form target)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    # When the target is "*" (OPTIONS *: the server as a whole)
    writer.write(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    # Then it is an ordinary problem+json 404 with a request id
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 ")
    assert b"Content-Type: application/problem+json" in head
    assert b"X-Request-ID: " in head
    assert orjson.loads(body)["status"] == 404


async def test_wrong_method_is_405_problem_json_with_allow(client) -> None:
    r = await client.request("PATCH", "/api/categories", headers=ADMIN)
    await problem(r, 405)
    assert r.headers["Allow"] == "GET,HEAD,POST"


async def test_wrong_method_on_a_templated_path_lists_that_paths_methods(client) -> None:
    r = await client.post("/api/products/spade/", headers=ADMIN)
    await problem(r, 405)
    assert r.headers["Allow"] == "DELETE,GET,HEAD,PATCH,PUT"
    # A path no route has for any method stays 404 whatever the method
    await problem(await client.request("PUT", "/api/products/spade/no-such-part", headers=ADMIN), 404)


async def test_unmatched_requests_carry_a_request_id_too(client) -> None:
    missing = await client.get("/api/nothing-here", headers={"X-Request-ID": "abc-404"})
    wrong = await client.request("PATCH", "/api/categories", headers={"X-Request-ID": "abc-405"})
    assert (missing.headers["X-Request-ID"], wrong.headers["X-Request-ID"]) == ("abc-404", "abc-405")


async def test_request_id_is_echoed_or_made(client) -> None:
    mine = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    bad = await client.get("/health/live", headers={"X-Request-ID": "no spaces allowed"})
    assert mine.headers["X-Request-ID"] == "abc-123"
    assert len(bad.headers["X-Request-ID"]) == 32


async def test_problem_documents_have_type_title_status_detail(client) -> None:
    body = await problem(await client.get("/api/categories/ghost"), 404)
    assert set(body) >= {"type", "title", "status", "detail"}
    assert body["title"] == "Not Found"


async def test_health_live_is_200(client) -> None:
    r = await client.get("/health/live")
    assert r.status == 200
    assert await r.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/health/ready", "/health"])
async def test_health_ready_names_every_dependency(client, path: str) -> None:
    r = await client.get(path)
    assert r.status == 200
    assert await r.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok", "rabbitmq": "ok"}}


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/api/categories", {"name": "a\u0000b"}, ["body", "name"]),
        ("/api/records", {"a": ["ok", {"b": "x\u0000"}]}, ["body", "a", 1, "b"]),
        ("/api/records", {"k\u0000": 1}, ["body", "k\u0000"]),
        ("/data", {"a": "\u0000"}, ["body", "a"]),
    ],
)
async def test_nul_character_in_a_json_string_is_422_not_500(client, pg, path: str, body: object, loc: list) -> None:
    # When a body holds a string with \u0000 (valid JSON, but PostgreSQL text and jsonb cannot store it)
    r = await client.post(path, json=body, headers=ADMIN)
    # Then it is a validation fault naming where it is, and nothing is written
    problem_body = await problem(r, 422)
    assert locs(problem_body) == [loc]
    assert await outbox(pg) == []


async def test_escaped_backslash_u0000_text_is_stored(client) -> None:
    # A literal backslash followed by u0000 is an ordinary string, not NUL.
    created = await record(client, {"a": "\\u0000"})
    body = await (await client.get(f"/api/records/{created['id']}")).json()
    assert body["data"] == {"a": "\\u0000"}


async def test_nul_character_in_a_path_is_404(client) -> None:
    for path in ("/api/categories/a%00b", "/api/products/%00", "/hello/a%00", "/api/records/1%00", "/picus/get/%00"):
        await problem(await client.get(path), 404)


async def test_nul_character_in_a_query_parameter_is_400(client) -> None:
    for param in ("q", "category", "sort", "cursor"):
        body = await problem(await client.get("/api/products", params={param: "a\x00"}), 400)
        assert locs(body) == [["query", param]]


async def test_weak_if_none_match_gives_304(client) -> None:
    # Given a record and its (strong) ETag, weakened by a proxy
    created = await record(client, {"a": 1})
    path = f"/api/records/{created['id']}"
    etag = (await client.get(path)).headers["ETag"]
    # When it is read with the weak form in If-None-Match (among others)
    r = await client.get(path, headers={"If-None-Match": f'"nope", W/{etag}'})
    # Then it is 304: If-None-Match compares weakly
    assert r.status == 304
