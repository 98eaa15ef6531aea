"""The ``thumbnails`` queue: ``make_thumbnails`` turns a product's original into its thumbnails.

A plain synchronous actor: Pillow must never run on an event loop. PostgreSQL (asyncpg) and storage (aiobotocore
for S3) are asyncio libraries, so every worker thread keeps a *private* event loop (an ``asyncio.Runner``) with its
own asyncpg connection and storage client, reused from job to job. The loop runs only while the job waits on
them; the CPU work happens between those calls, on the thread itself.

One job, for event ``E`` (a ``product.image_uploaded`` of product ``P``):

1. The job's original is ``E``'s payload ``original`` (read from the outbox by the event id; should the row have
   been purged by the relay's retention, whatever original ``P`` has now).
2. Superseded rule: the job does nothing unless ``P`` is live, ``pending`` and its ``image_original`` is the job's
   original. A replaced, removed or already finished image, or a deleted product, ends the job quietly.
3. Load the original, make the thumbnails (:mod:`worker.thumbnails.imaging`), store them under content-addressed keys
   (storing them again is a no-op, so a redelivered job is harmless).
4. One statement: ``ready`` + thumbnails + ``product.thumbnails_ready``, under the same condition as in 2. Of two
   deliveries racing, one finishes the product; the other changes nothing.

Failures: a corrupt image or a pixel bomb (:class:`~worker.thumbnails.imaging.CorruptImage`) is permanent: the product
becomes ``failed`` with the reason and ``product.thumbnails_failed`` is written, and the job ends there: a
handled outcome, acknowledged, neither retried nor dead-lettered (``thumbnails.XQ`` holds only work that needs
an operator). Should recording the failure itself fail (PostgreSQL away), the job is retried. Anything else
(PostgreSQL or storage unavailable, a time limit) is retried with backoff; when the retries run out,
``thumbnails_gave_up`` records ``failed`` the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import asyncpg
import dramatiq
import structlog

from shared.events import THUMBNAILS_QUEUE
from shared.logs import get_logger
from shared.settings import Settings
from shared.storage import NotStored, Storage, open_storage
from shared.store import images as repo
from shared.store import media
from shared.store.pool import UNAVAILABLE, init_connection
from worker.thumbnails import imaging
from worker.thumbnails.imaging import CorruptImage

T = TypeVar("T")
#: Errors after which a thread's PostgreSQL connection is not trusted again.
_PG_ERRORS: Final[tuple[type[BaseException], ...]] = (*UNAVAILABLE, asyncpg.PostgresError)
log = get_logger("thumbnails")

#: Retries for transient faults: 1 s doubling to at most 5 min, about 15 min in all (RabbitMQ's consumer_timeout,
#: 30 min, would redeliver a message held longer).
MAX_RETRIES: Final = 8
MIN_BACKOFF_MS: Final = 1_000
MAX_BACKOFF_MS: Final = 5 * 60 * 1000
#: One job never takes longer than this (then it is retried, and eventually given up).
TIME_LIMIT_MS: Final = 10 * 60 * 1000


class ThumbnailsCollected(Exception):
    """A thumbnail this job stored was removed by the collector before the job recorded it: retried (the retry
    stores it again)."""


class OriginalMissing(CorruptImage):
    """The original is not in storage (it is written before its event is committed, so it will not appear)."""


@dataclass
class _Config:
    settings: Settings
    sizes: dict[str, int]


_config: _Config | None = None


def configure(settings: Settings) -> None:
    """Set this process's settings (from ``worker.thumbnails.boot``, or a test). Sizes are checked here."""
    global _config
    _config = _Config(settings, imaging.parse_sizes(settings.thumbnail_sizes))
    imaging.configure_pillow(settings.image_max_pixels)


def _configured() -> _Config:
    if _config is None:
        raise RuntimeError("worker.thumbnails.actors.configure(settings) was not called")
    return _config


# -- per-thread private event loop -------------------------------------------------------------------------


