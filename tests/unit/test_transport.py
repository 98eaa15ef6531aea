"""Answers made in one turn of the event loop go out together at its end (api/transport.py), in order, and none is
lost when its connection closes. The socket is faked (a transport that records what it is given): the process edge."""

from __future__ import annotations

import asyncio

from aiohttp import web, web_server

from api.transport import FLUSH_AT, CorkedRequestHandler, CorkedTransport, install


class Socket:
    """What the event loop's transport is handed, in order: ("write", bytes), ("close",), ("abort",)."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close",))

    def abort(self) -> None:
        self.closing = True
        self.calls.append(("abort",))

    def is_closing(self) -> bool:
        return self.closing


def corked(sock: Socket) -> CorkedTransport:
    return CorkedTransport(sock, asyncio.get_running_loop())  # type: ignore[arg-type]


async def _turn() -> None:
    """Let the loop finish this turn and run what it scheduled for the next."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_answers_written_in_one_turn_reach_each_socket_once_at_its_end_in_order() -> None:
    # Given three connections, each written to twice (headers, then body) in one turn
    socks = [Socket() for _ in range(3)]
    ts = [corked(s) for s in socks]
    for i, t in enumerate(ts):
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(bytearray(b"body-%d" % i))
    # Then nothing is sent before the turn ends
    assert all(s.calls == [] for s in socks)
    await _turn()
    # And then each socket gets one write holding both parts, in order
    assert [s.calls for s in socks] == [[("write", b"HTTP/1.1 200 OK\r\n\r\nbody-%d" % i)] for i in range(3)]
    # And a later turn's answer goes out at the end of that turn
    ts[0].write(b"next")
    await _turn()
    assert socks[0].calls[-1] == ("write", b"next")


async def test_a_buffer_reused_by_its_writer_after_write_is_sent_as_it_was_written() -> None:
    sock = Socket()
    t = corked(sock)
    buf = bytearray(b"first")
    t.write(buf)
    buf[:] = b"XXXXX"
    await _turn()
    assert sock.calls == [("write", b"first")]


async def test_closing_a_connection_sends_what_it_holds_first() -> None:
    sock = Socket()
    t = corked(sock)
    t.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye")
    t.close()
    assert sock.calls == [("write", b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye"), ("close",)]
    await _turn()
    assert len(sock.calls) == 2  # nothing written after the close


async def test_an_aborted_connection_sends_nothing_more() -> None:
    sock = Socket()
    t = corked(sock)
    t.write(b"partial")
    t.abort()
    await _turn()
    assert sock.calls == [("abort",)]


async def test_a_connection_the_peer_closed_meanwhile_is_not_written_to() -> None:
    sock = Socket()
    t = corked(sock)
    t.write(b"late")
    sock.closing = True  # the peer went away before the end of the turn
    await _turn()
    assert sock.calls == []


async def test_a_large_body_is_sent_at_once_so_the_socket_s_flow_control_sees_it() -> None:
    sock = Socket()
    t = corked(sock)
    t.write(b"h" * 100)
    assert sock.calls == []
    t.write(b"b" * FLUSH_AT)
    # Past FLUSH_AT bytes the connection writes through, in order, without waiting for the turn's end
    assert sock.calls == [("write", b"h" * 100 + b"b" * FLUSH_AT)]
    # And what it sent is not sent again at the turn's end
    await _turn()
    assert len(sock.calls) == 1


def test_a_loop_closed_with_answers_held_does_not_hold_back_the_next_loop_s() -> None:
    # Given a loop that is closed while a connection still holds an answer for the end of its turn
    first = asyncio.new_event_loop()
    CorkedTransport(Socket(), first).write(b"never sent")  # type: ignore[arg-type]
    first.close()

    # Then a connection on the next loop still sends at the end of its turn
    async def on_the_next_loop() -> list[tuple[object, ...]]:
        sock = Socket()
        corked(sock).write(b"sent")
        await _turn()
        return sock.calls

    second = asyncio.new_event_loop()
    try:
        assert second.run_until_complete(on_the_next_loop()) == [("write", b"sent")]
    finally:
        second.close()


async def test_the_servers_aiohttp_builds_use_the_corked_handler_once_installed() -> None:
    # aiohttp's server finds its connection handler class by name on every connection: if an upgrade changed
    # that, answers would go out one by one again, unnoticed by every other test.
    install()

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    assert type(web_server.Server(handler)()) is CorkedRequestHandler
