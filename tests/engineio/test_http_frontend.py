"""The standalone h11 + trio-websocket front end, over real loopback sockets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trio_websocket

from trio_sio.engineio import EngineServer, EngineSocket


async def echo(socket: EngineSocket) -> None:
    async for message in socket:
        await socket.send(message)


async def start(nursery: trio.Nursery, **options: object) -> tuple[EngineServer, int]:
    server = EngineServer(echo, **options)
    listeners = await nursery.start(server.serve, "127.0.0.1", 0)
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