@dataclass
class _Resources:
    """One thread's event loop, PostgreSQL connection and storage."""

    settings: Settings
    runner: asyncio.Runner = field(default_factory=asyncio.Runner)
    conn: asyncpg.Connection | None = None
    storage: Storage | None = None
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    async def connection(self) -> asyncpg.Connection:
        if self.conn is None or self.conn.is_closed():
            s = self.settings
            self.conn = await asyncpg.connect(
                s.database_url, timeout=s.pg_connect_timeout, command_timeout=s.pg_command_timeout
            )
            await init_connection(self.conn)
        return self.conn

    async def store(self) -> Storage:
        if self.storage is None:
            self.storage = await self.stack.enter_async_context(open_storage(self.settings))
        return self.storage

    async def drop_connection(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.terminate()

    async def aclose(self) -> None:
        with contextlib.suppress(*UNAVAILABLE):
            if self.conn is not None:
                await self.conn.close(timeout=2)
        self.conn = None
        await self.stack.aclose()
        self.storage = None


_lock = threading.Lock()
_by_thread: dict[int, _Resources] = {}


def _resources() -> _Resources:
    ident = threading.get_ident()
    with _lock:
        res = _by_thread.get(ident)
        if res is None:
            res = _by_thread[ident] = _Resources(_configured().settings)
    return res


def close_resources() -> None:
    """Close every thread's connection, storage and loop (in tests, and whoever calls the actor directly)."""
    with _lock:
        all_res = list(_by_thread.values())
        _by_thread.clear()

    def close() -> None:
        for res in all_res:
            try:
                res.run(res.aclose())
            finally:
                res.runner.close()

    if _running_loop() is None:
        close()
    else:  # a private loop cannot run inside a running one: close them from a thread of their own
        closer = threading.Thread(target=close, name="close-thumbnail-resources")
        closer.start()
        closer.join()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _discard_thread_resources() -> None:
    with _lock:
        res = _by_thread.pop(threading.get_ident(), None)
    if res is not None:
        try:
            res.run(res.aclose())
        except BaseException:
            log.warning("thumbnails_resources_not_closed", exc_info=True)
        finally:
            res.runner.close()


class CloseResources(dramatiq.Middleware):
    """Closes a worker thread's private loop and connections when the thread stops."""

    def before_worker_thread_shutdown(self, broker: Any, thread: Any) -> None:
        _discard_thread_resources()


# -- the job -----------------------------------------------------------------------------------------------


async def _target(res: _Resources, event: dict[str, Any]) -> tuple[int, str] | None:
    """``(product id, original)`` the job is for, or ``None`` if it is superseded (the rule above)."""
    conn = await res.connection()
    product_id = int(str(event["aggregate_id"]))
    found, original = await repo.job_original(conn, str(event["id"]))
    state = await repo.image_state(conn, product_id)
    if state is None:
        log.info("thumbnails_skipped", product_id=product_id, reason="the product is gone")
        return None
    if not found:
        original = state.original
    if state.status != "pending" or original is None or state.original != original:
        log.info(
            "thumbnails_skipped",
            product_id=product_id,
            reason="the image was replaced, removed or already processed",
            status=state.status,
        )
        return None
    return product_id, original


async def _load(res: _Resources, key: str) -> bytes:
    storage = await res.store()
    try:
        return await storage.read(key)
    except NotStored as exc:
        raise OriginalMissing("the original image is missing from storage") from exc


async def _store(res: _Resources, outputs: list[imaging.Output]) -> dict[str, Any]:
    """Store every output; the ``image_thumbnails`` document (size -> WebP, with the JPEG as ``fallback``)."""
    storage = await res.store()
    thumbs: dict[str, Any] = {}
    for out in outputs:
        key = await storage.save_bytes(out.data, prefix="thumbs", ext=out.ext)
        entry = thumbs.setdefault(out.size, {"width": out.width, "height": out.height})
        if out.format == "webp":
            entry.update(key=key, format="webp")
        else:
            entry["fallback"] = {"key": key, "format": out.format}
    return thumbs


def _db(res: _Resources, coro: Coroutine[Any, Any, T]) -> T:
    """Run a PostgreSQL step; a broken connection is dropped, so the retry reconnects."""
    try:
        return res.run(coro)
    except _PG_ERRORS:
        res.run(res.drop_connection())
        raise


async def _finish_ready(res: _Resources, product_id: int, original: str, thumbs: dict[str, Any], rid: Any) -> bool:
    conn = await res.connection()
    storage = await res.store()
    keys = [k for entry in thumbs.values() for k in (entry.get("key"), entry.get("fallback", {}).get("key")) if k]
    async with conn.transaction():
        # Ordered against the collector (shared.store.media): referenced only while they are there, and locked.
        await media.hold_for_use(conn, keys)
        for key in keys:
            if not await storage.exists(key):
                raise ThumbnailsCollected(f"{key} was collected before it was recorded")
        return await repo.mark_ready(conn, product_id, original, thumbs, rid) is not None


async def _finish_failed(res: _Resources, product_id: int, original: str, reason: str, rid: Any) -> bool:
    conn = await res.connection()
    return await repo.mark_failed(conn, product_id, original, reason, rid) is not None


def run_job(event: dict[str, Any]) -> None:
    """The body of :func:`make_thumbnails` (callable directly, e.g. from tests)."""
    config = _configured()
    res = _resources()
    rid = event.get("request_id")
    with structlog.contextvars.bound_contextvars(request_id=rid, event_id=event.get("id")):
        target = _db(res, _target(res, event))
        if target is None:
            return
        product_id, original = target
        try:
            data = res.run(_load(res, original))
            outputs = imaging.make_thumbnails(data, config.sizes, config.settings.image_max_pixels)
        except CorruptImage as exc:
            recorded = _db(res, _finish_failed(res, product_id, original, str(exc), rid))
            log.warning("thumbnails_failed", product_id=product_id, reason=str(exc), recorded=recorded)
            return
        thumbs = res.run(_store(res, outputs))
        done = _db(res, _finish_ready(res, product_id, original, thumbs, rid))
        log.info("thumbnails_ready" if done else "thumbnails_superseded", product_id=product_id, original=original)


@dramatiq.actor(
    queue_name=THUMBNAILS_QUEUE,
    actor_name="make_thumbnails",
    max_retries=MAX_RETRIES,
    min_backoff=MIN_BACKOFF_MS,
    max_backoff=MAX_BACKOFF_MS,
    time_limit=TIME_LIMIT_MS,
    on_retry_exhausted="thumbnails_gave_up",
)
def make_thumbnails(event: dict[str, Any]) -> None:
    """Thumbnails for the image of a ``product.image_uploaded`` event (``event`` is ``actor_args(event)``)."""
    try:
        run_job(event)
    except BaseException:
        # A time limit is raised into the thread wherever it is, perhaps inside the private loop: start the
        # retry from a fresh loop and connection rather than from whatever state that left behind.
        _discard_thread_resources()
        raise


def give_up(message: dict[str, Any], retry: dict[str, Any]) -> None:
    """The body of :func:`thumbnails_gave_up`: the job's product becomes ``failed``, if the job still counts."""
    event = message["args"][0]
    attempts = int(retry.get("retries", 0)) + 1
    last = str(message.get("options", {}).get("traceback", "")).strip().splitlines()[-1:] or ["unknown"]
    # The last traceback line is "module.ExceptionType: message"; only the type goes out (messages may carry hosts).
    error = last[0].split(":", 1)[0].rsplit(".", 1)[-1]
    reason = f"thumbnails could not be made after {attempts} attempts (last error: {error}); try regenerating"
    res = _resources()
    target = _db(res, _target(res, event))
    if target is not None:
        _db(res, _finish_failed(res, target[0], target[1], reason, event.get("request_id")))
        log.error("thumbnails_gave_up", product_id=target[0], attempts=attempts, error=error)


@dramatiq.actor(queue_name=THUMBNAILS_QUEUE, actor_name="thumbnails_gave_up", max_retries=MAX_RETRIES)
def thumbnails_gave_up(message: dict[str, Any], retry: dict[str, Any]) -> None:
    """Sent by dramatiq's Retries middleware when ``make_thumbnails`` has no retries left."""
    give_up(message, retry)
