"""The standalone h11 + trio-websocket front end, over real loopback sockets."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio_websocket
from websockets.exceptions import ConnectionClosed as WebSocketsClosed
from websockets.sync.client import connect as websockets_connect

from trio_sio.engineio import EngineServer, EngineSocket
from trio_sio.frontends.standalone import serve


@pytest.fixture(autouse=True)
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test on any ERROR record of a ``trio_sio`` logger: nothing a client sends
    may be logged as a server error."""
    caplog.set_level(logging.DEBUG, logger="trio_sio")
    yield
    errors = [
        record
        for record in caplog.get_records("call")
        if record.name.startswith("trio_sio") and record.levelno >= logging.ERROR
    ]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


async def echo(socket: EngineSocket) -> None:
    async for message in socket:
        await socket.send(message)


async def start(nursery: trio.Nursery, **options: object) -> tuple[EngineServer, int]:
    server = EngineServer(echo, **options)
    listeners = await nursery.start(serve, server, "127.0.0.1", 0)
    return server, listeners[0].socket.getsockname()[1]


async def exchange(stream: trio.SocketStream, request: bytes) -> bytes:
    """Send one request; read one whole response (Content-Length framed)."""
    await stream.send_all(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


async def test_keep_alive_polling_on_one_connection(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        _, port = await start(nursery)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        first = await exchange(stream, get("/engine.io/?EIO=4&transport=polling"))
        assert first.startswith(b"HTTP/1.1 200")
        sid = json.loads(first.split(b"\r\n\r\n", 1)[1][1:])["sid"]
        body = b"4hello"
        post = (
            f"POST /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        assert (await exchange(stream, post)).endswith(b"\r\n\r\nok")
        again = await exchange(stream, get(f"/engine.io/?EIO=4&transport=polling&sid={sid}"))
        assert again.endswith(b"\r\n\r\n4hello")
        await stream.aclose()


async def test_garbage_gets_400_and_server_lives_on(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        _, port = await start(nursery)
        bad = await trio.open_tcp_stream("127.0.0.1", port)
        response = await exchange(bad, b"\x00\x01 not http at all\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 400")
        other = await trio.open_tcp_stream("127.0.0.1", port)
        assert (await exchange(other, get("/engine.io/?EIO=4&transport=polling"))).startswith(
            b"HTTP/1.1 200"
        )
        missing = await exchange(other, get("/elsewhere"))
        assert missing.startswith(b"HTTP/1.1 404")


async def test_oversize_body_refused_by_declared_length(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        _, port = await start(nursery, max_http_buffer_size=1000)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        first = await exchange(stream, get("/engine.io/?EIO=4&transport=polling"))
        sid = json.loads(first.split(b"\r\n\r\n", 1)[1][1:])["sid"]
        post = (
            f"POST /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Length: 5000\r\n\r\n"
        ).encode()
        response = await exchange(stream, post)
        assert response.startswith(b"HTTP/1.1 413")


async def test_static_files(nursery: trio.Nursery, tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    page.write_text("<h1>hi</h1>")
    with trio.fail_after(5):
        _, port = await start(nursery, static_files={"/": page, "/gone.js": tmp_path / "no.js"})
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        response = await exchange(stream, get("/"))
        assert response.startswith(b"HTTP/1.1 200")
        assert b"text/html; charset=utf-8" in response and response.endswith(b"<h1>hi</h1>")
        assert (await exchange(stream, get("/gone.js"))).startswith(b"HTTP/1.1 404")


@pytest.mark.parametrize("backend", ["native", "trio-websocket"])
async def test_websocket_on_the_same_port(nursery: trio.Nursery, backend: str) -> None:
    with trio.fail_after(5):
        _, port = await start(nursery, websocket=backend, max_http_buffer_size=200_000)
        url = f"ws://127.0.0.1:{port}/engine.io/?EIO=4&transport=websocket"
        async with trio_websocket.open_websocket_url(url) as ws:
            opening = await ws.get_message()
            assert opening.startswith("0")
            await ws.send_message("4hi")
            assert await ws.get_message() == "4hi"
            await ws.send_message(b"\x00\xff")
            assert await ws.get_message() == b"\x00\xff"
            await ws.ping(b"are you there")  # answered with a pong
            big = bytes(range(256)) * 700
            await ws.send_message(big)
            assert await ws.get_message() == big
        async with trio_websocket.open_websocket_url(url) as ws:
            await ws.get_message()
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await ws.send_message(b"x" * 300_000)  # over the limit: closed with 1009
                while True:
                    await ws.get_message()
            assert closed.value.reason.code == 1009
        refused = f"ws://127.0.0.1:{port}/engine.io/?EIO=3&transport=websocket"
        with pytest.raises(trio_websocket.HandshakeError):
            async with trio_websocket.open_websocket_url(refused):
                pass


async def test_origin_check_on_websocket(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        _, port = await start(nursery, cors_allowed_origins=["http://good.test"])
        url = f"ws://127.0.0.1:{port}/engine.io/?EIO=4&transport=websocket"
        with pytest.raises(trio_websocket.ConnectionRejected) as info:
            async with trio_websocket.open_websocket_url(
                url, extra_headers=[(b"Origin", b"http://evil.test")]
            ):
                pass
        assert info.value.status_code == 403
        async with trio_websocket.open_websocket_url(
            url, extra_headers=[(b"Origin", b"http://good.test")]
        ) as ws:
            assert (await ws.get_message()).startswith("0")


async def test_oversize_body_being_sent_still_gets_413(nursery: trio.Nursery) -> None:
    """The client is still writing its body when the 413 comes: it must read the 413."""
    with trio.fail_after(5):
        _, port = await start(nursery, max_http_buffer_size=1000)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        first = await exchange(stream, get("/engine.io/?EIO=4&transport=polling"))
        sid = json.loads(first.split(b"\r\n\r\n", 1)[1][1:])["sid"]
        body = b"4" + b"x" * 300_000
        post = (
            f"POST /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        async with trio.open_nursery() as inner:

            async def write() -> None:
                try:
                    await stream.send_all(post)
                except trio.BrokenResourceError:
                    pass

            inner.start_soon(write)
            data = b""
            while b"\r\n" not in data:
                chunk = await stream.receive_some(65536)
                assert chunk, "connection closed without an answer"
                data += chunk
        assert data.startswith(b"HTTP/1.1 413")


async def open_websocket(port: int) -> tuple[trio.SocketStream, bytes]:
    """A raw WebSocket handshake; returns the stream and what came after the 101 head."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    await stream.send_all(
        get("/engine.io/?EIO=4&transport=websocket")[:-2]
        + b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        + f"Sec-WebSocket-Key: {key}\r\n\r\n".encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        assert chunk, "closed during the handshake"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    return stream, rest


@pytest.mark.parametrize("backend", ["native", "trio-websocket"])
async def test_message_one_byte_over_the_limit_gets_close_1009(
    nursery: trio.Nursery, backend: str
) -> None:
    """The server refuses the frame from its header, but reads and drops the rest of it
    before closing: closing with unread data would reset the connection, and the client
    would fail in its send and lose the close frame."""
    with trio.fail_after(10):
        _, port = await start(nursery, websocket=backend)
        stream, received = await open_websocket(port)
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        size = 1_000_001  # the default max_http_buffer_size, plus one
        frame = struct.pack("!BBQ", 0x81, 0x80 | 127, size) + b"\0\0\0\0" + b"4" * size
        failed: list[BaseException] = []

        async def send() -> None:
            try:
                await stream.send_all(frame)
            except trio.BrokenResourceError as exc:
                failed.append(exc)

        async with trio.open_nursery() as inner:
            inner.start_soon(send)
            while chunk := await stream.receive_some(65536):
                received += chunk
        # a close frame with status 1009 (and maybe a reason), then EOF
        assert re.search(rb"\x88[\x02-\x7d]\x03\xf1", received), received[-80:]
        assert not failed, "the connection was reset"


@pytest.mark.parametrize("backend", ["native", "trio-websocket"])
async def test_websockets_client_sees_1009(nursery: trio.Nursery, backend: str) -> None:
    def client(port: int) -> int | None:
        url = f"ws://127.0.0.1:{port}/engine.io/?EIO=4&transport=websocket"
        with websockets_connect(url, max_size=None) as ws:
            assert str(ws.recv()).startswith("0")
            try:
                ws.send("4" + "x" * 1_000_000)
                while True:
                    ws.recv()
            except WebSocketsClosed as exc:
                return exc.rcvd.code if exc.rcvd else None

    with trio.fail_after(10):
        _, port = await start(nursery, websocket=backend)
        assert await trio.to_thread.run_sync(client, port) == 1009


async def test_connection_cap_over_tcp(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        _, port = await start(nursery, max_connections=1)
        first = await trio.open_tcp_stream("127.0.0.1", port)
        assert (await exchange(first, get("/nowhere"))).startswith(b"HTTP/1.1 404")
        refused = await trio.open_tcp_stream("127.0.0.1", port)
        try:
            assert await refused.receive_some(65536) == b""
        except trio.BrokenResourceError:
            pass  # a reset: closed at once all the same
        await first.aclose()
        with trio.fail_after(2):
            while True:  # once the server noticed, a new connection is served
                again = await trio.open_tcp_stream("127.0.0.1", port)
                try:
                    if (await exchange(again, get("/nowhere"))).startswith(b"HTTP/1.1 404"):
                        break
                except trio.BrokenResourceError:
                    pass
                await again.aclose()
                await trio.sleep(0.01)
