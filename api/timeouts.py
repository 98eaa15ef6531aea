"""Slow clients: how long a connection may take to send a request, so that none holds a connection forever.

aiohttp has no timer of its own for reading request headers. Its keep-alive timer is the one that covers them: it
is armed when a connection opens and after each response, and it closes the connection if no complete request
(request line and headers) has arrived when it fires, however many bytes have trickled in meanwhile. So
``api.server`` sets ``keepalive_timeout`` to the header timeout. A request's body has a
deadline of its own, :class:`BodyDeadline`, armed by the edge for requests that have one.
nginx in front (deploy/nginx) is the production setting: ``client_header_timeout`` and ``client_body_timeout``.
"""

from __future__ import annotations

import asyncio

from aiohttp import web


class BodyDeadline:
    """Cancels the request's handler if its body has not all arrived ``seconds`` after the handler started
    (the edge then answers 408 and closes the connection)."""

    __slots__ = ("_handle", "expired")

    def __init__(self, request: web.Request, seconds: float) -> None:
        self.expired = False
        task = asyncio.current_task()
        content = request.content

        def expire() -> None:
            if not content.is_eof() and task is not None:
                self.expired = True
                task.cancel()

        # The task's loop: CPython 3.11's get_running_loop() makes a getpid() system call.
        loop = task.get_loop() if task is not None else asyncio.get_running_loop()
        self._handle = loop.call_later(seconds, expire)

    def cancel(self) -> None:
        self._handle.cancel()
