"""/api/records, and the older /picus and /data services' routes, each over its own collection of records."""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN
from tests.support.api import locs, outbox, problem, record, rid_headers

DOC = {"name": "widget", "tags": ["a", "b"], "nested": {"n": 1.5, "ok": True, "none": None}}


async def test_create_returns_id_and_writes_record_created(client, pg) -> None:
    # When a record is posted
    r = await client.post("/api/records", json=DOC, headers=rid_headers("req-rec"))
    # Then it answers only its id, with a Location, and one record.created is in the outbox
    assert r.status == 201
    body = await r.json()
    assert list(body) == ["id"]
    assert r.headers["Location"] == f"/api/records/{body['id']}"
    rows = await outbox(pg)
    assert [(e["type"], e["aggregate"], e["aggregate_id"], e["version"], e["request_id"]) for e in rows] == [
        ("record.created", "record", str(body["id"]), 1, "req-rec")
    ]


async def test_get_returns_the_document_unchanged(client) -> None:
    # Given a record
    created = await record(client, DOC)
    # When it is read
    r = await client.get(f"/api/records/{created['id']}")
    # Then the document comes back as stored, with its metadata and ETag
    assert r.status == 200
    body = await r.json()
    assert (body["id"], body["data"], body["version"]) == (created["id"], DOC, 1)
    assert {"created_at", "updated_at"} <= set(body)
    assert r.headers["ETag"] == '"1"'


async def test_non_object_body_is_422(client, pg) -> None:
    # When a JSON array is posted as a record
    r = await client.post("/api/records", json=[1, 2], headers=ADMIN)
    # Then the body is at fault and nothing is written
    body = await problem(r, 422)
    assert locs(body) == [["body"]]
    assert await outbox(pg) == []


async def test_unknown_or_malformed_ids_are_404(client) -> None:
    await problem(await client.get("/api/records/999999"), 404)
    await problem(await client.get("/api/records/abc"), 404)
    await problem(await client.get("/api/records/-1"), 404)
    await problem(await client.get("/api/records/99999999999999999999999"), 404)


async def test_put_replaces_the_document(client, pg) -> None:
    # Given a record
    created = await record(client, DOC)
    # When it is replaced
    r = await client.put(f"/api/records/{created['id']}", json={"other": 1}, headers=rid_headers("req-put"))
    # Then it answers the new version, reads back replaced, and one record.updated is written
    assert r.status == 200
    assert await r.json() == {"id": created["id"], "version": 2}
    body = await (await client.get(f"/api/records/{created['id']}")).json()
    assert body["data"] == {"other": 1}
    last = (await outbox(pg))[-1]
    assert (last["type"], last["version"], last["request_id"]) == ("record.updated", 2, "req-put")


async def test_put_with_stale_if_match_is_412(client) -> None:
    created = await record(client, DOC)
    r = await client.put(f"/api/records/{created['id']}", json={}, headers={**ADMIN, "If-Match": '"4"'})
    await problem(r, 412)


async def test_put_unknown_is_404(client) -> None:
    await problem(await client.put("/api/records/424242", json={}, headers=ADMIN), 404)


async def test_delete_then_404(client, pg) -> None:
    # Given a record
    created = await record(client, DOC)
    # When it is deleted
    r = await client.delete(f"/api/records/{created['id']}", headers=rid_headers("req-del"))
    # Then it is gone for readers and writers, and one record.deleted is written
    assert r.status == 204
    await problem(await client.get(f"/api/records/{created['id']}"), 404)
    await problem(await client.put(f"/api/records/{created['id']}", json={}, headers=ADMIN), 404)
    await problem(await client.delete(f"/api/records/{created['id']}", headers=ADMIN), 404)
    last = (await outbox(pg))[-1]
    assert (last["type"], last["aggregate_id"], last["version"], last["request_id"]) == (
        "record.deleted",
        str(created["id"]),
        2,
        "req-del",
    )


