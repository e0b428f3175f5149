"""Engine.IO client against scripted fake servers, on virtual time.

The fake servers run in the test's own Trio run, on 127.0.0.1 port 0: a tiny h11 server
that speaks just enough long-polling, and a trio-websocket server. Time is a
``MockClock``: the heartbeat (45 s of silence) and connect timeouts take no real time.

Real sockets and an autojumping clock need care: the clock may jump while bytes are in
flight between the two ends. So these tests use ``autojump_threshold=0.05`` (jump only
after 50 ms of real idleness, far longer than any loopback I/O), while the watchdog itself
is also tested socket-free under pytest-trio's ``autojump_clock``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import partial

import h11
import pytest
import trio
import trio.testing
import trio_websocket

from trio_sio.engineio._heartbeat import HeartbeatWatchdog
from trio_sio.engineio._http_client import HTTPConnection, HTTPTransportError
from trio_sio.engineio.client import ConnectError, UpgradeError, open_engine_client
from trio_sio.protocol.errors import ConnectionClosed

OPEN = {"sid": "fake-sid", "upgrades": [], "pingInterval": 25000, "pingTimeout": 20000}

Responder = Callable[[str, str, bytes], Awaitable[tuple[int, bytes]]]


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.05)


class FakeHTTPServer:
    """HTTP/1.1 on h11; each request is answered by ``respond(method, target, body)``."""

    def __init__(self, respond: Responder, *, close_after_response: bool = False) -> None:
        self.respond = respond
        self.close_after_response = close_after_response
        self.connections = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                request: h11.Request | None = None
                body = b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:  # ConnectionClosed
                        return
                assert request is not None
                status, payload = await self.respond(
                    request.method.decode(), request.target.decode(), body
                )
                headers = [("Content-Length", str(len(payload)))]
                out = conn.send(h11.Response(status_code=status, headers=headers))
                out += conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage())
                await stream.send_all(out)
                if self.close_after_response:
                    return
                conn.start_next_cycle()


async def serve(nursery: trio.Nursery, server: FakeHTTPServer) -> str:
    listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
    return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"


class FakeEngine:
    """A scripted Engine.IO long-polling server for one session.

    The handshake GET gets OPEN (plus ``greeting`` packets); later GETs take their payload
    from ``to_client`` (so they park until the test sends one); POST bodies go to
    ``from_client`` and get ``ok`` unless ``park_posts`` is set.
    """

    def __init__(self, *, greeting: str = "", park_posts: bool = False, **open_data: object):
        self.open_data = {**OPEN, **open_data}
        self.greeting = greeting
        self.park_posts = park_posts
        self.to_client_send, self.to_client = trio.open_memory_channel[tuple[int, str]](100)
        self.from_client_send, self.from_client = trio.open_memory_channel[str](100)
        self.websocket_attempts = 0

    def push(self, payload: str, status: int = 200) -> None:
        self.to_client_send.send_nowait((status, payload))

    async def respond(self, method: str, target: str, body: bytes) -> tuple[int, bytes]:
        assert "EIO=4" in target
        if "transport=websocket" in target:  # no WebSocket here: refuse the upgrade
            self.websocket_attempts += 1
            return 400, b'{"code":3,"message":"Bad request"}'
        assert "transport=polling" in target
        if method == "GET" and "sid=" not in target:
            payload = "0" + json.dumps(self.open_data) + self.greeting
            return 200, payload.encode()
        assert "sid=fake-sid" in target
        if method == "GET":
            status, payload = await self.to_client.receive()
            return status, payload.encode()
        self.from_client_send.send_nowait(body.decode())
        if self.park_posts:
            await trio.sleep_forever()
        return 200, b"ok"


# ---------------------------------------------------------------- the watchdog alone


async def test_watchdog_fires_after_the_timeout(autojump_clock: trio.abc.Clock) -> None:
    start = trio.current_time()
    watchdog = HeartbeatWatchdog(45.0)
    await watchdog.wait_expired()
    assert trio.current_time() - start == pytest.approx(45.0)


async def test_watchdog_reset_moves_the_deadline(autojump_clock: trio.abc.Clock) -> None:
    start = trio.current_time()
    watchdog = HeartbeatWatchdog(45.0)

    async def feed() -> None:
        for _ in range(3):
            await trio.sleep(30)
            watchdog.reset()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        await watchdog.wait_expired()
    assert trio.current_time() - start == pytest.approx(90.0 + 45.0)


async def test_watchdog_wait_is_cancellable(autojump_clock: trio.abc.Clock) -> None:
    watchdog = HeartbeatWatchdog(45.0)
    with trio.move_on_after(10) as scope:
        await watchdog.wait_expired()
    assert scope.cancelled_caught


# ---------------------------------------------------------------- heartbeat, polling


async def test_silent_polling_server_is_a_ping_timeout(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    url = await serve(nursery, FakeHTTPServer(FakeEngine().respond))
    async with open_engine_client(url, transports=("polling",)) as client:
        opened = trio.current_time()
        with pytest.raises(ConnectionClosed) as info:
            await client.receive()
        assert info.value.reason == "ping timeout"
        assert trio.current_time() - opened == pytest.approx(45.0)
        assert client.close_reason == "ping timeout"


async def test_pings_are_answered_and_keep_the_session(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    engine = FakeEngine()
    url = await serve(nursery, FakeHTTPServer(engine.respond))
    async with open_engine_client(url, transports=("polling",)) as client:
        for _ in range(8):  # 200 s, far beyond one 45 s window
            await trio.sleep(25)
            engine.push("2")
            assert await engine.from_client.receive() == "3"
        assert client.close_reason is None
        engine.push("4still\x1e6")
        assert await client.receive() == "still"


# ---------------------------------------------------------------- heartbeat, websocket


@pytest.mark.parametrize("read_in_receive", [False, True])
async def test_silent_websocket_server_is_a_ping_timeout(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock, read_in_receive: bool
) -> None:
    """Also when the task that receives is the one reading the socket (no cancel scope
    around its read: closing the socket at the session's end wakes it)."""
    frames: list[str | bytes] = []

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message("0" + json.dumps({**OPEN, "pingInterval": 1000, "pingTimeout": 500}))
        await ws.send_message("2")
        frames.append(await ws.get_message())
        await trio.sleep_forever()

    server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
    url = f"ws://127.0.0.1:{server.port}"
    async with open_engine_client(
        url, transports=("websocket",), read_in_receive=read_in_receive
    ) as client:
        opened = trio.current_time()
        assert client.transport == "websocket"
        await client.wait_upgraded()  # already there
        with pytest.raises(ConnectionClosed, match="ping timeout"):
            await client.receive()
        assert trio.current_time() - opened == pytest.approx(1.5)
    assert frames == ["3"]


# ---------------------------------------------------------------- connecting


async def test_connection_refused_is_a_connect_error() -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with trio.fail_after(5), pytest.raises(ConnectError) as info:
        async with open_engine_client(f"http://127.0.0.1:{port}"):
            pytest.fail("connected")
    assert isinstance(info.value.__cause__, HTTPTransportError)


async def test_refused_handshake_names_the_reason(nursery: trio.Nursery) -> None:
    async def refuse(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        return 400, b'{"code":5,"message":"Unsupported protocol version"}'

    url = await serve(nursery, FakeHTTPServer(refuse))
    with trio.fail_after(5), pytest.raises(ConnectError, match="Unsupported protocol version"):
        async with open_engine_client(url):
            pytest.fail("connected")


async def test_handshake_timeout(nursery: trio.Nursery, mock_clock: trio.testing.MockClock) -> None:
    async def never(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        await trio.sleep_forever()

    url = await serve(nursery, FakeHTTPServer(never))
    start = trio.current_time()
    with pytest.raises(ConnectError) as info:
        async with open_engine_client(url, connect_timeout=7):
            pytest.fail("connected")
    assert isinstance(info.value.__cause__, trio.TooSlowError)
    assert trio.current_time() - start == pytest.approx(7.0)


async def test_query_headers_and_path(nursery: trio.Nursery) -> None:
    seen: list[str] = []

    async def record(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        seen.append(target)
        return 400, b""

    url = await serve(nursery, FakeHTTPServer(record))
    with trio.fail_after(5), pytest.raises(ConnectError):
        async with open_engine_client(url + "/ignored?a=1", path="/socket.io", query={"b": "2"}):
            pass
    assert seen == ["/socket.io/?a=1&b=2&EIO=4&transport=polling"]


# ---------------------------------------------------------------- session behaviour


async def test_greeting_close_packet_and_drain(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    engine = FakeEngine(greeting="\x1e4welcome")
    url = await serve(nursery, FakeHTTPServer(engine.respond))
    async with open_engine_client(url) as client:
        assert await client.receive() == "welcome"
        with pytest.raises(UpgradeError):  # the server offers no upgrade
            await client.wait_upgraded()
        engine.push("4one\x1ebAAE=\x1e1\x1e4never")
        assert [m async for m in client] == ["one", b"\x00\x01"]
        assert client.close_reason == "transport close"


async def test_failed_probe_stays_on_polling(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    engine = FakeEngine(upgrades=["websocket"])
    url = await serve(nursery, FakeHTTPServer(engine.respond))
    async with open_engine_client(url) as client:
        with pytest.raises(UpgradeError):
            await client.wait_upgraded()
        assert engine.websocket_attempts == 1
        assert client.transport == "polling"
        await client.send("still polling")
        assert await engine.from_client.receive() == "4still polling"
        engine.push("4fine")
        assert await client.receive() == "fine"


async def test_cancelled_during_handshake(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    async def never(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        await trio.sleep_forever()

    url = await serve(nursery, FakeHTTPServer(never))
    with trio.move_on_after(3) as scope:
        async with open_engine_client(url):
            pytest.fail("connected")
    assert scope.cancelled_caught


@pytest.mark.parametrize(
    ("status", "payload", "reason"),
    [
        (400, '{"code":1,"message":"Session ID unknown"}', "transport error"),
        (200, "9?", "parse error"),
    ],
)
async def test_broken_poll_ends_the_session(
    nursery: trio.Nursery,
    mock_clock: trio.testing.MockClock,
    status: int,
    payload: str,
    reason: str,
) -> None:
    engine = FakeEngine()
    url = await serve(nursery, FakeHTTPServer(engine.respond))
    async with open_engine_client(url) as client:
        engine.push("4first")
        engine.push(payload, status)
        assert await client.receive() == "first"
        with pytest.raises(ConnectionClosed) as info:
            await client.receive()
        assert info.value.reason == reason


async def test_batches_respect_max_payload_and_reuse_connections(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    engine = FakeEngine(maxPayload=20)
    http = FakeHTTPServer(engine.respond)
    url = await serve(nursery, http)
    async with open_engine_client(url) as client:
        for letter in "abcde":
            client.send_nowait(letter * 8)  # "4aaaaaaaa": 9 bytes; two fit in 20
        bodies = [await engine.from_client.receive() for _ in range(3)]
        assert bodies == ["4aaaaaaaa\x1e4bbbbbbbb", "4cccccccc\x1e4dddddddd", "4eeeeeeee"]
        client.send_nowait(b"\x00\x01")
        with pytest.raises(TypeError):
            client.send_nowait(bytearray(b"no"))  # type: ignore[arg-type]
        assert await engine.from_client.receive() == "bAAE="
        assert http.connections == 2  # one for the parked GET, one reused for POSTs
    assert await engine.from_client.receive() == "1"  # the goodbye


async def test_send_queue_applies_backpressure(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    engine = FakeEngine(park_posts=True)
    url = await serve(nursery, FakeHTTPServer(engine.respond))
    async with open_engine_client(url, send_queue_size=2) as client:
        client.send_nowait("a")  # taken by the send loop; its POST never completes
        await client.send("b")
        with pytest.raises(trio.WouldBlock):
            client.send_nowait("c")
        with trio.move_on_after(10) as scope:
            await client.send("c")
        assert scope.cancelled_caught
        assert await engine.from_client.receive() in ("4a", "4a\x1e4b")
    # The POST never completes, so aclose gives up on the goodbye after its grace period.
    assert client.close_reason == "forced close"
    with pytest.raises(ConnectionClosed):
        client.send_nowait("d")


async def test_a_sender_waiting_for_room_wakes_when_the_session_ends(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    engine = FakeEngine(park_posts=True)
    url = await serve(nursery, FakeHTTPServer(engine.respond))
    async with open_engine_client(url, send_queue_size=1) as client:
        client.send_nowait("a")  # its POST never completes: the queue stays full
        outcome: list[BaseException] = []

        async def waiting_send() -> None:
            try:
                await client.send("b")
            except ConnectionClosed as exc:
                outcome.append(exc)

        async with trio.open_nursery() as inner:
            inner.start_soon(waiting_send)
            await trio.testing.wait_all_tasks_blocked()
            engine.push("1")  # the server closes the session
        assert [str(exc) for exc in outcome] == ["transport close"]


async def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="transports"):
        async with open_engine_client("http://127.0.0.1:1", transports=("carrier-pigeon",)):
            pass
    with pytest.raises(ValueError, match="scheme"):
        async with open_engine_client("ftp://127.0.0.1:1"):
            pass
    with pytest.raises(ValueError, match="send_queue_size"):
        async with open_engine_client("http://127.0.0.1:1", send_queue_size=0):
            pass


# ---------------------------------------------------------------- the HTTP client


async def test_http_client_retries_a_dropped_keep_alive(nursery: trio.Nursery) -> None:
    async def hello(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        return 200, b"hello " + body

    server = FakeHTTPServer(hello, close_after_response=True)
    url = await serve(nursery, server)
    conn = HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    with trio.fail_after(5):
        for i in range(3):
            response = await conn.request("POST", "/", body=str(i).encode())
            assert (response.status, response.body) == (200, f"hello {i}".encode())
            await trio.sleep(0.01)  # let the server's close reach us
        await conn.aclose()
    assert server.connections == 3
    with pytest.raises(trio.ClosedResourceError):
        await conn.request("GET", "/")


async def test_http_client_limits_the_body(nursery: trio.Nursery) -> None:
    async def big(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        return 200, b"x" * 1000

    url = await serve(nursery, FakeHTTPServer(big))
    conn = HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), max_body_size=999)
    with trio.fail_after(5), pytest.raises(HTTPTransportError, match="larger than 999"):
        await conn.request("GET", "/")
    await conn.aclose()
