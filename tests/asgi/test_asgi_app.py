"""trio_sio.ASGIApp driven directly as an ASGI server drives it (in memory): lifespan, with
and without a wrapped app; routing; static files; body limits on the streamed bytes;
WebSocket refusals; a WebSocket cancelled by its server."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypercorn_apps import echo_server

import trio_sio
from trio_sio.engineio import EngineServer, EngineSocket
from trio_sio.protocol.engineio import CloseReason

Message = dict[str, Any]


class Conn:
    """One ASGI connection: what the server gives the app, and what the app sent."""

    def __init__(self) -> None:
        self._in_send, self._in_recv = trio.open_memory_channel[Message](math.inf)
        self._out_send, self._out_recv = trio.open_memory_channel[Message](math.inf)
        self.receives = 0

    async def receive(self) -> Message:
        self.receives += 1
        return await self._in_recv.receive()

    async def send(self, message: Message) -> None:
        await self._out_send.send(dict(message))

    def give(self, **message: Any) -> None:
        self._in_send.send_nowait(message)

    async def next(self) -> Message:
        with trio.fail_after(10):
            return await self._out_recv.receive()


def http_scope(
    path: str,
    query: str = "",
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers or [],
        "client": ("127.0.0.1", 5000),
        **extra,
    }


def ws_scope(
    path: str = "/socket.io/", query: str = "EIO=4&transport=websocket", **extra: Any
) -> dict[str, Any]:
    scope = http_scope(path, query, **extra)
    scope["type"] = "websocket"
    scope.setdefault("extensions", {"websocket.http.response": {}})
    return scope


async def respond(
    app: Any, scope: dict[str, Any], body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    conn = Conn()
    conn.give(type="http.request", body=body, more_body=False)
    await app(scope, conn.receive, conn.send)
    start = await conn.next()
    end = await conn.next()
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, end["body"]


async def start_lifespan(nursery: trio.Nursery, app: Any) -> Conn:
    life = Conn()
    nursery.start_soon(
        app, {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, life.receive, life.send
    )
    life.give(type="lifespan.startup")
    assert (await life.next())["type"] == "lifespan.startup.complete"
    return life


class Recorder:
    """A wrapped app that records the events it gets and answers lifespan as asked."""

    def __init__(self, *, startup: str = "complete", raises: bool = False) -> None:
        self.events: list[str] = []
        self.startup = startup
        self.raises = raises

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            if self.raises:
                raise RuntimeError("no lifespan here")
            while True:
                message = await receive()
                self.events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    await send({"type": f"lifespan.startup.{self.startup}", "message": "db down"})
                    if self.startup == "failed":
                        return
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        self.events.append(f"{scope['type']} {scope['path']}")
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"other"})


# -- lifespan -----------------------------------------------------------------------------


async def test_lifespan_runs_the_server_and_closes_sessions_first(nursery: trio.Nursery) -> None:
    sio = echo_server()
    order: list[str] = []
    sio.on("disconnect", lambda socket, reason: order.append(f"disconnect: {reason}"))
    other = Recorder()
    app = trio_sio.ASGIApp(sio, other_app=other)
    assert not sio.engine.running
    life = await start_lifespan(nursery, app)
    assert sio.engine.running and other.events == ["lifespan.startup"]

    ws = Conn()
    ws.give(type="websocket.connect")
    nursery.start_soon(app, ws_scope(), ws.receive, ws.send)
    assert (await ws.next())["type"] == "websocket.accept"
    assert (await ws.next())["text"].startswith("0{")
    ws.give(type="websocket.receive", text="40")
    assert (await ws.next())["text"].startswith("40{")

    life.give(type="lifespan.shutdown")
    # The session goes first, with a CLOSE packet; then the wrapped app's shutdown.
    assert (await ws.next())["text"].startswith('42["welcome"')
    assert (await ws.next())["text"] == "1"
    assert (await ws.next())["type"] == "websocket.close"
    assert (await life.next())["type"] == "lifespan.shutdown.complete"
    assert order == ["disconnect: server shutting down"]
    assert other.events == ["lifespan.startup", "lifespan.shutdown"]
    assert not sio.engine.running


async def test_a_failed_startup_of_the_wrapped_app_is_reported(nursery: trio.Nursery) -> None:
    sio = echo_server()
    app = trio_sio.ASGIApp(sio, other_app=Recorder(startup="failed"))
    life = Conn()
    nursery.start_soon(app, {"type": "lifespan", "state": {}}, life.receive, life.send)
    life.give(type="lifespan.startup")
    assert await life.next() == {"type": "lifespan.startup.failed", "message": "db down"}
    await sio.engine.wait_stopped()
    assert not sio.engine.running


async def test_a_wrapped_app_without_lifespan_is_left_out(nursery: trio.Nursery) -> None:
    sio = echo_server()
    life = await start_lifespan(nursery, trio_sio.ASGIApp(sio, other_app=Recorder(raises=True)))
    assert sio.engine.running
    life.give(type="lifespan.shutdown")
    assert (await life.next())["type"] == "lifespan.shutdown.complete"
    assert not sio.engine.running


async def test_a_server_already_running_is_left_running(nursery: trio.Nursery) -> None:
    sio = echo_server()
    await nursery.start(sio.run)
    life = await start_lifespan(nursery, trio_sio.ASGIApp(sio))
    life.give(type="lifespan.shutdown")
    assert (await life.next())["type"] == "lifespan.shutdown.complete"
    assert sio.engine.running
    sio.shutdown()


async def test_running_context_for_hosts_that_keep_lifespan(nursery: trio.Nursery) -> None:
    sio = echo_server()
    app = trio_sio.ASGIApp(sio)
    async with app.running():
        assert sio.engine.running
        status, _, body = await respond(app, http_scope("/socket.io/", "EIO=4&transport=polling"))
        assert status == 200 and body.startswith(b"0{")
    assert not sio.engine.running


async def test_requests_before_startup_get_503_and_one_error_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = trio_sio.ASGIApp(echo_server())
    for _ in range(2):
        status, _, _ = await respond(app, http_scope("/socket.io/", "EIO=4&transport=polling"))
        assert status == 503
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "lifespan" in errors[0].getMessage()
    caplog.clear()


# -- routing ------------------------------------------------------------------------------


async def test_routing(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    page = tmp_path / "index.html"
    page.write_text("<p>hi</p>")
    other = Recorder()
    app = trio_sio.ASGIApp(echo_server(), other_app=other, static_files={"/": page})
    await start_lifespan(nursery, app)
    handshake = "EIO=4&transport=polling"

    status, headers, body = await respond(app, http_scope("/socket.io/", handshake))
    assert status == 200 and body.startswith(b"0{")
    assert headers["content-length"] == str(len(body))
    # Mounted below a root path (Starlette's Mount("/socket.io"), Hypercorn's --root-path).
    mounted = http_scope("/socket.io/", handshake, root_path="/socket.io")
    assert (await respond(app, mounted))[0] == 200
    proxied = http_scope("/chat/socket.io/", handshake, root_path="/chat")
    assert (await respond(app, proxied))[0] == 200

    status, headers, body = await respond(app, http_scope("/"))
    assert (status, body) == (200, b"<p>hi</p>")
    assert headers["content-type"] == "text/html; charset=utf-8"
    status, headers, body = await respond(app, http_scope("/", method="HEAD"))
    assert (status, body, headers["content-length"]) == (200, b"", "9")

    assert await respond(app, http_scope("/api")) == (200, {}, b"other")
    ws = Conn()
    await app(ws_scope("/live"), ws.receive, ws.send)
    assert other.events[-2:] == ["http /api", "websocket /live"]

    alone = trio_sio.ASGIApp(echo_server(), socketio_path="realtime")
    assert (await respond(alone, http_scope("/api")))[0] == 404
    assert (await respond(alone, http_scope("/socket.io/", handshake)))[0] == 404
    assert (await respond(alone, http_scope("/realtime/", handshake)))[0] == 503
    caplog.clear()  # the error line about the missing lifespan
    ws = Conn()
    await alone(ws_scope("/live"), ws.receive, ws.send)
    assert (await ws.next())["type"] == "websocket.close"


# -- bodies -------------------------------------------------------------------------------


async def test_streamed_body_over_the_limit_stops_reading(nursery: trio.Nursery) -> None:
    app = trio_sio.ASGIApp(echo_server(max_http_buffer_size=5000))
    await start_lifespan(nursery, app)
    _, _, body = await respond(app, http_scope("/socket.io/", "EIO=4&transport=polling"))
    sid = json.loads(body[1:])["sid"]

    conn = Conn()
    for _ in range(100):  # 100 kB offered in 1 kB chunks, no Content-Length
        conn.give(type="http.request", body=b"4" * 1000, more_body=True)
    scope = http_scope("/socket.io/", f"EIO=4&transport=polling&sid={sid}", method="POST")
    await app(scope, conn.receive, conn.send)
    start = await conn.next()
    assert start["status"] == 413
    assert (b"connection", b"close") in start["headers"]
    assert conn.receives <= 6  # read up to the limit, not the whole body

    declared = http_scope(
        "/socket.io/",
        f"EIO=4&transport=polling&sid={sid}",
        method="POST",
        headers=[(b"content-length", b"100000")],
    )
    conn = Conn()
    await app(declared, conn.receive, conn.send)
    assert (await conn.next())["status"] == 413
    assert conn.receives == 0  # refused on the declared length


async def test_client_gone_during_a_post(nursery: trio.Nursery) -> None:
    app = trio_sio.ASGIApp(echo_server())
    await start_lifespan(nursery, app)
    _, _, body = await respond(app, http_scope("/socket.io/", "EIO=4&transport=polling"))
    sid = json.loads(body[1:])["sid"]
    conn = Conn()
    conn.give(type="http.request", body=b"4hel", more_body=True)
    conn.give(type="http.disconnect")
    scope = http_scope("/socket.io/", f"EIO=4&transport=polling&sid={sid}", method="POST")
    await app(scope, conn.receive, conn.send)
    assert (await conn.next())["status"] == 400


# -- WebSocket ----------------------------------------------------------------------------


@pytest.mark.parametrize("extension", [True, False])
async def test_websocket_refusals(nursery: trio.Nursery, extension: bool) -> None:
    app = trio_sio.ASGIApp(echo_server())
    await start_lifespan(nursery, app)
    ws = Conn()
    ws.give(type="websocket.connect")
    scope = ws_scope(query="EIO=4&transport=websocket&sid=unknown")
    if not extension:
        scope["extensions"] = {}
    await app(scope, ws.receive, ws.send)
    first = await ws.next()
    if extension:
        assert first["type"] == "websocket.http.response.start" and first["status"] == 400
        assert json.loads((await ws.next())["body"]) == {"code": 1, "message": "Session ID unknown"}
    else:
        assert first["type"] == "websocket.close"


async def test_websocket_cancelled_by_its_server_closes_the_session(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """An ASGI server that cancels a WebSocket (Hypercorn past its graceful timeout) gets
    the session closed as in a shutdown, with its CLOSE packet sent first."""
    opened: list[EngineSocket] = []
    app = trio_sio.ASGIApp(EngineServer(on_open=opened.append))
    await start_lifespan(nursery, app)
    ws = Conn()
    ws.give(type="websocket.connect")
    handler = trio.CancelScope()

    async def serve() -> None:
        with handler:
            await app(ws_scope("/engine.io/"), ws.receive, ws.send)

    nursery.start_soon(serve)
    assert (await ws.next())["type"] == "websocket.accept"
    assert (await ws.next())["text"].startswith("0{")
    handler.cancel()
    assert (await ws.next())["text"] == "1"
    assert await ws.next() == {"type": "websocket.close", "code": 1000}
    [socket] = opened
    await socket.wait_closed()
    assert socket.close_reason is CloseReason.SERVER_SHUTDOWN


async def test_oversized_websocket_message_closes_with_1009(nursery: trio.Nursery) -> None:
    app = trio_sio.ASGIApp(echo_server(max_http_buffer_size=100))
    await start_lifespan(nursery, app)
    ws = Conn()
    ws.give(type="websocket.connect")
    nursery.start_soon(app, ws_scope(), ws.receive, ws.send)
    assert (await ws.next())["type"] == "websocket.accept"
    assert (await ws.next())["text"].startswith("0{")
    ws.give(type="websocket.receive", text="4" + "é" * 60)  # 61 characters, 121 bytes
    assert await ws.next() == {"type": "websocket.close", "code": 1009}


def test_the_engine_imports_no_front_end() -> None:
    """Imports point one way: the front ends import the engine, never the reverse."""
    import subprocess
    import sys

    code = (
        "import sys, trio_sio.engineio, trio_sio.engineio.server, trio_sio.engineio.client; "
        "print([m for m in sys.modules if m.startswith('trio_sio.frontends')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
