"""``python -m worker dead-letters list|replay|purge [--queue Q]``: the dramatiq dead-letter queues ``Q.XQ``.

- ``list``: per queue, the dead letters by actor: how many, the oldest one's age and its first error (the last
  line of the traceback dramatiq stored in the message, when there is one). Reading is a peek: the messages are
  taken unacknowledged and handed back when the channel closes, at most :data:`PEEK_LIMIT` per queue.
- ``replay [--limit N]``: puts dead letters back on their live queue, oldest first, each exactly once: at most the
  number that were in ``Q.XQ`` when the replay started (so a message that fails again and comes back behind them
  is not taken a second time), and a message id met twice in one run stops the run. Each is published with
  publisher confirms and only then removed from ``Q.XQ``; its retry count is reset, so it gets dramatiq's usual
  retries again. A progress bar shows on stderr.
- ``purge``: drops every dead letter of the queue(s); prints how many.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import aio_pika
import dramatiq
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from dramatiq.common import xq_name
from dramatiq.errors import DecodeError
from tqdm import tqdm

from shared.settings import Settings
from worker.queues import DRAMATIQ_QUEUES, declare_dramatiq_queue

#: ``list`` reads at most this many messages per queue (its count is the queue's own, never capped).
PEEK_LIMIT: Final = 10_000
#: How long one publish may wait for its confirm (seconds).
PUBLISH_TIMEOUT: Final = 10.0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What ``list`` shows of one message of ``Q.XQ``."""

    actor: str
    message_id: str | None
    error: str
    dead_since: datetime | None


@dataclass(frozen=True, slots=True)
class ActorSummary:
    actor: str
    count: int
    oldest: datetime | None
    first_error: str


def describe(message: AbstractIncomingMessage) -> DeadLetter:
    """Actor, id, first error and the time it was dead-lettered (RabbitMQ's ``x-death``; else its enqueue time)."""
    try:
        body: dict[str, Any] = orjson.loads(message.body)
        actor = str(body.get("actor_name") or "?")
        options = body.get("options") or {}
        traceback = options.get("traceback") if isinstance(options, dict) else None
        error = traceback.strip().splitlines()[-1] if isinstance(traceback, str) and traceback.strip() else "-"
        timestamp = body.get("message_timestamp")
        enqueued = datetime.fromtimestamp(timestamp / 1000, UTC) if isinstance(timestamp, int | float) else None
        message_id = body.get("message_id") or message.message_id
    except (orjson.JSONDecodeError, AttributeError):
        actor, error, enqueued, message_id = "?", "not a dramatiq message", None, message.message_id
    deaths = (message.headers or {}).get("x-death")
    died = deaths[0].get("time") if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else None
    dead_since = died if isinstance(died, datetime) else enqueued
    if dead_since is not None and dead_since.tzinfo is None:
        dead_since = dead_since.replace(tzinfo=UTC)
    return DeadLetter(actor, None if message_id is None else str(message_id), error, dead_since)


def summarise(letters: list[DeadLetter]) -> list[ActorSummary]:
    """By actor (most dead letters first): count, the oldest's time, and the oldest's error."""
    counts = Counter(letter.actor for letter in letters)
    out = []
    for actor, count in counts.most_common():
        mine = [letter for letter in letters if letter.actor == actor]
        oldest = min(mine, key=lambda m: m.dead_since or datetime.max.replace(tzinfo=UTC))
        out.append(ActorSummary(actor, count, oldest.dead_since, oldest.error))
    return out


