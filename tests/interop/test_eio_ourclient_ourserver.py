"""Our Engine.IO client against our Engine.IO server, in one Trio run, on real loopback sockets.

Trio's real clock; every test is bounded by ``trio.fail_after``. The server echoes every
message, closes the session on "close-me" and answers "transport" with "transport:<name>".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import h11
import pytest
import trio

from trio_sio.engineio import EngineServer, EngineSocket
from trio_sio.engineio.client import EngineClient, open_engine_client
from trio_sio.frontends.standalone import serve
from trio_sio.protocol.errors import ConnectionClosed

pytestmark = pytest.mark.interop

MODES = {
    "polling": ("polling",),
    "websocket": ("websocket",),
    "upgrade": ("polling", "websocket"),
}
LIMIT = 5.0
MAX_SIZE = 1_000_000  # the server's max_http_buffer_size (the default)


@dataclass
class Served:
    server: EngineServer
    url: str
    port: int
    closed: dict[str, str] = field(default_factory=dict)  # sid -> the server's close reason

    async def wait_gone(self, sid: str) -> str:
        """Wait until session ``sid`` left ``server.sessions``; the reason it closed."""
        socket = self.server.sessions.get(sid)
        if socket is not None:
            await socket.wait_closed()
        while sid in self.server.sessions:
            await trio.sleep(0.01)
        return self.closed[sid]


async def _serve(**options: float) -> AsyncIterator[Served]:
    closed: dict[str, str] = {}

    async def handler(socket: EngineSocket) -> None:
        try:
            async for message in socket:
                if message == "close-me":
                    socket.close()
                elif message == "transport":
                    await socket.send(f"transport:{socket.transport.value}")
                else:
                    await socket.send(message)
        finally:
            closed[socket.sid] = socket.close_reason.value if socket.close_reason else "?"

    server = EngineServer(handler, **options)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve, server, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        try:
            yield Served(server, f"http://127.0.0.1:{port}", port, closed)
        finally:
            server.shutdown()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    """Our echo server, default settings (ping 25 s / 20 s, max payload 1 MB)."""
    async for s in _serve():
        yield s


@pytest.fixture
async def served_fast() -> AsyncIterator[Served]:
    """Our echo server pinging every 0.2 s, with a 0.2 s pong timeout."""
    async for s in _serve(ping_interval=0.2, ping_timeout=0.2):
        yield s


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _settle(client: EngineClient, mode: str) -> None:
    """For the upgrade mode, wait until the session runs on WebSocket."""
    if mode == "upgrade":
        await client.wait_upgraded()
    assert client.transport == ("polling" if mode == "polling" else "websocket")


async def test_ourclient_echo_text_and_binary(served: Served, mode: str) -> None:
    messages: list[str | bytes] = ["hello", "ünïcödé €", "", "4", b"\x00\x01\xfe\xff", b"", b"b"]
    with trio.fail_after(LIMIT):
        async with open_engine_client(served.url, transports=MODES[mode]) as client:
            assert client.sid in served.server.sessions
            for message in messages:
                await client.send(message)
                assert await client.receive() == message
            await _settle(client, mode)
            for message in messages:
                await client.send(message)
                assert await client.receive() == message
            await client.send("transport")
            assert await client.receive() == f"transport:{client.transport}"


async def test_ourclient_burst_order_across_upgrade(served: Served, mode: str) -> None:
    """50 messages sent while the session may be upgrading: all come back, in order."""
    sent: list[str | bytes] = [f"m{i}" if i % 3 else f"m{i}".encode() for i in range(50)]
    with trio.fail_after(LIMIT):
        async with open_engine_client(served.url, transports=MODES[mode]) as client:
            first_transport = client.transport
            received: list[str | bytes] = []

            async def reader() -> None:
                for _ in sent:
                    received.append(await client.receive())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                for i, message in enumerate(sent):
                    if i % 2:
                        client.send_nowait(message)
                    else:
                        await client.send(message)
                    if i % 5 == 0:
                        await trio.sleep(0.002)  # let the upgrade progress between messages
            assert received == sent
            if mode == "upgrade":
                assert first_transport == "polling"
            await _settle(client, mode)
            await client.send("transport")
            assert await client.receive() == f"transport:{client.transport}"


async def test_ourclient_server_close(served: Served, mode: str) -> None:
    with trio.fail_after(LIMIT):
        async with open_engine_client(served.url, transports=MODES[mode]) as client:
            await _settle(client, mode)
            await client.send("before")
            await client.send("close-me")
            assert await client.receive() == "before"
            with pytest.raises(ConnectionClosed) as info:
                await client.receive()
            assert info.value.reason == "transport close"
            assert client.close_reason == "transport close"
            with pytest.raises(ConnectionClosed):
                await client.send("too late")
            assert await served.wait_gone(client.sid) == "forced close"


async def test_ourclient_aclose_ends_server_session(served: Served, mode: str) -> None:
    with trio.fail_after(LIMIT):
        async with open_engine_client(served.url, transports=MODES[mode]) as client:
            await _settle(client, mode)
            await client.send("hi")
            assert await client.receive() == "hi"
            sid = client.sid
            assert sid in served.server.sessions
            await client.aclose()
            assert client.close_reason == "forced close"
        assert await served.wait_gone(sid) == "transport close"


async def test_ourclient_900kb_messages(served: Served, mode: str) -> None:
    """Just under the 1 MB limit, also as polling payloads (binary is base64 there)."""
    text = "y" * 900_000
    data = bytes(range(256)) * 2734  # 699,904 bytes: 933,208 in base64
    with trio.fail_after(LIMIT):
        async with open_engine_client(served.url, transports=MODES[mode]) as client:
            await _settle(client, mode)
            assert client.open_info.max_payload == MAX_SIZE
            await client.send(text)
            await client.send(data)  # does not fit in the same POST: sent on its own
            assert await client.receive() == text
            assert await client.receive() == data
            await client.send("after")
            assert await client.receive() == "after"
            assert client.close_reason is None


async def test_ourclient_oversized_message(served_fast: Served, mode: str) -> None:
    """Over 1 MB: polling gets 413 (a transport error), WebSocket is closed (1009).

    After the 413 the server keeps the session until it sees that the client has given up:
    at once when the client closes the connection of its parked GET ("transport close"),
    else at the next heartbeat ("ping timeout"); on WebSocket it sees the transport close.
    """
    with trio.fail_after(LIMIT):
        async with open_engine_client(served_fast.url, transports=MODES[mode]) as client:
            await _settle(client, mode)
            sid = client.sid
            await client.send("x" * (MAX_SIZE + 100_000))
            with pytest.raises(ConnectionClosed) as info:
                await client.receive()
            expected = "transport error" if mode == "polling" else "transport close"
            assert info.value.reason == expected
            assert client.close_reason == expected
        reason = await served_fast.wait_gone(sid)
        if mode == "polling":
            assert reason in ("transport close", "ping timeout")
        else:
            assert reason == "transport close"


async def _http(port: int, request: h11.Request) -> h11.Response:
    """Send a request's head only (no body) on a new connection; the response head."""
    conn = h11.Connection(h11.CLIENT)
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(conn.send(request) or b"")
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                return event
            else:
                raise AssertionError(f"unexpected {event!r}")


async def test_ourserver_refuses_large_post_with_413(served: Served) -> None:
    """A POST declaring more than 1 MB is refused at once (before its body) with 413."""
    with trio.fail_after(LIMIT):
        async with open_engine_client(served.url, transports=("polling",)) as client:
            target = f"/engine.io/?EIO=4&transport=polling&sid={client.sid}"
            host = ("Host", f"127.0.0.1:{served.port}")
            response = await _http(
                served.port,
                h11.Request(
                    method="POST",
                    target=target,
                    headers=[host, ("Content-Length", str(MAX_SIZE + 1))],
                ),
            )
            assert response.status_code == 413
            assert (b"connection", b"close") in list(response.headers)
            # The session itself is untouched.
            await client.send("still here")
            assert await client.receive() == "still here"
