"""Event types, and the routing table from event type to the dramatiq queues that consume it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Final

#: The durable topic exchange every integration event goes to (routing key = event type).
EXCHANGE: Final = "stockroom.events"

#: dramatiq queues.
THUMBNAILS_QUEUE: Final = "thumbnails"
CACHE_QUEUE: Final = "cache-warming"

CATEGORY_EVENTS: Final = ("category.created", "category.updated", "category.deleted", "category.restored")
PRODUCT_EVENTS: Final = ("product.created", "product.updated", "product.deleted", "product.restored")
IMAGE_EVENTS: Final = (
    "product.image_uploaded",
    "product.image_removed",
    "product.thumbnails_ready",
    "product.thumbnails_failed",
)
RECORD_EVENTS: Final = ("record.created", "record.updated", "record.deleted")
USER_EVENTS: Final = ("user.upserted",)

#: Every event type the service emits.
EVENT_TYPES: Final = frozenset(CATEGORY_EVENTS + PRODUCT_EVENTS + IMAGE_EVENTS + RECORD_EVENTS + USER_EVENTS)

#: The cache worker's actor: it takes a list of events, those of one relay batch (one message per batch, not per
#: event: a message costs the relay, RabbitMQ and the worker far more than the event in it).
CACHE_ACTOR: Final = "project_events"

#: event type -> [(queue, actor name)] of the queues that get one dramatiq message per event.
ROUTES: Final[dict[str, list[tuple[str, str]]]] = {"product.image_uploaded": [(THUMBNAILS_QUEUE, "make_thumbnails")]}
#: event type -> the queue that gets it in one message per relay batch (actor :data:`CACHE_ACTOR`): every type.
BATCHED: Final[dict[str, str]] = dict.fromkeys(
    CATEGORY_EVENTS + PRODUCT_EVENTS + IMAGE_EVENTS + RECORD_EVENTS + USER_EVENTS, CACHE_QUEUE
)


def message_id(event_id: str, queue: str) -> str:
    """The dramatiq message id for ``event_id`` on ``queue``: stable, so a re-published event is recognisable."""
    return str(uuid.uuid5(uuid.UUID(event_id), queue))


def batch_message_id(event_ids: Sequence[str], queue: str) -> str:
    """The id of the message carrying ``event_ids`` to ``queue``: :func:`message_id` for one event, else derived
    from all of them (the same batch published again has the same id)."""
    if len(event_ids) == 1:
        return message_id(event_ids[0], queue)
    return str(uuid.uuid5(uuid.UUID(event_ids[0]), queue + ":" + ",".join(event_ids[1:])))


def actor_args(event: dict[str, object]) -> dict[str, object]:
    """The one argument every actor takes: the event's identity, never its content (workers read PostgreSQL)."""
    return {k: event[k] for k in ("id", "type", "aggregate", "aggregate_id", "version", "request_id")}


# -- the event contract (the AsyncAPI document, ``shared.asyncapi``, is generated from these) ----------------------

#: JSON Schema of each event type's ``data``: what the outbox row's payload holds (``shared/store/*``, one
#: ``jsonb_build_object`` per aggregate). Consumers needing more read the resource through the API.
_CATEGORY_DATA: Final = {
    "type": "object",
    "properties": {
        "slug": {"type": "string"},
        "name": {"type": "string"},
        "description": {"type": ["string", "null"]},
        "parent_id": {"type": ["integer", "null"], "description": "id of the parent category"},
    },
    "required": ["slug", "name", "description", "parent_id"],
    "additionalProperties": False,
}
_PRODUCT_DATA: Final = {
    "type": "object",
    "properties": {
        "slug": {"type": "string"},
        "name": {"type": "string"},
        "price": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "category_id": {"type": "integer"},
        "stock": {"type": "integer", "minimum": 0},
        "is_active": {"type": "boolean"},
    },
    "required": ["slug", "name", "price", "currency", "category_id", "stock", "is_active"],
    "additionalProperties": False,
}


def _image_data(original: Mapping[str, object], *, regenerate: bool = False) -> dict[str, object]:
    properties: dict[str, object] = {"original": original}
    if regenerate:
        properties["regenerate"] = {"const": True, "description": "queued by `thumbnails regenerate`"}
    return {"type": "object", "properties": properties, "required": ["original"], "additionalProperties": False}


_ORIGINAL_KEY: Final[dict[str, object]] = {"type": "string", "description": "storage key of the original image"}

#: event type -> JSON Schema of its ``data``.
DATA_SCHEMAS: Final[dict[str, dict[str, object]]] = {
    **dict.fromkeys(CATEGORY_EVENTS, _CATEGORY_DATA),
    **dict.fromkeys(PRODUCT_EVENTS, _PRODUCT_DATA),
    "product.image_uploaded": _image_data(_ORIGINAL_KEY, regenerate=True),
    "product.image_removed": _image_data({"type": "null"}),
    "product.thumbnails_ready": _image_data(_ORIGINAL_KEY),
    "product.thumbnails_failed": _image_data(_ORIGINAL_KEY),
    # A record's document may be 1 MiB: its events carry none of it.
    **{t: {"type": "object", "properties": {}, "additionalProperties": False} for t in RECORD_EVENTS},
    "user.upserted": {
        "type": "object",
        "properties": {"date_of_birth": {"type": "string", "format": "date"}},
        "required": ["date_of_birth"],
        "additionalProperties": False,
    },
}

#: What each event type means, for people reading the document.
DESCRIPTIONS: Final[dict[str, str]] = {
    **{f"category.{verb}": f"A category was {verb}." for verb in ("created", "updated", "deleted", "restored")},
    **{f"product.{verb}": f"A product was {verb}." for verb in ("created", "updated", "deleted", "restored")},
    "product.image_uploaded": "A product has a new original image; its thumbnails are being made.",
    "product.image_removed": "A product's image was removed.",
    "product.thumbnails_ready": "The thumbnails of a product's current image are ready.",
    "product.thumbnails_failed": "A product's image could not be made into thumbnails (the reason is on the product).",
    **{f"record.{verb}": f"A record was {verb}." for verb in ("created", "updated", "deleted")},
    "user.upserted": "A user's date of birth was set (created or replaced).",
}


def aggregate_of(event_type: str) -> str:
    """The aggregate an event type belongs to (``product.image_uploaded`` -> ``product``)."""
    return event_type.split(".", 1)[0]


def envelope_schema(event_type: str) -> dict[str, object]:
    """JSON Schema of the whole message body the relay publishes for ``event_type`` (``worker.relay``)."""
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid", "description": "the event id; duplicates share it"},
            "type": {"const": event_type},
            "aggregate": {"const": aggregate_of(event_type)},
            "aggregate_id": {"type": "string", "description": "the resource's id (a user's: the username)"},
            "version": {"type": "integer", "minimum": 1, "description": "the resource's version after the write"},
            "occurred_at": {"type": "string", "format": "date-time"},
            "request_id": {"type": ["string", "null"], "description": "the X-Request-ID of the write"},
            "data": DATA_SCHEMAS[event_type],
        },
        "required": ["id", "type", "aggregate", "aggregate_id", "version", "occurred_at", "request_id", "data"],
        "additionalProperties": False,
    }
