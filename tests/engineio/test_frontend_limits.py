"""The standalone front end under hostile input, in virtual time.

``handle_stream`` is driven over in-memory streams (``trio.testing.memory_stream_pair``), so
deadlines of minutes run instantly under the autojump clock; the accept loop is driven by a
fake listener. Every test fails if the front end logs an ERROR record: nothing a client
sends may look like a server bug.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from trio_sio.engineio import EngineServer, EngineSocket
from trio_sio.engineio.websocket import READ_SIZE, NativeWebSocket
from trio_sio.frontends.standalone import handle_stream, serve_listeners
from trio_sio.protocol.errors import ConnectionClosed

LOG = "trio_sio.frontends.standalone"


@pytest.fixture(autouse=True)
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test on any ERROR record of a ``trio_sio`` logger (a test that expects one
    checks it and calls ``caplog.clear()``)."""
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


async def start(nursery: trio.Nursery, **options: object) -> EngineServer:
    server = EngineServer(echo, **options)
    await nursery.start(server.run)
    return server


def connect(nursery: trio.Nursery, server: EngineServer) -> trio.abc.Stream:
    client, server_side = trio.testing.memory_stream_pair()
    nursery.start_soon(handle_stream, server, server_side)
    return client


async def read_response(stream: trio.abc.Stream, *, head_only: bool = False) -> bytes:
    """One whole response (Content-Length framed, or just its head for a HEAD request);
    what came before EOF if it is cut."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some()
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if head_only:
        length = 0
    while len(body) < length:
        chunk = await stream.receive_some()
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


async def at_eof(stream: trio.abc.Stream) -> bool:
    """True when the server closed: EOF (or a reset) before any byte."""
    try:
        return await stream.receive_some() == b""
    except trio.BrokenResourceError:
        return True


def get(target: str, *headers: str) -> bytes:
    lines = "".join(f"{line}\r\n" for line in ("Host: localhost", *headers))
    return f"GET {target} HTTP/1.1\r\n{lines}\r\n".encode("latin-1")


def post(target: str, body: bytes) -> bytes:
    head = f"POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


POLL = "/engine.io/?EIO=4&transport=polling"


# -- slow clients ---------------------------------------------------------------------------
async def test_one_byte_every_59_seconds_is_cut_at_the_head_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery)
    stream = connect(nursery, server)
    request = get(POLL)
    started = trio.current_time()

    async def trickle() -> None:
        for byte in request[:-1]:  # never complete
            try:
                await stream.send_all(bytes((byte,)))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            await trio.sleep(59)

    nursery.start_soon(trickle)
    response = await read_response(stream)
    assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close" in response.lower()
    assert trio.current_time() - started == pytest.approx(60, abs=0.01)
    assert await at_eof(stream)
    assert trio.current_time() - started <= 62


async def test_body_trickle_is_cut_at_the_request_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery)
    stream = connect(nursery, server)
    await stream.send_all(get(POLL))
    sid = json.loads((await read_response(stream)).split(b"\r\n\r\n", 1)[1][1:])["sid"]
    started = trio.current_time()
    request = post(f"{POLL}&sid={sid}", b"4" + b"x" * 99)
    head, _, body = request.partition(b"\r\n\r\n")
    await stream.send_all(head + b"\r\n\r\n")

    async def trickle() -> None:
        for byte in body:
            await trio.sleep(50)
            try:
                await stream.send_all(bytes((byte,)))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    nursery.start_soon(trickle)
    response = await read_response(stream)
    assert response.startswith(b"HTTP/1.1 408 ")
    assert trio.current_time() - started == pytest.approx(300, abs=0.01)


async def test_idle_connections_are_closed_without_an_answer(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery, http_keepalive_timeout=7)
    silent = connect(nursery, server)
    started = trio.current_time()
    assert await at_eof(silent)
    assert trio.current_time() - started == pytest.approx(7, abs=0.01)

    kept = connect(nursery, server)
    await kept.send_all(get("/elsewhere"))
    assert (await read_response(kept)).startswith(b"HTTP/1.1 404 ")
    answered = trio.current_time()
    await kept.send_all(get("/elsewhere"))  # reused at once: fine
    assert (await read_response(kept)).startswith(b"HTTP/1.1 404 ")
    assert await at_eof(kept)  # then idle: closed, no 408
    assert trio.current_time() - answered == pytest.approx(7, abs=0.01)


async def test_polling_over_keep_alive_is_not_disturbed(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """GETs that wait for the server's ping (25 s), POSTs of the pong, for over 10 minutes on
    one connection: well past every client timeout, none of which applies to that wait."""
    server = await start(nursery)
    stream = connect(nursery, server)
    await stream.send_all(get(POLL))
    first = await read_response(stream)
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    sid = json.loads(first.split(b"\r\n\r\n", 1)[1][1:])["sid"]
    started = trio.current_time()
    for _ in range(25):
        asked = trio.current_time()
        await stream.send_all(get(f"{POLL}&sid={sid}"))
        assert (await read_response(stream)).endswith(b"\r\n\r\n2")
        assert 20 <= trio.current_time() - asked <= 25.5
        await trio.sleep(1)  # a client in no hurry to answer, still under the idle timeout
        await stream.send_all(post(f"{POLL}&sid={sid}", b"3"))
        assert (await read_response(stream)).endswith(b"\r\n\r\nok")
    assert trio.current_time() - started > 600
    assert sid in server.sessions


async def test_long_poll_longer_than_every_client_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = await start(
        nursery,
        ping_interval=100,
        http_keepalive_timeout=2,
        http_headers_timeout=3,
        http_request_timeout=4,
    )
    stream = connect(nursery, server)
    await stream.send_all(get(POLL))
    sid = json.loads((await read_response(stream)).split(b"\r\n\r\n", 1)[1][1:])["sid"]
    # A GET with a body, part of which arrives while the server makes the GET wait.
    target = f"{POLL}&sid={sid}"
    await stream.send_all(
        f"GET {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nx".encode()
    )
    assert (await read_response(stream)).endswith(b"\r\n\r\n2")
    await trio.sleep(3)  # the rest of the body, within 4 s of the request plus the wait
    await stream.send_all(b"y")
    await stream.send_all(post(target, b"3"))
    assert (await read_response(stream)).endswith(b"\r\n\r\nok")


# -- bad requests -------------------------------------------------------------------------
WS_TARGET = "/engine.io/?EIO=4&transport=websocket"
WS = (
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Version: 13",
)

BAD_REQUESTS = {
    "malformed-origin": (get(POLL, "Origin: http://["), b"403"),
    "malformed-origin-preflight": (
        b"OPTIONS " + POLL.encode() + b" HTTP/1.1\r\nHost: x\r\nOrigin: http://[\r\n\r\n",
        b"204",  # as the npm cors package answers: without Access-Control-Allow-Origin
    ),
    "unparsable-target": (get("//[/"), b"400"),
    "unparsable-absolute-target": (get("http://[/engine.io/"), b"400"),
    "non-ascii-ws-key": (get(f"{WS_TARGET}", *WS, "Sec-WebSocket-Key: \u00e9t\u00e9"), b"400"),
    "short-ws-key": (get(WS_TARGET, *WS, "Sec-WebSocket-Key: abc"), b"400"),
    "no-ws-version": (get(WS_TARGET, *WS[:2], "Sec-WebSocket-Key: x"), b"400"),
    "ws-malformed-origin": (get(WS_TARGET, *WS, "Origin: http://["), b"403"),
    "head-poll": (b"HEAD " + POLL.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
    "head-404": (b"HEAD /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
    "bad-payload": (post(f"{POLL}&sid=nope", b"\xff\xfe"), b"400"),
    "huge-head": (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 100_000 + b"\r\n\r\n", b"431"),
    "tls-hello": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"400"),
}


@pytest.mark.parametrize("backend", ["native", "trio-websocket"])
@pytest.mark.parametrize(("request_bytes", "status"), BAD_REQUESTS.values(), ids=BAD_REQUESTS)
async def test_bad_requests_get_a_client_error_and_no_error_log(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    backend: str,
    request_bytes: bytes,
    status: bytes,
) -> None:
    server = await start(nursery, websocket=backend)
    stream = connect(nursery, server)
    await stream.send_all(request_bytes)
    response = await read_response(stream, head_only=request_bytes.startswith(b"HEAD"))
    assert response.startswith(b"HTTP/1.1 " + status), response
    if request_bytes.startswith(b"HEAD"):
        assert response.endswith(b"\r\n\r\n")  # no body, whatever Content-Length says
    if b"WebSocket-Key" in request_bytes and status == b"400":
        assert response.endswith(b"Bad WebSocket handshake")


async def test_cors_headers_only_for_allowed_origins(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery, cors_allowed_origins=["http://good.test"])
    stream = connect(nursery, server)
    await stream.send_all(get("/engine.io/?EIO=3&transport=polling", "Origin: http://evil.test"))
    refused = await read_response(stream)
    assert refused.startswith(b"HTTP/1.1 400 ") and b"access-control" not in refused.lower()
    await stream.send_all(get("/engine.io/?EIO=3&transport=polling", "Origin: http://good.test"))
    allowed = await read_response(stream)
    assert b"Access-Control-Allow-Origin: http://good.test" in allowed


# -- the WebSocket buffer -------------------------------------------------------------------
def masked_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    size = len(payload)
    first = bytes(((0x80 if fin else 0) | opcode,))
    if size < 126:
        head = first + bytes((0x80 | size,))
    elif size < 1 << 16:
        head = first + bytes((0x80 | 126,)) + size.to_bytes(2, "big")
    else:
        head = first + bytes((0x80 | 127,)) + size.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00" + payload  # a zero mask leaves the payload as is


async def test_native_websocket_buffer_stays_bounded(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A client that sends far more than the server reads: the server holds at most one
    message plus one read, the rest stays in the (flow-controlled) transport."""
    client, server_side = trio.testing.memory_stream_pair()
    limit = 100_000
    ws = NativeWebSocket(server_side, b"", limit)
    message = b"m" * 30_000
    fragmented = masked_frame(0x2, message[:1], fin=False) + masked_frame(0x0, message[1:])
    flood = (masked_frame(0x2, message) + fragmented) * 100
    nursery.start_soon(client.send_all, flood)
    peak = 0
    for _ in range(200):
        assert await ws.get_message() == message
        peak = max(peak, ws._decoder.buffered)
    assert peak <= limit + READ_SIZE
    # then a frame just over the limit: refused from its header, before its payload
    over = masked_frame(0x1, b"x" * (limit + 1))
    nursery.start_soon(client.send_all, over)
    with pytest.raises(ConnectionClosed, match="transport error"):
        await ws.get_message()
    assert ws._decoder.buffered <= limit + READ_SIZE
    received = b""
    while chunk := await client.receive_some():
        received += chunk
    assert received == b"\x88\x02\x03\xf1"  # close 1009, then EOF


