"""trio_sio.ASGIApp under Hypercorn's trio worker: started as a process, as a user starts it
(``hypercorn --worker-class trio "hypercorn_apps:echo_app()"``), and embedded with
``hypercorn.trio.serve``. Our client over each transport, binary and acks, CORS, body
limits, and graceful shutdown; the official Node client is in test_hypercorn_node.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
import trio_websocket
from asgi_support import HypercornProcess, start_embedded
from hypercorn_apps import ALLOWED_ORIGIN, MAX_PAYLOAD, echo_app, echo_server

import trio_sio
from trio_sio.engineio._http_client import HTTPConnection, HTTPResponse

TRANSPORTS = {
    "polling": ("polling",),
    "websocket": ("websocket",),
    "upgrade": ("polling", "websocket"),
}
EIO = "/socket.io/?EIO=4&transport="


@pytest.fixture(scope="module")
def hypercorn_process() -> Iterator[HypercornProcess]:
    server = HypercornProcess("hypercorn_apps:echo_app()")
    yield server
    server.kill()
    assert not server.errors(), "\n".join(server.stderr)


@pytest.fixture(params=["process", "embedded"])
async def url(
    request: pytest.FixtureRequest, nursery: trio.Nursery, hypercorn_process: HypercornProcess
) -> AsyncIterator[str]:
    if request.param == "process":
        yield hypercorn_process.url
    else:
        yield await start_embedded(nursery, echo_app())


async def request(
    url: str, method: str, target: str, headers: list[tuple[str, str]] | None = None, **kw: Any
) -> HTTPResponse:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    connection = HTTPConnection(parts.hostname, parts.port)
    try:
        return await connection.request(method, target, headers=headers or [], **kw)
    finally:
        await connection.aclose()


async def handshake(url: str) -> str:
    response = await request(url, "GET", EIO + "polling")
    assert response.status == 200, response
    return str(json.loads(response.body[1:])["sid"])


# -- our client ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_our_client(url: str, transport: str) -> None:
    welcome: list[str] = []
    client = trio_sio.Client(url, transports=TRANSPORTS[transport], reconnection=False)
    client.on("welcome", welcome.append)
    with trio.fail_after(15):
        async with client:
            args = (1, "two", {"three": b"\x04\x05"}, [b"\x06", None], "é" * 3000)
            assert await client.emit_with_ack("echo", *args, timeout=5) == args
            if transport == "upgrade":
                while client.transport != "websocket":
                    await trio.sleep(0.01)
            expected = "polling" if transport == "polling" else "websocket"
            assert await client.emit_with_ack("transport", timeout=5) == expected
            assert client.transport == expected
            while not welcome:
                await trio.sleep(0.01)
            assert welcome == [client.id]


# -- CORS ---------------------------------------------------------------------------------


async def test_cors_for_the_allowed_origin_only(url: str) -> None:
    with trio.fail_after(10):
        allowed = await request(url, "GET", EIO + "polling", [("Origin", ALLOWED_ORIGIN)])
        assert allowed.status == 200
        assert allowed.header("access-control-allow-origin") == ALLOWED_ORIGIN
        assert allowed.header("access-control-allow-credentials") == "true"

        other = await request(url, "GET", EIO + "polling", [("Origin", "http://evil.example")])
        assert other.status == 403
        assert other.header("access-control-allow-origin") is None

        preflight = await request(
            url,
            "OPTIONS",
            EIO + "polling",
            [("Origin", ALLOWED_ORIGIN), ("Access-Control-Request-Headers", "content-type")],
        )
        assert preflight.status == 204
        assert preflight.header("access-control-allow-origin") == ALLOWED_ORIGIN
        assert "POST" in (preflight.header("access-control-allow-methods") or "")
        assert preflight.header("access-control-allow-headers") == "content-type"
        # as the npm cors package answers: 204, without Access-Control-Allow-Origin
        refused = await request(url, "OPTIONS", EIO + "polling", [("Origin", "http://x.example")])
        assert refused.status == 204
        assert refused.header("access-control-allow-origin") is None


# -- limits -------------------------------------------------------------------------------


async def test_post_over_the_limit_is_refused(url: str) -> None:
    with trio.fail_after(10):
        sid = await handshake(url)
        target = f"{EIO}polling&sid={sid}"
        small = await request(url, "POST", target, body=b"4" + b"x" * 100)
        assert (small.status, small.body) == (200, b"ok")
        big = await request(url, "POST", target, body=b"4" + b"x" * MAX_PAYLOAD)
        assert big.status == 413


async def test_streamed_body_is_cut_at_the_limit(url: str) -> None:
    """A chunked POST (no Content-Length) is refused once the limit is passed, while the
    client is still sending: the body is counted as it streams, never buffered whole."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with trio.fail_after(10):
        sid = await handshake(url)
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        async with stream:
            await stream.send_all(
                f"POST {EIO}polling&sid={sid} HTTP/1.1\r\nHost: x\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode()
            )
            chunk = b"x" * 1000
            data = b""
            sent = 0
            with trio.move_on_after(5):
                while b"\r\n" not in data:
                    if sent < 10 * MAX_PAYLOAD:
                        await stream.send_all(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        sent += len(chunk)
                    with trio.move_on_after(0.01):
                        data += await stream.receive_some(65536)
            assert data.startswith(b"HTTP/1.1 413"), data
            assert sent < 10 * MAX_PAYLOAD  # answered before the whole body was sent


async def test_websocket_message_over_the_limit_closes_with_1009(url: str) -> None:
    ws_url = url.replace("http", "ws", 1) + EIO + "websocket"
    with trio.fail_after(10):
        async with trio_websocket.open_websocket_url(ws_url) as ws:
            assert str(await ws.get_message()).startswith("0{")
            await ws.send_message("40")
            assert str(await ws.get_message()).startswith("40{")
            await ws.send_message('42["echo","' + "x" * MAX_PAYLOAD + '"]')
            with pytest.raises(trio_websocket.ConnectionClosed) as info:
                while True:
                    await ws.get_message()
            assert info.value.reason.code == 1009


async def test_unknown_paths_are_404(url: str) -> None:
    with trio.fail_after(10):
        assert (await request(url, "GET", "/elsewhere")).status == 404
        assert (await request(url, "GET", "/socket.io.js")).status == 404


# -- graceful shutdown --------------------------------------------------------------------


async def connected_clients(
    nursery: trio.Nursery, url: str, reasons: dict[str, list[str]]
) -> list[trio_sio.Client]:
    """A polling client and a WebSocket client, connected; their disconnect reasons go to
    ``reasons``."""
    clients = []
    for transport in ("polling", "websocket"):
        client = trio_sio.Client(url, transports=TRANSPORTS[transport], reconnection=False)
        client.on("disconnect", reasons.setdefault(transport, []).append)
        ready = trio.Event()

        async def run(client: trio_sio.Client = client, ready: trio.Event = ready) -> None:
            async with client:
                ready.set()
                await trio.sleep_forever()

        nursery.start_soon(run)
        with trio.fail_after(10):
            await ready.wait()
        clients.append(client)
    return clients


async def test_sigterm_closes_every_session_then_exits() -> None:
    """``kill -TERM`` on Hypercorn: it stops, gives requests ``--graceful-timeout``, and
    sends lifespan shutdown; every session's disconnect handler runs with "server shutting
    down" (WebSocket clients also get a CLOSE packet) and the process exits 0."""
    server = HypercornProcess("hypercorn_apps:echo_app()", "--graceful-timeout", "1")
    try:
        reasons: dict[str, list[str]] = {}
        async with trio.open_nursery() as nursery:
            await connected_clients(nursery, server.url, reasons)
            with trio.fail_after(15):
                started = trio.current_time()
                status = await trio.to_thread.run_sync(server.terminate)
                assert status == 0
                assert trio.current_time() - started < 10
                while len(reasons) < 2 or not all(reasons.values()):
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        log = server.log(timeout=2)
        gone = [entry["reason"] for entry in log if entry["ev"] == "disconnect"]
        assert gone == ["server shutting down"] * 2, log
        assert reasons["websocket"] == ["transport close"]
    finally:
        server.kill()
    assert not server.errors(), "\n".join(server.stderr)


async def test_embedded_shutdown_trigger_closes_sessions_while_serving() -> None:
    """With ``shutdown_trigger=app.shutdown_trigger(...)``, sessions are closed while
    Hypercorn still serves their requests: the long-polling client gets its CLOSE packet
    too, and Hypercorn stops without waiting for its graceful timeout."""
    sio = echo_server()
    gone: list[str] = []
    sio.on("disconnect", lambda socket, reason: gone.append(reason))
    app = trio_sio.ASGIApp(sio)
    stop = trio.Event()
    reasons: dict[str, list[str]] = {}
    with trio.fail_after(15):
        async with trio.open_nursery() as outer:
            done = trio.Event()

            async def serving(*, task_status: trio.TaskStatus[str]) -> None:
                async with trio.open_nursery() as nursery:
                    url = await start_embedded(
                        nursery, app, shutdown_trigger=app.shutdown_trigger(stop.wait)
                    )
                    task_status.started(url)
                done.set()

            url = await outer.start(serving)
            async with trio.open_nursery() as clients:
                await connected_clients(clients, url, reasons)
                started = trio.current_time()
                stop.set()
                await done.wait()
                assert trio.current_time() - started < 3
                while len(reasons) < 2 or not all(reasons.values()):
                    await trio.sleep(0.02)
                clients.cancel_scope.cancel()
    assert gone == ["server shutting down"] * 2
    assert reasons == {"polling": ["transport close"], "websocket": ["transport close"]}
    assert not sio.engine.running
