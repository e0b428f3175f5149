"""A parked long-poll GET whose connection closes (FIN or reset) ends its session as
``"transport close"`` at once, on the standalone server (over TCP and over TLS) and under
Hypercorn, long before the heartbeat (25 s + 20 s here) would. Real loopback TCP, real time,
bounded by 5 s."""

from __future__ import annotations

import json
import socket as stdlib_socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import pytest
import trio
import trustme
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

import trio_sio

PATH = "/socket.io/?EIO=4&transport=polling"


def make_server(events: list[tuple[str, Any]]) -> trio_sio.Server:
    sio = trio_sio.Server(ping_interval=25, ping_timeout=20)
    sio.on("connection", lambda socket, auth: events.append(("connection", socket.id)))
    sio.on("disconnect", lambda socket, reason: events.append(("disconnect", reason)))
    return sio


CA = trustme.CA()
CERT = CA.issue_cert("127.0.0.1")


async def standalone(nursery: trio.Nursery, sio: trio_sio.Server) -> int:
    listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def standalone_tls(nursery: trio.Nursery, sio: trio_sio.Server) -> int:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    CERT.configure_cert(context)
    listeners = await nursery.start(partial(sio.serve, "127.0.0.1", 0, ssl_context=context))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def hypercorn(nursery: trio.Nursery, sio: trio_sio.Server) -> int:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 1.0
    binds: list[str] = await nursery.start(hypercorn_serve, trio_sio.ASGIApp(sio), config)
    return int(binds[0].rsplit(":", 1)[1])


FRONT_ENDS: dict[str, Callable[[trio.Nursery, trio_sio.Server], Awaitable[int]]] = {
    "standalone": standalone,
    "standalone-tls": standalone_tls,
    "hypercorn": hypercorn,
}


async def open_stream(front_end: str, port: int) -> tuple[trio.abc.Stream, trio.SocketStream]:
    """A connection to the server: the stream to speak HTTP on, and its TCP stream."""
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    if front_end != "standalone-tls":
        return tcp, tcp
    context = ssl.create_default_context()
    CA.configure_trust(context)
    return trio.SSLStream(tcp, context, server_hostname="127.0.0.1"), tcp


async def read_response(stream: trio.abc.Stream) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some()
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += await stream.receive_some()
    return int(head.split(b" ")[1]), body


async def call(stream: trio.abc.Stream, method: str, target: str, body: bytes = b"") -> bytes:
    await stream.send_all(
        f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    status, answer = await read_response(stream)
    assert status == 200, answer
    return answer


Parked = tuple[trio.abc.Stream, trio.SocketStream, list[tuple[str, Any]], trio_sio.Server]


@pytest.fixture
async def parked(request: pytest.FixtureRequest, nursery: trio.Nursery) -> AsyncIterator[Parked]:
    events: list[tuple[str, Any]] = []
    sio = make_server(events)
    port = await FRONT_ENDS[request.param](nursery, sio)
    stream, tcp = await open_stream(request.param, port)
    with trio.fail_after(5):
        sid = json.loads((await call(stream, "GET", PATH))[1:])["sid"]
        target = f"{PATH}&sid={sid}"
        await call(stream, "POST", target, b"40")
        assert (await call(stream, "GET", target)).startswith(b"40")
        assert [name for name, _ in events] == ["connection"]
        await stream.send_all(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await trio.sleep(0.2)  # parked: the server has nothing to send
    assert len(events) == 1
    yield stream, tcp, events, sio
    await tcp.aclose()


async def noticed(events: list[tuple[str, Any]]) -> float:
    started = trio.current_time()
    with trio.fail_after(5):
        while len(events) < 2:
            await trio.sleep(0.005)
    assert events[1] == ("disconnect", "transport close")
    return trio.current_time() - started


@pytest.mark.parametrize("parked", sorted(FRONT_ENDS), indirect=True)
async def test_fin_on_a_parked_get_ends_the_session_at_once(parked: Parked) -> None:
    stream, _, events, _ = parked
    await stream.aclose()  # (over TLS: a close_notify alert, then the FIN)
    assert await noticed(events) < 1.0


@pytest.mark.parametrize("parked", sorted(FRONT_ENDS), indirect=True)
async def test_reset_on_a_parked_get_ends_the_session_at_once(parked: Parked) -> None:
    _, tcp, events, _ = parked
    linger = struct.pack("ii", 1, 0)  # close with a reset
    tcp.socket.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, linger)
    await tcp.aclose()
    assert await noticed(events) < 1.0


@pytest.mark.parametrize("parked", ["standalone", "standalone-tls"], indirect=True)
async def test_a_request_sent_behind_a_parked_get_is_kept_for_its_turn(parked: Parked) -> None:
    stream, _, events, sio = parked
    with trio.fail_after(5):
        # Pipelined behind the parked GET: the watch reads it and keeps it for its turn.
        await stream.send_all(f"GET {PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await trio.sleep(0.2)
        assert len(events) == 1  # not taken for a close
        await sio.emit("hello")
        data = b""  # the parked GET's answer, then the pipelined request's
        while data.count(b"HTTP/1.1 200 OK") < 2 or not data.endswith(b"}"):
            chunk = await stream.receive_some()
            assert chunk, data
            data += chunk
        first, second = data.split(b"HTTP/1.1 200 OK")[1:]
        assert first.endswith(b'\r\n\r\n42["hello"]')
        assert b'\r\n\r\n0{"sid":' in second
