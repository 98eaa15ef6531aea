"""The ``cache-warming`` actors: they refresh the aggregates events name in the Redis read model.

Imported only after :func:`worker.broker.setup_broker` (dramatiq binds actors to the broker at import).
PostgreSQL and Redis clients are made lazily on the AsyncIO middleware's loop, once per process.

Batching through dramatiq: the relay sends the events of one of its batches in one message (``project_events``,
a list), and each worker thread hands its message's events to the one loop and waits (dramatiq acks a message only
once its actor returned: at least once, as before). The events that arrive while a batch is being projected wait
for the next one, so one projection batch joins the messages of every thread, and pays two PostgreSQL reads and one
Redis round trip in all (:func:`refresh.project_many`); events naming the same aggregate are projected once, from
its current state, which is the newest. An event whose projection fails does not hold back the others: they are
projected, then the message fails and dramatiq retries it (projecting them again changes nothing).
"""

from __future__ import annotations

import asyncio
from typing import Any

import dramatiq
from prometheus_client import Counter

from shared.events import CACHE_ACTOR, CACHE_QUEUE
from shared.logs import get_logger
from shared.readmodel.client import FastRedis
from shared.readmodel.debts import Guard
from shared.settings import Settings
from shared.store.pool import create_pool
from worker.broker import MAX_BACKOFF_MS, MAX_RETRIES
from worker.readmodel.refresh import Batcher, Resources

log = get_logger("worker.cache")

#: Counted per event instead of a log line (multiprocess: ``python -m worker`` names the folder before the fork,
#: so dramatiq's exposition server sums it with its own series). ``changed``: false for a stale or duplicate event.
PROJECTED = Counter(
    "stockroom_cache_events_projected_total", "Events projected by the cache worker.", ["type", "changed"]
)

_settings: Settings | None = None
#: ``LOG_EVENTS``: one ``projected`` line per event at INFO (else DEBUG).
_log_events = False
_resources: Resources | None = None
#: Repays the read-model debts the API left (its connection suspect, or every few seconds): none pile up.
_guard: Guard | None = None
_lock = asyncio.Lock()
#: Every actor's events go through it: projected together, each aggregate once per batch.
_batcher = Batcher()


def configure(settings: Settings) -> None:
    """Give the actors their settings (called by the entry module before the worker starts)."""
    global _settings, _log_events
    _settings = settings
    _log_events = settings.log_events


async def resources() -> Resources:
    global _resources, _guard
    async with _lock:
        if _resources is None:
            settings = _settings or Settings()
            pool = await create_pool(settings, max_size=16)
            # The API's auto-pipelined connection: most of redis-py's cost is per-command Python (DESIGN.md).
            # A slow or lost Redis fails the message after 5 s, and dramatiq retries it.
            client = FastRedis(settings.redis_url, timeout=5.0, retry_after=0.5)
            _resources = Resources(pool, client.run_script, settings.media_url)
            _guard = Guard(client, pool, settings.pg_connect_timeout, settings.media_url)
    return _resources


class ProjectionFailed(Exception):
    """Some events of a message could not be projected: dramatiq retries the message (the others again, harmlessly)."""


async def _project(actor: str, events: list[dict[str, Any]]) -> None:
    """Project ``events`` (one message's); a failure of any fails the message, once every other one is projected."""
    try:
        res = await resources()
        if _guard is not None:
            await _guard.sweep()
    except Exception as exc:
        outcomes: list[bool | BaseException] = [exc] * len(events)
    else:
        outcomes = await asyncio.gather(*(_batcher.project(res, e) for e in events), return_exceptions=True)
    emit = log.info if _log_events else log.debug
    failed: list[BaseException] = []
    for event, outcome in zip(events, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            failed.append(outcome)
            # Under the event's request id (dramatiq's own line about the retry, from its worker thread, has none).
            log.warning(
                "projection failed; retried by dramatiq",
                actor=actor,
                type=event.get("type"),
                request_id=event.get("request_id"),
                event_id=event.get("id"),
                error=repr(outcome),
            )
            continue
        PROJECTED.labels(event.get("type"), "true" if outcome else "false").inc()
        emit(
            "projected",
            actor=actor,
            type=event.get("type"),
            aggregate_id=event.get("aggregate_id"),
            version=event.get("version"),
            changed=outcome,
            request_id=event.get("request_id"),
            event_id=event.get("id"),
        )
    if len(failed) == len(events) == 1:
        raise failed[0]
    if failed:
        raise ProjectionFailed(f"{len(failed)} of {len(events)} events failed; the first: {failed[0]!r}")


_OPTIONS: dict[str, Any] = {"queue_name": CACHE_QUEUE, "max_retries": MAX_RETRIES, "max_backoff": MAX_BACKOFF_MS}


@dramatiq.actor(actor_name=CACHE_ACTOR, **_OPTIONS)
async def project_events(events: list[dict[str, Any]]) -> None:
    """The relay's messages: the events of one relay batch, in outbox order."""
    await _project(CACHE_ACTOR, events)


# One event per message: what relays before batching sent (messages still queued at an upgrade are projected).
@dramatiq.actor(actor_name="project_category", **_OPTIONS)
async def project_category(event: dict[str, Any]) -> None:
    await _project("project_category", [event])


@dramatiq.actor(actor_name="project_product", **_OPTIONS)
async def project_product(event: dict[str, Any]) -> None:
    await _project("project_product", [event])


@dramatiq.actor(actor_name="project_record", **_OPTIONS)
async def project_record(event: dict[str, Any]) -> None:
    await _project("project_record", [event])


@dramatiq.actor(actor_name="project_user", **_OPTIONS)
async def project_user(event: dict[str, Any]) -> None:
    await _project("project_user", [event])
