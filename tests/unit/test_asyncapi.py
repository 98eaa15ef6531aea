"""The AsyncAPI 3.0 document of ``stockroom.events``, checked against the AsyncAPI 3.0.0 JSON Schema."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson

from shared import asyncapi
from shared.events import EVENT_TYPES, EXCHANGE
from worker import relay

SPEC_SCHEMA = Path(__file__).resolve().parents[1] / "support" / "asyncapi" / "asyncapi-3.0.0.schema.json"


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_the_document_is_valid_asyncapi_3_0() -> None:
    schema = orjson.loads(SPEC_SCHEMA.read_bytes())
    jsonschema.Draft7Validator(schema).validate(orjson.loads(asyncapi.document_bytes()))


def test_every_event_type_has_a_channel_on_the_exchange_a_message_and_a_send_operation() -> None:
    doc = asyncapi.document()
    assert set(doc["channels"]) == set(EVENT_TYPES)
    for event_type, channel in doc["channels"].items():
        assert channel["address"] == event_type
        assert channel["bindings"]["amqp"]["exchange"] == {
            "name": EXCHANGE,
            "type": "topic",
            "durable": True,
            "autoDelete": False,
        }
        message = resolve(doc, channel["messages"][event_type]["$ref"])
        assert resolve(doc, message["payload"]["$ref"])["properties"]["type"] == {"const": event_type}
        operation = doc["operations"][f"publish.{event_type}"]
        assert operation["action"] == "send"
        assert resolve(doc, operation["channel"]["$ref"]) is channel
        assert resolve(doc, operation["messages"][0]["$ref"]) == channel["messages"][event_type]


def test_every_payload_schema_is_json_schema_and_names_the_fields_the_relay_publishes() -> None:
    doc = asyncapi.document()
    event = relay.OutboxEvent(1, "0b9c6f2e-8a51-4c6e-9d0b-3f7f1f3e2a10", "record.created", "record", "7", 1, {},
                              "req-1", datetime(2026, 1, 2, tzinfo=UTC))  # fmt: skip
    body = orjson.loads(relay.build_messages(event)[0].body)
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft7Validator.check_schema(schema)
        assert set(schema["required"]) == set(body)
    jsonschema.validate(body, doc["components"]["schemas"]["record.created"])


def test_a_body_of_another_shape_is_refused_by_its_schema() -> None:
    schemas = asyncapi.document()["components"]["schemas"]
    good = {
        "id": "0b9c6f2e-8a51-4c6e-9d0b-3f7f1f3e2a10",
        "type": "user.upserted",
        "aggregate": "user",
        "aggregate_id": "pepe",
        "version": 1,
        "occurred_at": "2026-01-02T00:00:00+00:00",
        "request_id": None,
        "data": {"date_of_birth": "2000-01-02"},
    }
    jsonschema.validate(good, schemas["user.upserted"])
    for bad in ({**good, "type": "user.created"}, {**good, "data": {}}, {**good, "extra": 1}):
        assert not jsonschema.Draft7Validator(schemas["user.upserted"]).is_valid(bad)