# -- the accept loop --------------------------------------------------------------------------
class FakeListener(trio.abc.Listener[trio.abc.Stream]):
    """Hands out what is put in ``queue``: streams to serve, or errors to raise."""

    def __init__(self) -> None:
        self.queue, self._incoming = trio.open_memory_channel[trio.abc.Stream | OSError](100)
        self.closed = False

    async def accept(self) -> trio.abc.Stream:
        item = await self._incoming.receive()
        if isinstance(item, OSError):
            raise item
        return item

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()

    def client(self) -> trio.abc.Stream:
        """A new connection (its client side)."""
        client, server_side = trio.testing.memory_stream_pair()
        self.queue.send_nowait(server_side)
        return client


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> int:
    return sum(
        1
        for r in caplog.get_records("call")
        if r.name == LOG and r.levelno == level and text in r.getMessage()
    )


async def test_accept_backs_off_with_one_warning_per_episode(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start(nursery)
    listener = FakeListener()
    await nursery.start(serve_listeners, server, [listener])
    started = trio.current_time()
    for _ in range(6):
        listener.queue.send_nowait(OSError(errno.EMFILE, "Too many open files"))
    stream = listener.client()
    await stream.send_all(get(POLL))
    assert (await read_response(stream)).startswith(b"HTTP/1.1 200 ")
    assert trio.current_time() - started == pytest.approx(0.1 + 0.2 + 0.4 + 0.8 + 1 + 1)
    assert records(caplog, logging.WARNING, "cannot accept") == 1
    assert records(caplog, logging.INFO, "accepting connections again after 6") == 1
    for code in (errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):  # a second episode
        listener.queue.send_nowait(OSError(code, "out of resources"))
    started = trio.current_time()
    stream = listener.client()
    await stream.send_all(get("/elsewhere"))
    assert (await read_response(stream)).startswith(b"HTTP/1.1 404 ")
    assert trio.current_time() - started == pytest.approx(0.1 + 0.2 + 0.4)  # back-off reset
    assert records(caplog, logging.WARNING, "cannot accept") == 2


async def test_other_accept_errors_propagate(autojump_clock: trio.testing.MockClock) -> None:
    """An error that is not about resources means the listening socket is broken."""
    listener = FakeListener()
    listener.queue.send_nowait(OSError(errno.EBADF, "Bad file descriptor"))
    with pytest.raises(ExceptionGroup) as info:
        await serve_listeners(EngineServer(echo), [listener])
    assert info.group_contains(OSError, match="Bad file descriptor")
    assert listener.closed


async def test_connection_cap_closes_new_connections_at_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start(nursery, max_connections=2)
    listener = FakeListener()
    await nursery.start(serve_listeners, server, [listener])
    first, second = listener.client(), listener.client()
    for stream in (first, second):
        await stream.send_all(get("/elsewhere"))
        assert (await read_response(stream)).startswith(b"HTTP/1.1 404 ")
    for _ in range(3):
        refused = listener.client()
        assert await at_eof(refused)
    assert records(caplog, logging.WARNING, "closing new ones at once") == 1
    await first.aclose()
    await trio.sleep(1)  # the server notices the closed connection
    third = listener.client()
    await third.send_all(get("/elsewhere"))
    assert (await read_response(third)).startswith(b"HTTP/1.1 404 ")
    assert records(caplog, logging.INFO, "3 were refused") == 1


async def test_a_failing_connection_does_not_end_the_accept_loop(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start(nursery, max_connections=1)
    calls = 0

    async def handler(server: EngineServer, stream: trio.abc.Stream) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        await handle_stream(server, stream)

    listener = FakeListener()
    await nursery.start(serve_listeners, server, [listener], handler)
    assert await at_eof(listener.client())  # the failing one: closed
    stream = listener.client()  # and its slot was given back
    await stream.send_all(get("/elsewhere"))
    assert (await read_response(stream)).startswith(b"HTTP/1.1 404 ")
    assert records(caplog, logging.ERROR, "handler failed") == 1
    caplog.clear()
