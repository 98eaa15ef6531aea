"""Answers finished in one turn of the event loop go out together at its end, not each as it is made.

Every ``send`` to a peer that sleeps in ``epoll_wait`` wakes it; on one host (nginx in front, as in production, or
a load generator) the sender pays that wake-up in the kernel, and on a virtual machine an interprocessor interrupt
besides. Sent one by one, 60 us apart (an answer made without waiting on anything: a 429, a 401), nearly every
answer found the peer asleep again: wrk's context switches were 0.86 a request for a 429 and 0.57 for a cache hit.
Sent back to back at the end of the turn, the first answer wakes the peer and the rest find it awake: 0.05 a
request, and the API's system time per cache hit fell from 12-14 us to 8.6-9.5 (bench/RESULTS.md, 2026-12-03).

No answer waits for anything but the rest of the turn it was made in (the other requests that were ready with it):
alone in its turn, an answer goes out as that turn ends. A connection that is closed sends what it holds first;
past :data:`FLUSH_AT` bytes a connection sends at once, so a large body still meets the socket's flow control.
Only the transport methods aiohttp's server calls (and ``abort``) are here; any other is the base class's
``NotImplementedError``.

aiohttp has no such setting: :func:`install` makes its server build :class:`CorkedRequestHandler`, whose transport
is a :class:`CorkedTransport` around the event loop's own. Every write aiohttp makes goes through it, the
file answers too: a file's bytes must follow its headers, so aiohttp writes files itself, as it does under uvloop
(which has no ``sendfile``) and with its documented ``AIOHTTP_NOSENDFILE``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from typing import Any, Final, cast

from aiohttp import web_fileresponse, web_protocol, web_server

#: Bytes a connection may hold for the end of the turn; more are sent at once (aiohttp drains at 64 KiB).
FLUSH_AT: Final = 64 * 1024

#: Per event loop, the transports holding bytes for the end of its current turn (a loop closed with some held
#: leaves its list behind, never the next loop's writes waiting on it).
_held: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[CorkedTransport]] = weakref.WeakKeyDictionary()


def _flush_all(held: list[CorkedTransport]) -> None:
    ready = held[:]
    held.clear()
    for t in ready:
        t.flush()


class CorkedTransport(asyncio.Transport):
    """A transport whose writes are held until the end of the loop's turn (see the module's docstring)."""

    __slots__ = ("_chunks", "_held", "_inner", "_loop", "_size")

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = inner
        self._loop = loop
        held = _held.get(loop)
        if held is None:
            held = _held[loop] = []
        self._held = held
        self._chunks: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._chunks:
            held = self._held
            if not held:
                self._loop.call_soon(_flush_all, held)
            held.append(self)
        # A bytearray or a view may be reused by its writer before the end of the turn: hold a copy.
        self._chunks.append(data if type(data) is bytes else bytes(data))
        self._size += len(data)
        if self._size > FLUSH_AT:
            self.flush()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Send what this connection holds, now."""
        chunks = self._chunks
        if not chunks:
            return
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        if not self._inner.is_closing():
            self._inner.write(data)

    def close(self) -> None:
        self.flush()
        self._inner.close()

    def abort(self) -> None:
        self._chunks.clear()
        self._size = 0
        self._inner.abort()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()


class CorkedRequestHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler, writing through a :class:`CorkedTransport`."""

    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport, but are stream transports all the same.
        super().connection_made(CorkedTransport(cast(asyncio.Transport, transport), self._loop))


def install() -> None:
    """Make aiohttp's servers in this process build :class:`CorkedRequestHandler` (``web.Server`` looks the
    class up in its module on every connection), and write files through it (``AIOHTTP_NOSENDFILE``). Idempotent."""
    web_server.RequestHandler = CorkedRequestHandler  # type: ignore[attr-defined]
    web_fileresponse.NOSENDFILE = True  # type: ignore[misc]
