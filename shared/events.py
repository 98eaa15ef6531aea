"""Event types, and the routing table from event type to the dramatiq queues that consume it."""

from __future__ import annotations

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

#: event type -> [(queue, actor name)]; one dramatiq message per entry.
ROUTES: Final[dict[str, list[tuple[str, str]]]] = {
    **{t: [(CACHE_QUEUE, "project_category")] for t in CATEGORY_EVENTS},
    **{t: [(CACHE_QUEUE, "project_product")] for t in PRODUCT_EVENTS},
    "product.image_uploaded": [(THUMBNAILS_QUEUE, "make_thumbnails"), (CACHE_QUEUE, "project_product")],
    "product.image_removed": [(CACHE_QUEUE, "project_product")],
    "product.thumbnails_ready": [(CACHE_QUEUE, "project_product")],
    "product.thumbnails_failed": [(CACHE_QUEUE, "project_product")],
    **{t: [(CACHE_QUEUE, "project_record")] for t in RECORD_EVENTS},
    "user.upserted": [(CACHE_QUEUE, "project_user")],
}


def message_id(event_id: str, queue: str) -> str:
    """The dramatiq message id for ``event_id`` on ``queue``: stable, so a re-published event is recognisable."""
    import uuid

    return str(uuid.uuid5(uuid.UUID(event_id), queue))


def actor_args(event: dict[str, object]) -> dict[str, object]:
    """The one argument every actor takes: the event's identity, never its content (workers read PostgreSQL)."""
    return {k: event[k] for k in ("id", "type", "aggregate", "aggregate_id", "version", "request_id")}