def age(since: datetime | None, now: datetime) -> str:
    if since is None:
        return "-"
    seconds = max(0, int((now - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


async def _open(settings: Settings) -> aio_pika.abc.AbstractConnection:
    return await asyncio.wait_for(aio_pika.connect(settings.rabbitmq_url), 10)


async def _declared(channel: AbstractChannel, queue: str) -> aio_pika.abc.AbstractQueue:
    """``Q.XQ``, its three queues declared exactly as dramatiq declares them (a no-op when they exist)."""
    await declare_dramatiq_queue(channel, queue)
    return await channel.declare_queue(xq_name(queue), passive=True)


async def peek(settings: Settings, queue: str, limit: int = PEEK_LIMIT) -> tuple[int, list[DeadLetter]]:
    """(the number of dead letters of ``queue``, what the first ``limit`` of them are); nothing is removed."""
    async with await _open(settings) as conn:
        channel = await conn.channel()
        xq = await _declared(channel, queue)
        total = xq.declaration_result.message_count or 0
        letters = []
        for _ in range(min(total, limit)):
            message = await xq.get(no_ack=False, fail=False)
            if message is None:
                break
            letters.append(describe(message))
        # Closing the channel hands every unacknowledged message back to Q.XQ, in its place.
        await channel.close()
    return total, letters


def _revived(body: bytes, queue: str) -> bytes:
    """The message for the live queue: ``queue_name`` must equal it, and it gets its retries anew."""
    message = dramatiq.Message.decode(body)
    options = {k: v for k, v in message.options.items() if k not in ("retries", "traceback", "eta")}
    # Not Message.copy: it merges the options it is given into the old ones.
    return bytes(dataclasses.replace(message, queue_name=queue, options=options).encode())


async def replay(settings: Settings, queue: str, limit: int | None, progress: bool = True) -> tuple[int, int]:
    """Move up to ``limit`` dead letters of ``queue`` back onto it, each once; (replayed, left in Q.XQ)."""
    async with await _open(settings) as conn:
        channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
        xq = await _declared(channel, queue)
        total = xq.declaration_result.message_count or 0
        todo = total if limit is None else min(total, limit)
        seen: set[str] = set()
        held: list[AbstractIncomingMessage] = []  # not replayable: handed back when the channel closes
        replayed = 0
        with tqdm(total=todo, desc=f"replay {xq_name(queue)}", unit="msg", disable=not progress) as bar:
            for _ in range(todo):
                message = await xq.get(no_ack=False, fail=False)
                if message is None:
                    break
                letter = describe(message)
                if letter.message_id in seen:
                    held.append(message)  # it failed again and came back: this run has replayed it once already
                    break
                try:
                    body = _revived(message.body, queue)
                except (DecodeError, ValueError, TypeError, KeyError):
                    held.append(message)
                    continue
                if letter.message_id is not None:
                    seen.add(letter.message_id)
                out = aio_pika.Message(
                    body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=letter.message_id
                )
                await asyncio.wait_for(
                    channel.default_exchange.publish(out, routing_key=queue, mandatory=True), PUBLISH_TIMEOUT
                )
                await message.ack()  # only once RabbitMQ confirmed the copy on the live queue
                replayed += 1
                bar.update()
        await channel.close()
    left = (await peek(settings, queue, limit=0))[0]
    return replayed, left


async def purge(settings: Settings, queue: str) -> int:
    """Drop every dead letter of ``queue``; how many there were."""
    async with await _open(settings) as conn:
        channel = await conn.channel()
        xq = await _declared(channel, queue)
        result = await xq.purge()
        return int(result.message_count or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker dead-letters", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    for name, text in (
        ("list", "count, actor, age and first error of the dead letters"),
        ("replay", "put dead letters back on their queue, each once"),
        ("purge", "drop the dead letters"),
    ):
        action = sub.add_parser(name, help=text)
        action.add_argument("--queue", "-q", choices=DRAMATIQ_QUEUES, help="one queue (default: every one)")
        if name == "replay":
            action.add_argument("--limit", "-n", type=_positive, help="at most N messages per queue")
    return parser


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return n


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows)


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    queues = [args.queue] if args.queue else list(DRAMATIQ_QUEUES)
    if args.action == "list":
        now = datetime.now(UTC)
        rows: list[tuple[str, ...]] = [("QUEUE", "ACTOR", "COUNT", "OLDEST", "FIRST ERROR")]
        for queue in queues:
            total, letters = await peek(settings, queue)
            if not letters:
                rows.append((xq_name(queue), "-", str(total), "-", "-"))
            for summary in summarise(letters):
                rows.append((xq_name(queue), summary.actor, str(summary.count), age(summary.oldest, now),
                             summary.first_error))  # fmt: skip
            if total > len(letters):
                rows.append((xq_name(queue), f"(first {len(letters)} of {total} read)", "", "", ""))
        sys.stdout.write(_table(rows))
    elif args.action == "replay":
        for queue in queues:
            started = time.monotonic()
            replayed, left = await replay(settings, queue, args.limit)
            sys.stdout.write(
                f"{xq_name(queue)}: {replayed} replayed onto {queue} in {time.monotonic() - started:.1f} s, "
                f"{left} left\n"
            )
    else:
        for queue in queues:
            sys.stdout.write(f"{xq_name(queue)}: {await purge(settings, queue)} purged\n")
    return 0


def main(argv: list[str]) -> int:
    """``python -m worker dead-letters ...``; the exit status."""
    args = _parser().parse_args(argv)
    return asyncio.run(_run(Settings(), args))
