"""Fuzzing the client with a hostile server.

Hypothesis draws what a server says: the handshake (valid, or not), then a list of replies,
each a valid Engine.IO/Socket.IO packet, a malformed one (bad types, bad JSON, wrong
attachment counts, unknown namespaces, stray acks, huge ids), random text or random bytes,
and for WebSocket a deflate bomb under permessage-deflate or raw garbage bytes in the
stream. The hostile server answers a real :class:`trio_sio.Client` over an in-memory
connector: each polling GET gets the next reply as its body (or an HTTP error), each
WebSocket frame carries the next reply. One ``trio.run`` under a ``MockClock`` per example.

After each example:

- nothing but the documented errors (``ConnectError``, ``ConnectionRefused``,
  ``ConnectionClosed``, ``AckTimeoutError``) came out of the client, and ``async with``
  returned within its bounds, or within the caller's (a cancel scope) plus the client's
  closing grace (virtual time);
- every task of the client ended (the run returned);
- no ``trio_sio`` logger wrote a record at ERROR or above.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import h11
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_sio

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: 20 MiB of zeros, deflated (about 20 KiB): inflates past the client's 16 MiB limit.
BOMB = zlib.compressobj(9, zlib.DEFLATED, -15).compress(b"\x00" * (20 * 1024 * 1024))


def _open(upgrades: list[str], ping_interval: int = 1000) -> str:
    info = {
        "sid": "hostile",
        "upgrades": upgrades,
        "pingInterval": ping_interval,
        "pingTimeout": 1000,
        "maxPayload": 1_000_000,
    }
    return "0" + json.dumps(info)


# -- what the server says --------------------------------------------------------------------

VALID = [
    "40" + json.dumps({"sid": "abc"}),
    '42["x",1,"two",{"3":[4]}]',
    '42["x"]',
    '421["x",{"ask":true}]',
    "430[]",
    '431["late ack"]',
    "2",
    "6",
    "41",
    '44{"message":"nope","data":{"code":1}}',
    '451-["bin",{"_placeholder":true,"num":0}]',
    '40/chat,{"sid":"c"}',
    '42/chat,["x",1]',
    "1",
]
MALFORMED = [
    "",
    "9",
    "4",
    "49",
    "42",
    "42[",
    '42{"x":1}',
    "42[1,2]",
    "42[]",
    '4299999999999999999999["x"]',
    '42-1["x"]',
    '452-["x",{"_placeholder":true,"num":7}]',
    '451-["x",{"_placeholder":true,"num":"a"}]',
    "45999999-[]",
    '40{"sid":5}',
    "40[]",
    "43",
    '43x["a"]',
    "44",
    '44"plain"',
    '42/nowhere,["x"]',
    "40/chat",
    "0{}",
    "0" + json.dumps({"sid": "other", "upgrades": "websocket"}),
    "5",
    "3probe",
    "4\x00\xff",
    "\ufeff42",
]


@st.composite
def reply(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.sampled_from(["valid", "valid", "malformed", "malformed", "text", "bytes"]))
    if kind == "valid":
        text: str = draw(st.sampled_from(VALID))
        return text
    if kind == "malformed":
        text = draw(st.sampled_from(MALFORMED))
        return text
    if kind == "text":
        return draw(st.text(max_size=40))
    return draw(st.binary(max_size=40))


@dataclass(frozen=True)
class Plan:
    transport: str  # "polling" or "websocket"
    handshake: str  # the first message: an OPEN packet, valid or not
    replies: list[str | bytes]
    statuses: list[int]  # polling: the status of each GET after the handshake
    deflate: bool  # websocket: accept permessage-deflate
    bomb: bool  # websocket: send a deflate bomb (needs deflate)
    garbage: bytes  # websocket: raw bytes written after the replies


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    transport = draw(st.sampled_from(["polling", "websocket"]))
    handshake = draw(
        st.one_of(
            st.just(_open([])),
            st.just(_open([])),
            st.sampled_from([_open(["websocket"]), _open([], 0), "0{}", "0", "40", "x"]),
            st.text(max_size=20),
        )
    )
    replies = draw(st.lists(reply(), max_size=25))
    statuses = draw(st.lists(st.sampled_from([200, 200, 200, 200, 400, 500, 302]), max_size=25))
    deflate = draw(st.booleans())
    return Plan(
        transport,
        handshake,
        replies,
        statuses,
        deflate,
        deflate and draw(st.booleans()),
        draw(st.binary(max_size=30)),
    )


# -- the hostile server ----------------------------------------------------------------------


def _frame(data: str | bytes, *, compressed: bool = False) -> bytes:
    payload = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    first = 0x81 if isinstance(data, str) else 0x82
    if compressed:
        first |= 0x40
    n = len(payload)
    if n < 126:
        head = bytes([first, n])
    elif n < 65536:
        head = bytes([first, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, 127]) + n.to_bytes(8, "big")
    return head + payload


class HostileServer:
    def __init__(self, nursery: trio.Nursery, plan: Plan) -> None:
        self._nursery = nursery
        self.plan = plan
        self._replies = iter(plan.replies)
        self._statuses = iter(plan.statuses)
        self._handshaken = False

    async def connect(self, host: str, port: int, ssl_context: Any) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        client, server = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self._serve, server)
        return client

    async def _serve(self, stream: trio.abc.Stream) -> None:
        try:
            await self._serve_http(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve_http(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                headers = {k.lower(): v for k, v in event.headers}
                if headers.get(b"upgrade", b"").lower() == b"websocket":
                    await self._websocket(stream, headers)
                    return
                request = event
                continue
            if isinstance(event, h11.EndOfMessage):
                body = self._answer(request)
                status = 200 if body is not None else next(self._statuses, 200)
                if body is None:
                    body = self._next_body() if status == 200 else b"no"
                out = conn.send(
                    h11.Response(
                        status_code=status,
                        headers=[("Content-Length", str(len(body))), ("Set-Cookie", "a=b")],
                    )
                )
                out = (out or b"") + (conn.send(h11.Data(data=body)) or b"")
                out += conn.send(h11.EndOfMessage()) or b""
                await stream.send_all(out)
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
                continue
            if isinstance(event, h11.ConnectionClosed):
                return

    def _answer(self, request: h11.Request) -> bytes | None:
        """The body of a handshake GET or a POST, or None for a GET of the session."""
        if request.method == b"POST":
            return b"ok"
        if not self._handshaken or b"sid=" not in request.target:
            self._handshaken = True
            return self.plan.handshake.encode("utf-8", "surrogatepass")
        return None

    def _next_body(self) -> bytes:
        item = next(self._replies, None)
        if item is None:
            return b"1"  # CLOSE: the end of the plan
        if isinstance(item, bytes):
            return b"b" + base64.b64encode(item) + b"\x1e" + item
        return item.encode("utf-8", "surrogatepass")

    async def _websocket(self, stream: trio.abc.Stream, headers: dict[bytes, bytes]) -> None:
        key = headers.get(b"sec-websocket-key", b"")
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        extension = b""
        if self.plan.deflate and b"permessage-deflate" in headers.get(
            b"sec-websocket-extensions", b""
        ):
            extension = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept
            + b"\r\n"
            + extension
            + b"\r\n"
        )
        await stream.send_all(_frame(self.plan.handshake))
        for item in self.plan.replies:
            await stream.send_all(_frame(item))
        if extension and self.plan.bomb:
            await stream.send_all(_frame(BOMB, compressed=True))
        await stream.send_all(self.plan.garbage)
        await stream.send_all(_frame("1"))


# -- the check -------------------------------------------------------------------------------


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def capture_errors() -> Iterator[list[logging.LogRecord]]:
    handler = _Errors()
    logger = logging.getLogger("trio_sio")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


EXPECTED = (
    trio_sio.ConnectError,
    trio_sio.ConnectionRefused,
    trio_sio.ConnectionClosed,
    trio_sio.AckTimeoutError,
)


async def _play(plan: Plan) -> None:
    async with trio.open_nursery() as nursery:
        server = HostileServer(nursery, plan)
        client = trio_sio.Client(
            "http://test",
            transports=[plan.transport],
            namespaces=["/", "/chat"],
            connector=server.connect,
            reconnection_attempts=2,
            reconnection_delay=0.5,
            connect_timeout=5,
        )
        got: list[Any] = []
        client.on("x", lambda *args: got.append(args) or "ack")
        client.on_any(lambda event, *args: None)
        # Virtual time. Connecting has no bound of its own (a server that opens sessions
        # but never answers CONNECT keeps the client trying, as socket.io-client does): the
        # caller's bound applies, and once it fires the client must be gone quickly.
        with trio.fail_after(120):
            with trio.move_on_after(60):
                try:
                    async with client:
                        await client.emit("hello", 1)
                        await client.emit_with_ack("q", timeout=2)
                except EXPECTED:
                    pass
        nursery.cancel_scope.cancel()


@settings(
    max_examples=int(__import__("os").environ.get("CLIENT_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=plans())
def test_fuzz_client(plan: Plan) -> None:
    with capture_errors() as errors:
        trio.run(_play, plan, clock=trio.testing.MockClock(autojump_threshold=0))
    assert not errors, [r.getMessage() for r in errors]


@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_well_behaved_plan_connects(transport: str) -> None:
    """The harness itself: a plan of valid replies gets the client connected."""
    plan = Plan(transport, _open([]), ["40" + json.dumps({"sid": "a"})], [], False, False, b"")
    connected: list[bool] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = HostileServer(nursery, plan)
            client = trio_sio.Client(
                "http://test",
                transports=[transport],
                connector=server.connect,
                reconnection=False,
            )
            async with client:
                connected.append(client.connected)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert connected == [True]


def test_deflate_bomb_closes_the_websocket() -> None:
    plan = Plan("websocket", _open([]), ["40" + json.dumps({"sid": "a"})], [], True, True, b"")
    with capture_errors() as errors:
        trio.run(_play, plan, clock=trio.testing.MockClock(autojump_threshold=0))
    assert not errors


class _BadAccept(HostileServer):
    async def _websocket(self, stream: trio.abc.Stream, headers: dict[bytes, bytes]) -> None:
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSB0b2tlbg==\r\n\r\n"
        )
        await trio.sleep_forever()


def test_bad_accept_token_is_a_connect_error() -> None:
    """A regression found by the fuzzer: trio-websocket let h11's LocalProtocolError out."""
    plan = Plan("websocket", _open([]), [], [], False, False, b"")
    caught: list[BaseException] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = _BadAccept(nursery, plan)
            client = trio_sio.Client(
                "http://test",
                transports=["websocket"],
                connector=server.connect,
                reconnection=False,
            )
            try:
                async with client:
                    pass
            except trio_sio.ConnectError as exc:
                caught.append(exc)
            nursery.cancel_scope.cancel()

    with capture_errors() as errors:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(caught) == 1 and not errors