async def test_list_walks_every_live_record_once(client) -> None:
    # Given five records, one of them deleted
    ids = [(await record(client, {"n": i}))["id"] for i in range(5)]
    await client.delete(f"/api/records/{ids[2]}", headers=ADMIN)
    # When they are listed two at a time
    seen, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get("/api/records", params=params)).json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Then every live record comes once, oldest first
    assert seen == [ids[0], ids[1], ids[3], ids[4]]


async def test_list_with_bad_cursor_or_limit_is_400(client) -> None:
    body = await problem(await client.get("/api/records", params={"cursor": "garbage"}), 400)
    assert locs(body) == [["query", "cursor"]]
    body = await problem(await client.get("/api/records", params={"limit": "0"}), 400)
    assert locs(body) == [["query", "limit"]]


async def test_cursor_of_another_listing_is_400(client) -> None:
    # Given a cursor from the category listing
    for name in ("A", "B"):
        await client.post("/api/categories", json={"name": name}, headers=ADMIN)
    page = await (await client.get("/api/categories", params={"limit": "1"})).json()
    # When it is used on records
    r = await client.get("/api/records", params={"cursor": page["next_cursor"]})
    # Then it is refused
    await problem(r, 400)


# -- the older services' clients, as they were: /picus and /data, each its own collection ------------


async def test_picus_put_answers_201_id_and_picus_get_returns_the_object_with_its_id(client, pg) -> None:
    # When the older /picus client puts a document
    r = await client.post("/picus/put", json=DOC, headers=ADMIN)
    # Then it answers 201 {"id"}, and the legacy get returns the stored object with its "id"
    assert r.status == 201
    body = await r.json()
    assert list(body) == ["id"]
    rid = body["id"]
    got = await client.get(f"/picus/get/{rid}")
    assert got.status == 200
    assert await got.json() == {**DOC, "id": rid}
    assert [e["type"] for e in await outbox(pg)] == ["record.created"]


async def test_picus_list_is_an_array_of_the_stored_objects_each_with_its_id(client) -> None:
    a = (await (await client.post("/picus/put", json={"n": 1}, headers=ADMIN)).json())["id"]
    b = (await (await client.post("/picus/put", json={"n": 2}, headers=ADMIN)).json())["id"]
    r = await client.get("/picus/list")
    assert r.status == 200
    assert await r.json() == [{"n": 1, "id": a}, {"n": 2, "id": b}]


async def test_a_picus_document_that_carries_its_own_id_is_422_and_stores_nothing(client, pg) -> None:
    body = await problem(await client.post("/picus/put", json={"id": 5, "n": 1}, headers=ADMIN), 422)
    assert locs(body) == [["body", "id"]]
    assert await outbox(pg) == []


async def test_picus_delete_removes_the_record(client) -> None:
    rid = (await (await client.post("/picus/put", json=DOC, headers=ADMIN)).json())["id"]
    r = await client.delete(f"/picus/{rid}", headers=ADMIN)
    assert r.status == 204
    await problem(await client.get(f"/picus/get/{rid}"), 404)
    assert await (await client.get("/picus/list")).json() == []


async def test_picus_get_unknown_is_404(client) -> None:
    await problem(await client.get("/picus/get/31337"), 404)


ITEM = {"id": 1, "name": "sensor", "value": 21.5}


async def test_data_post_answers_the_older_services_message_and_lists_the_items_as_sent(client) -> None:
    # When the older /data client posts two items (an int value is a number too)
    first = await client.post("/data", json=ITEM, headers=ADMIN)
    second = await client.post("/data", json={"id": 2, "name": "b", "value": 3}, headers=ADMIN)
    # Then each answers 201 with the older service's message and the item
    assert (first.status, await first.json()) == (201, {"message": "Item criado com sucesso", "item": ITEM})
    assert second.status == 201
    # And GET /data lists the items as sent
    r = await client.get("/data")
    assert (r.status, await r.json()) == (200, [ITEM, {"id": 2, "name": "b", "value": 3}])


