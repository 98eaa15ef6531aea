"""The AsyncAPI 3.0 document of the integration events on ``stockroom.events``, made from ``shared.events``.

One channel per event type (its address is the routing key on the topic exchange), one message per channel whose
payload is the whole body the relay publishes (:func:`shared.events.envelope_schema`), and one ``send`` operation
per channel (the service publishes; any other service may bind a queue to the routing keys it wants).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

import orjson

from shared.events import DESCRIPTIONS, EVENT_TYPES, EXCHANGE, envelope_schema

#: The AMQP bindings' version in AsyncAPI 3.0.
AMQP_BINDING_VERSION: Final = "0.3.0"


def _channel(event_type: str) -> dict[str, Any]:
    return {
        "address": event_type,
        "title": event_type,
        "description": f"Routing key `{event_type}` on the topic exchange `{EXCHANGE}`. {DESCRIPTIONS[event_type]}",
        "messages": {event_type: {"$ref": f"#/components/messages/{event_type}"}},
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {"name": EXCHANGE, "type": "topic", "durable": True, "autoDelete": False},
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    }


def _message(event_type: str) -> dict[str, Any]:
    return {
        "name": event_type,
        "title": event_type,
        "summary": DESCRIPTIONS[event_type],
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{event_type}"},
        "correlationId": {"description": "the write's request id", "location": "$message.payload#/request_id"},
        "bindings": {"amqp": {"messageType": event_type, "bindingVersion": AMQP_BINDING_VERSION}},
    }


def document() -> dict[str, Any]:
    """The whole document, one channel, message, schema and operation per event type (sorted)."""
    types = sorted(EVENT_TYPES)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Stockroom integration events",
            "version": "1.0.0",
            "description": (
                f"Every committed write publishes one event to the durable topic exchange `{EXCHANGE}`, routing key "
                "= event type, persistent, with publisher confirms. Delivery is at least once: a consumer must be "
                "idempotent (`id` identifies an event; `version` orders the events of one resource)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "rabbitmq:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "The deployment's RabbitMQ (RABBITMQ_URL).",
            }
        },
        "channels": {t: _channel(t) for t in types},
        "operations": {
            f"publish.{t}": {
                "action": "send",
                "title": f"Publish {t}",
                "channel": {"$ref": f"#/channels/{t}"},
                "messages": [{"$ref": f"#/channels/{t}/messages/{t}"}],
                # Persistent, with a timestamp, mandatory (the audit queue keeps every key routable).
                "bindings": {
                    "amqp": {
                        "deliveryMode": 2,
                        "mandatory": True,
                        "timestamp": True,
                        "bindingVersion": AMQP_BINDING_VERSION,
                    }
                },
            }
            for t in types
        },
        "components": {
            "messages": {t: _message(t) for t in types},
            "schemas": {t: envelope_schema(t) for t in types},
        },
    }


@cache
def document_bytes() -> bytes:
    """The document as JSON (made once per process)."""
    return orjson.dumps(document())
