"""A small TCP proxy for cutting a real service off from the code under test (the shared server keeps running).

proxy = TcpProxy("127.0.0.1", 5432)
await proxy.start()          # listens on proxy.port
await proxy.cut()            # drops every connection and refuses new ones (the port stays closed)
await proxy.restore()        # accepts again on the same port
proxy.stall(True)            # connections stay open but nothing is forwarded (a hung server)
await proxy.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or _free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        """Close the listener and every open connection: clients see resets and refused connects."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
            self._server = None
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._writers.clear()
        for t in list(self._tasks):
            t.cancel()
        self._tasks.clear()

    def stall(self, stalled: bool) -> None:
        """Hold every byte (both ways) while ``stalled``: the peer looks alive but never answers."""
        if stalled:
            self._flowing.clear()
        else:
            self._flowing.set()

    async def restore(self) -> None:
        await self.start()

    async def stop(self) -> None:
        await self.cut()

    def url_for(self, url: str) -> str:
        """``url`` with its host:port replaced by the proxy's."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        netloc_new = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
        return urlunsplit(parts._replace(netloc=netloc_new))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})
        a = asyncio.ensure_future(self._pipe(reader, up_writer))
        b = asyncio.ensure_future(self._pipe(up_reader, writer))
        self._tasks.update({a, b})
        await asyncio.gather(a, b, return_exceptions=True)
        self._tasks.difference_update({a, b})
        self._writers.difference_update({writer, up_writer})

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