async def test_a_data_item_whose_id_exists_is_409_and_changes_nothing(client, pg) -> None:
    assert (await client.post("/data", json=ITEM, headers=ADMIN)).status == 201
    await problem(await client.post("/data", json={**ITEM, "name": "other"}, headers=ADMIN), 409)
    assert await (await client.get("/data")).json() == [ITEM]
    assert len(await outbox(pg)) == 1


@pytest.mark.parametrize(
    ("item", "faults"),
    [
        ({**ITEM, "extra": 1}, [["body", "extra"]]),
        ({"name": "x", "value": 1.0}, [["body", "id"]]),
        ({"id": "1", "name": "x", "value": 1.0}, [["body", "id"]]),
        ({"id": 1.5, "name": "x", "value": 1.0}, [["body", "id"]]),
        ({"id": True, "name": "x", "value": 1.0}, [["body", "id"]]),
        ({"id": 1, "name": 7, "value": 1.0}, [["body", "name"]]),
        ({"id": 1, "name": "x", "value": "1.5"}, [["body", "value"]]),
        ({"id": 1, "name": "x"}, [["body", "value"]]),
        ({}, [["body", "id"], ["body", "name"], ["body", "value"]]),
    ],
)
async def test_a_data_item_other_than_exactly_id_name_value_is_422(client, pg, item, faults) -> None:
    body = await problem(await client.post("/data", json=item, headers=ADMIN), 422)
    assert sorted(locs(body)) == faults
    assert await outbox(pg) == []


async def test_picus_data_and_api_records_collections(client) -> None:
    # Given a /data item, a /picus document and an /api/records record
    await client.post("/data", json=ITEM, headers=ADMIN)
    pid = (await (await client.post("/picus/put", json={"n": 1}, headers=ADMIN)).json())["id"]
    rid = (await record(client, {"r": 1}))["id"]
    # Then /data and /picus list only their own, and /picus/get serves only its own
    assert await (await client.get("/data")).json() == [ITEM]
    assert await (await client.get("/picus/list")).json() == [{"n": 1, "id": pid}]
    await problem(await client.get(f"/picus/get/{rid}"), 404)
    # And /api/records lists records of every collection
    listed = await (await client.get("/api/records")).json()
    assert [x["data"] for x in listed["items"]] == [ITEM, {"n": 1}, {"r": 1}]


async def test_replacing_a_data_item_with_another_items_id_is_409(client) -> None:
    await client.post("/data", json=ITEM, headers=ADMIN)
    await client.post("/data", json={**ITEM, "id": 2}, headers=ADMIN)
    second = (await (await client.get("/api/records")).json())["items"][1]["id"]
    await problem(await client.put(f"/api/records/{second}", json=ITEM, headers=ADMIN), 409)


async def test_legacy_writes_need_a_key(client) -> None:
    await problem(await client.post("/picus/put", json={}), 401)
    await problem(await client.post("/data", json={}), 401)
    await problem(await client.delete("/picus/1"), 401)


async def test_replacing_a_data_item_or_picus_document_keeps_its_services_rules(client) -> None:
    # Given a /data item and a /picus document
    await client.post("/data", json=ITEM, headers=ADMIN)
    await client.post("/picus/put", json={"n": 1}, headers=ADMIN)
    data_id, picus_id = [x["id"] for x in (await (await client.get("/api/records")).json())["items"]]
    # When either is replaced through /api/records by what its service refuses
    body = await problem(await client.put(f"/api/records/{data_id}", json={"other": 1}, headers=ADMIN), 422)
    assert sorted(locs(body)) == [["body", "id"], ["body", "name"], ["body", "other"], ["body", "value"]]
    await problem(await client.put(f"/api/records/{picus_id}", json={"id": 9}, headers=ADMIN), 422)
    # Then both services still list what they had
    assert await (await client.get("/data")).json() == [ITEM]
    assert await (await client.get("/picus/list")).json() == [{"n": 1, "id": picus_id}]
