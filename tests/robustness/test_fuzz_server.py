"""Fuzzing the real server with random sequences of valid and invalid traffic.

Hypothesis generates a list of actions (handshakes, polling GETs and POSTs, WebSocket frames
and raw bytes, upgrades, closes of every kind, raw HTTP, pauses); one ``trio.run`` under a
``MockClock`` plays them against a real :class:`trio_sio.Server` over
:class:`trio_sio.testing.MemoryNetwork`, through the server's own HTTP front end. Time only
moves when every task is blocked (``autojump_threshold=0``), and the driver lets the server
settle (``wait_all_tasks_blocked``) after each action, so an example replays exactly.

After each example:

- the server is still running (nothing escaped its nursery);
- a well-behaved :class:`trio_sio.Client`, connected before the fuzzing, was never
  disconnected and still gets an ack back;
- every request got an answer, and everything the server sent was valid HTTP, WebSocket and
  Engine.IO;
- once the fuzzing connections are gone, their sessions and sockets are gone too;
- no ``trio_sio`` logger wrote a record at ERROR or above.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from robustness_support import PATH, capture_errors, compression_options, make_server
from robustness_wire import (
    GOOD_KEY,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    RawWebSocket,
    Response,
    WireViolation,
    build_request,
    check_payload_body,
    client_frame,
    close_frame,
    decoded_body,
    deflate,
    open_websocket,
    read_response,
)

import trio_sio
from trio_sio.protocol.engineio import decode_open, decode_packet, decode_payload
from trio_sio.protocol.errors import RemoteProtocolError
from trio_sio.protocol.socketio import MAX_DEPTH
from trio_sio.testing import MemoryNetwork

PING_INTERVAL = 5.0
PING_TIMEOUT = 5.0
UPGRADE_TIMEOUT = 5.0
CONNECT_TIMEOUT = 20.0
#: virtual seconds a request may go unanswered before it counts as never answered. A GET
#: is answered by the next ping at the latest; a POST once its packets were dispatched.
HANG = 40.0
#: virtual seconds for every abandoned session to be noticed and closed.
REAP = PING_INTERVAL + PING_TIMEOUT + UPGRADE_TIMEOUT + CONNECT_TIMEOUT + 5.0

# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handshake:
    """Open a session (or fail to) with these request details."""

    websocket: bool
    query: str  # "{t}" stands for the transport
    origin: bytes | None = None
    key: bytes | None = GOOD_KEY.encode()
    version: bytes | None = b"13"
    answers_pings: bool = True  # over WebSocket, by itself
    extensions: bytes | None = None  # Sec-WebSocket-Extensions


@dataclass(frozen=True)
class Send:
    """Engine.IO packets (``bytes``: a binary message): one frame each over the session's
    WebSocket, or one POST for all of them over polling."""

    session: int
    packets: tuple[str | bytes, ...]


@dataclass(frozen=True)
class Post:
    """A raw POST body on the session's sid (whatever its transport is now)."""

    session: int
    body: bytes


@dataclass(frozen=True)
class Get:
    """A polling GET on the session's sid (in the background: it may park)."""

    session: int
    accept_encoding: bytes | None = None


@dataclass(frozen=True)
class WsBytes:
    """Raw bytes on the session's WebSocket (or on a fresh connection if it has none)."""

    session: int
    data: bytes


@dataclass(frozen=True)
class Upgrade:
    """A WebSocket with the session's sid, then these frames (``2probe``, ``5``: a proper
    upgrade)."""

    session: int
    steps: tuple[str, ...]


@dataclass(frozen=True)
class Close:
    """End the session: a CLOSE packet, a dropped connection, or a WebSocket close frame."""

    session: int
    how: Literal["packet", "drop", "ws-close"]


@dataclass(frozen=True)
class RawHttp:
    """Raw bytes on a new connection; then close it or leave it open."""

    data: bytes
    close: bool


@dataclass(frozen=True)
class Burst:
    """Several polling requests on one sid at once (``None``: a GET; bytes: a POST body)."""

    session: int
    requests: tuple[bytes | None, ...]


@dataclass(frozen=True)
class Pipeline:
    """Several requests on the session's sid, written at once on one kept-alive connection
    (``None``: a GET; bytes: a POST body, chunked if ``chunked``); every one must be answered,
    in order."""

    session: int
    requests: tuple[bytes | None, ...]
    chunked: bool


@dataclass(frozen=True)
class GoodEcho:
    """The well-behaved client does an ack round trip, in the middle of it all."""


@dataclass(frozen=True)
class Sleep:
    seconds: float


Action = (
    Handshake
    | Send
    | Post
    | Get
    | WsBytes
    | Upgrade
    | Close
    | RawHttp
    | Burst
    | Pipeline
    | GoodEcho
    | Sleep
)

# -- strategies ------------------------------------------------------------------------------

NAMESPACES = ["", "/custom,", "/admin,", "/nope,", "/custom", "/", "/,", "/custom,/x,"]
EVENTS = ["echo", "join", "broadcast", "binary", "ask", "kick", "close-me", "nope"]
RESERVED = ["connect", "disconnect", "disconnecting", "newListener", "removeListener"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


ack_ids = st.one_of(
    st.just(""),
    st.integers(0, 20).map(str),
    st.sampled_from(["999999999999999", "1000000000000000", "0" * 30 + "1"]),
    st.integers(16, 40).map(lambda n: "9" * n),
)


@st.composite
def event_packet(draw: st.DrawFn, binary: bool = False) -> tuple[str | bytes, ...]:
    """An EVENT (or BINARY_EVENT with placeholders and attachments, counts possibly lying)."""
    ns = draw(st.sampled_from(NAMESPACES))
    ack = draw(ack_ids)
    event = draw(st.sampled_from(EVENTS + RESERVED) | st.text(max_size=5) | json_values)
    args = draw(st.lists(json_values, max_size=3))
    if not binary:
        data = dumps([event, *args]) if draw(st.integers(0, 9)) else dumps(draw(json_values))
        return (f"42{ns}{ack}{data}",)
    announced = draw(st.integers(0, 4) | st.sampled_from([10, 11, 9999999999]))
    nums = draw(st.lists(st.integers(-1, 6), max_size=3))
    placeholders: list[Any] = [{"_placeholder": True, "num": n} for n in nums]
    if draw(st.booleans()):
        placeholders.append({"_placeholder": True, "num": "0"})
    data = dumps([event, *args, *placeholders])
    sent = draw(st.integers(0, 5))
    attachments = tuple(draw(st.binary(max_size=20)) for _ in range(sent))
    return (f"45{announced}-{ns}{ack}{data}", *attachments)


@st.composite
def other_packet(draw: st.DrawFn) -> tuple[str | bytes, ...]:
    ns = draw(st.sampled_from(NAMESPACES))
    kind = draw(st.integers(0, 10))
    if kind == 10:  # CONNECT asking for recovery, with malformed pids and offsets
        pid = draw(st.sampled_from(RECOVERY_PIDS) | st.text(max_size=8) | json_values)
        offset = draw(st.sampled_from(RECOVERY_OFFSETS) | st.text(max_size=8) | json_values)
        return (f"40{ns}{dumps({'pid': pid, 'offset': offset})}",)
    if kind == 0:  # CONNECT, with or without auth
        auth = draw(st.none() | json_values)
        return (f"40{ns}{'' if auth is None else dumps(auth)}",)
    if kind == 1:
        return (f"41{ns}",)
    if kind == 2:  # ACK, maybe for nothing
        return (f"43{ns}{draw(ack_ids)}{dumps(draw(st.lists(json_values, max_size=2)))}",)
    if kind == 3:  # CONNECT_ERROR: server-only
        return (f"44{ns}{dumps({'message': 'x'})}",)
    if kind == 4:  # BINARY_ACK
        n = draw(st.integers(0, 2))
        return (f'46{n}-{ns}1[{{"_placeholder":true,"num":0}}]', *([b"a"] * n))
    if kind == 5:  # unknown packet types
        return (draw(st.sampled_from(["47", "48", "49", "4x", "4", "4-", "45", "45-"])),)
    if kind == 6:  # deep nesting, echoed back through an ack (to_wire and the encoder)
        depth = draw(st.sampled_from(DEPTHS))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        inner = opener * depth + "1" + closer * depth
        return (f'42{draw(st.sampled_from(["", "5"]))}["echo",{inner}]',)
    if kind == 7:  # huge ack ids
        return (f'42{"1" + "0" * draw(st.integers(14, 40))}["echo"]',)
    if kind == 8:  # anything
        return ("4" + draw(st.text(max_size=30)),)
    # text with lone surrogates: invalid UTF-8 on the wire
    return (f'42["echo","\ud800{draw(st.text(max_size=5))}"]',)


#: Nesting around the limit every parser and to_wire agree on, and far beyond it.
DEPTHS = [50, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 500, 900, 999, 1000, 10_000, 100_000]
#: Offsets with digits that str.isdigit() takes and int() refuses or reads as another number.
RECOVERY_OFFSETS = [
    "x-\u00b2",
    "x-\u00b9\u00b2\u00b3",
    "x-\u0663",
    "x-\uff11",
    "x-",
    "x--1",
    "9" * 40,
]
RECOVERY_PIDS = ["", "x" * 200, "\u00e9", "pid\u0000"]

ENGINE_CONTROL = ["2", "3", "2probe", "3probe", "5", "6", "1", "0", '0{"sid":"x"}', "7", "", "4"]

#: Packets after which the connection (or the session) must end, or may have ended.
FATAL = [
    '44{"message":"x"}',
    "44/custom,",
    "4x",
    "47",
    '42["close-me"]',
    '42/custom,["close-me"]',
    '42["kick"]',
    "1",
    "5",
    "0",
    '451-["x",{"_placeholder":true,"num":5}]',
]


@st.composite
def fatal_then_more(draw: st.DrawFn) -> tuple[str | bytes, ...]:
    """A fatal packet, then more traffic (a CONNECT, most often) in the same batch."""
    after = draw(st.sampled_from(["40", "40/custom,", "40/admin,", '42["echo",1]', "41", "2", "3"]))
    return (draw(st.sampled_from(FATAL)), after)


#: Proper traffic, so that examples get past the first packet into deeper states.
VALID: list[tuple[str | bytes, ...]] = [
    ("40",),
    ("40/custom,",),
    ('40{"token":"x"}',),
    ("40/admin,",),
    ('42["echo",1]',),
    ('421["echo",{"a":[1,2]}]',),
    ('42/custom,7["echo","x"]',),
    ('42["join","room"]',),
    ('42["broadcast","hello"]',),
    ('42/custom,["broadcast",null]',),
    ('42["binary"]',),
    ('423["ask"]',),
    ("431[1]",),
    ('451-["echo",{"_placeholder":true,"num":0}]', b"\x00\x01"),
    ('4512["echo",{"_placeholder":true,"num":0}]', b""),
    ('461-0[{"_placeholder":true,"num":0}]', b"x"),
    ("41",),
    ("41/custom,",),
    ("3",),
    ("2",),
    ("6",),
]


def weighted(*choices: tuple[int, Callable[[], st.SearchStrategy[Any]]]) -> st.SearchStrategy[Any]:
    """``one_of`` with weights. Hypothesis caches strategies and merges identical branches,
    so each copy of a branch is made a distinct object (an identity ``map``)."""
    return st.one_of(*[make().map(_same) for weight, make in choices for _ in range(weight)])


def _same(value: Any) -> Any:
    return value


engine_packets = st.lists(
    weighted(
        (14, lambda: st.sampled_from(VALID)),
        (1, event_packet),
        (1, other_packet),
        (1, lambda: event_packet(binary=True)),
        (1, fatal_then_more),
        (1, lambda: st.sampled_from(ENGINE_CONTROL).map(lambda p: (p,))),
        (1, lambda: st.binary(max_size=10).map(lambda b: (b,))),
    ),
    min_size=1,
    max_size=4,
).map(lambda groups: tuple(p for group in groups for p in group))

raw_bodies = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"4\xff\xfe",
            b'42["echo","\xed\xa0\x80"]',
            b"bnot base64!",
            b"b",
            b"\x1e\x1e",
            b"",
            b"40\x1e",
            b"4" * 2_000_000,  # over max_http_buffer_size
            b"\x1e".join([b'42["echo"]'] * 3000),
            b"\x1e".join([b"6"] * 10_001),  # over max_packets_per_payload
        ]
    ),
)

ws_garbage = st.one_of(
    st.binary(min_size=1, max_size=30),
    st.sampled_from(
        [
            client_frame(OP_TEXT, b"4\xc3\x28"),  # invalid UTF-8
            client_frame(OP_TEXT, b"40", masked=False),
            client_frame(OP_TEXT, b"40", rsv=4),
            client_frame(OP_CONT, b"40"),
            client_frame(OP_TEXT, b"4", fin=False),  # a fragment, then anything
            client_frame(OP_TEXT, b"4", fin=False) + client_frame(OP_TEXT, b"2"),
            client_frame(OP_TEXT, b"4", fin=False) + client_frame(OP_CONT, b'2["echo"]'),
            client_frame(OP_PING, b"x" * 126),
            client_frame(OP_PING, b"hi"),
            client_frame(OP_CLOSE, b"\x03"),
            client_frame(OP_CLOSE, b"\x03\xe8\xff"),
            client_frame(0x3, b"x"),
            client_frame(OP_BINARY, b"\x00" * 10),
            b"\x81\xff" + b"\x7f" * 8 + b"\x00\x00\x00\x00",  # 2**63-ish length
            b"\x81\xfe\xff",  # a header cut short
            client_frame(OP_TEXT, b"4" * 1_000_001),  # over max_http_buffer_size
            # permessage-deflate (a protocol error unless it was agreed)
            client_frame(OP_TEXT, deflate(b'42["echo","compressed"]'), rsv=4),
            client_frame(OP_BINARY, deflate(b"\x00" * 100), rsv=4),
            client_frame(OP_TEXT, deflate(b"4" + b"0" * 2_000_000), rsv=4),  # inflates too big
            client_frame(OP_TEXT, b"\xff\xfe\xfd not deflate", rsv=4),
            client_frame(OP_TEXT, deflate(b"4\xc3\x28"), rsv=4),  # inflates to bad UTF-8
            client_frame(OP_TEXT, deflate(b"42")[:2], rsv=4, fin=False)
            + client_frame(OP_CONT, deflate(b"42")[2:], rsv=4),  # RSV1 on a continuation
            client_frame(OP_PING, b"", rsv=4),
        ]
    ),
)

raw_http = st.one_of(
    st.binary(max_size=60),
    st.sampled_from(
        [
            b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n",
            b"POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nContent-Length: 5\r\n\r\n4",
            b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: \xff\r\n\r\n",
            b"GET /socket.io/?EIO=4&transport=polling&sid=%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /socket.io/?EIO=4&transport=polling HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"GET /socket.io/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
            b"GET \xff HTTP/1.1\r\nHost: x\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"HEAD /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n",
            b"OPTIONS /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n"
            b"Origin: http://x\r\nAccess-Control-Request-Headers: \xff\xfe\r\n\r\n",
            b"DELETE /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\n"
            b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n40",
            b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX: "
            + b"a" * 20_000
            + b"\r\n\r\n",
            b"GET http://x/socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"GET /socket.io/?EIO=4&transport=polling&EIO=4&sid=&sid=x HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        ]
    ),
)

QUERIES = [
    "EIO=4&transport={t}",
    "EIO=4&transport={t}&t=abc&j=1",
    "EIO=3&transport={t}",
    "transport={t}",
    "EIO=4&transport={t}&sid=unknown",
    "EIO=4&transport=flash",
    "EIO=abc&transport={t}",
    "EIO=4&transport={t}&EIO=3",
]
ORIGINS = [None, b"http://testserver", b"http://evil.example", b"http://[", b"\xff\xfe", b""]
EXTENSIONS = [
    None,
    b"permessage-deflate",
    b"permessage-deflate; client_max_window_bits",
    b"permessage-deflate; server_max_window_bits=9; client_max_window_bits=8",
    b"permessage-deflate; server_max_window_bits=99, permessage-deflate",
    b'permessage-deflate; client_max_window_bits="15"; x-unknown',
    b"permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    b"x-webkit-deflate-frame, permessage-deflate;;;,",
    b"permessage-deflate; client_max_window_bits=\xff",
]
ACCEPT_ENCODINGS = [None, b"gzip", b"deflate", b"gzip;q=0, deflate;q=0.5", b"br", b"*", b"gzip;q=x"]

handshakes = st.builds(
    Handshake,
    websocket=st.booleans(),
    query=st.sampled_from(QUERIES),
    origin=st.sampled_from(ORIGINS),
    key=st.sampled_from([GOOD_KEY.encode(), b"\xe9t\xe9 key==", b"", None]),
    version=st.sampled_from([b"13", b"8", None]),
    answers_pings=st.booleans(),
    extensions=st.sampled_from(EXTENSIONS),
)


def _payload(packets: tuple[str | bytes, ...]) -> bytes:
    """A polling body for these packets (binary ones base64-encoded)."""
    records = [p if isinstance(p, str) else "b" + base64.b64encode(p).decode() for p in packets]
    return "\x1e".join(records).encode("utf-8", "surrogatepass")


targets = st.integers(0, 7)
upgrade_steps = st.one_of(
    st.just(("2probe", "5")),
    st.lists(st.sampled_from(["2probe", "5", "3probe", "2", "6", "40", "1", "x"]), max_size=3).map(
        tuple
    ),
)

actions: st.SearchStrategy[Action] = weighted(
    (5, lambda: st.builds(Send, targets, engine_packets)),
    (2, lambda: st.builds(Get, targets, st.sampled_from(ACCEPT_ENCODINGS))),
    (1, lambda: st.builds(Post, targets, raw_bodies)),
    (1, lambda: st.builds(Upgrade, targets, upgrade_steps)),
    (1, lambda: st.builds(Close, targets, st.sampled_from(["packet", "drop", "ws-close"]))),
    (1, lambda: handshakes),
    (1, lambda: st.builds(WsBytes, targets, ws_garbage)),
    (1, lambda: st.builds(RawHttp, raw_http, st.booleans())),
    (
        1,
        lambda: st.builds(
            Burst,
            targets,
            st.lists(st.none() | raw_bodies | engine_packets.map(_payload), max_size=4).map(tuple),
        ),
    ),
    (
        1,
        lambda: st.builds(
            Pipeline,
            targets,
            st.lists(st.none() | engine_packets.map(_payload), min_size=1, max_size=3).map(tuple),
            st.booleans(),
        ),
    ),
    (1, lambda: st.just(GoodEcho())),
    (1, lambda: st.builds(Sleep, st.sampled_from([0.05, 0.5, 1.5, 6.0, 12.0]))),
)

# -- the driver ------------------------------------------------------------------------------


class _Prefixed(trio.abc.Stream):
    """A stream that yields ``prefix`` first (bytes already read past a response)."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            data, self._prefix = self._prefix, b""
            return data
        return bytes(await self._stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


@dataclass(eq=False)
class FuzzSession:
    sid: str
    ws: RawWebSocket | None = None
    streams: set[trio.abc.Stream] = field(default_factory=set)


class Driver:
    """Plays actions against the server and collects what went wrong."""

    def __init__(self, nursery: trio.Nursery, network: MemoryNetwork) -> None:
        self.nursery = nursery
        self.network = network
        self.sessions: list[FuzzSession] = []
        self.problems: list[str] = []
        self.streams: list[trio.abc.Stream] = []
        self.aborted: set[trio.abc.Stream] = set()
        self.websockets: list[RawWebSocket] = []
        self.outstanding = 0
        self.all_answered = trio.Event()
        self.good: trio_sio.Client | None = None

    async def connect(self) -> trio.abc.Stream:
        stream = await self.network.connect("testserver", 80, None)
        self.streams.append(stream)
        return stream

    def pick(self, index: int) -> FuzzSession | None:
        return self.sessions[index % len(self.sessions)] if self.sessions else None

    # -- background requests -------------------------------------------------------------
    def spawn(self, label: str, fn: Any, *args: Any) -> None:
        self.outstanding += 1
        self.all_answered = trio.Event()
        self.nursery.start_soon(self._guarded, label, fn, args)

    async def _guarded(self, label: str, fn: Any, args: tuple[Any, ...]) -> None:
        try:
            with trio.fail_after(HANG):
                await fn(*args)
        except trio.TooSlowError:
            self.problems.append(f"{label}: no answer after {HANG} s")
        except WireViolation as exc:
            self.problems.append(f"{label}: {exc}")
        finally:
            self.outstanding -= 1
            if not self.outstanding:
                self.all_answered.set()

    async def http(
        self,
        session: FuzzSession | None,
        label: str,
        method: str,
        target: str,
        headers: list[tuple[str | bytes, str | bytes]] | None = None,
        body: bytes | None = None,
    ) -> Response | None:
        stream = await self.connect()
        if session is not None:
            session.streams.add(stream)
        try:
            await stream.send_all(build_request(method, target, headers or [], body))
            response = await read_response(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            response = None
        finally:
            if session is not None:
                session.streams.discard(stream)
            await trio.aclose_forcefully(stream)
        if response is None:
            if stream not in self.aborted:
                self.problems.append(f"{label}: connection closed without an answer")
        elif response.status >= 500:
            self.problems.append(f"{label}: answered {response.status} {response.body!r}")
        elif method == "GET" and response.status == 200:
            check_payload_body(decoded_body(response))
        return response

    async def pipeline(self, session: FuzzSession, action: Pipeline) -> None:
        target = f"{PATH}?EIO=4&transport=polling&sid={session.sid}"
        data = b"".join(
            build_request(
                "GET" if body is None else "POST", target, body=body, chunked=action.chunked
            )
            for body in action.requests
        )
        stream = await self.connect()
        session.streams.add(stream)
        reader: trio.abc.Stream = stream
        try:
            await stream.send_all(data)
            for index, body in enumerate(action.requests):
                response = await read_response(reader)
                if response is None:
                    # Only after an answer with "Connection: close" may the rest go unanswered.
                    if stream not in self.aborted:
                        self.problems.append(f"{action!r}: request {index} not answered")
                    return
                if response.status >= 500:
                    self.problems.append(f"{action!r}: answered {response.status}")
                elif body is None and response.status == 200:
                    check_payload_body(decoded_body(response))
                if response.headers.get("connection", "").lower() == "close":
                    return
                # Bytes read past this response belong to the next one.
                reader = _Prefixed(stream, response.leftover)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            session.streams.discard(stream)
            await trio.aclose_forcefully(stream)

    def start_reader(self, ws: RawWebSocket, label: str) -> None:
        self.websockets.append(ws)

        async def read() -> None:
            try:
                await ws.reader()
            except WireViolation as exc:
                self.problems.append(f"{label}: {exc}")

        self.nursery.start_soon(read)

    # -- actions -------------------------------------------------------------------------
    async def play(self, action: Action) -> None:
        if isinstance(action, Handshake):
            await self.handshake(action)
        elif isinstance(action, Send):
            await self.send(action)
        elif isinstance(action, Post):
            session = self.pick(action.session)
            if session is not None:
                target = f"{PATH}?EIO=4&transport=polling&sid={session.sid}"
                label = repr(action)
                self.spawn(label, self.http, session, label, "POST", target, [], action.body)
        elif isinstance(action, Get):
            session = self.pick(action.session)
            if session is not None:
                target = f"{PATH}?EIO=4&transport=polling&sid={session.sid}"
                headers: list[tuple[str | bytes, str | bytes]] = []
                if action.accept_encoding is not None:
                    headers.append(("Accept-Encoding", action.accept_encoding))
                label = repr(action)
                self.spawn(label, self.http, session, label, "GET", target, headers)
        elif isinstance(action, WsBytes):
            session = self.pick(action.session)
            if session is not None and session.ws is not None:
                await session.ws.send_raw(action.data)
            else:
                await self.raw_http(RawHttp(action.data, close=True))
        elif isinstance(action, Upgrade):
            await self.upgrade(action)
        elif isinstance(action, Close):
            await self.close(action)
        elif isinstance(action, RawHttp):
            await self.raw_http(action)
        elif isinstance(action, Burst):
            session = self.pick(action.session)
            if session is not None:
                target = f"{PATH}?EIO=4&transport=polling&sid={session.sid}"
                for body in action.requests:
                    method = "GET" if body is None else "POST"
                    label = f"{action!r}: {method}"
                    self.spawn(label, self.http, session, label, method, target, [], body)
        elif isinstance(action, Pipeline):
            session = self.pick(action.session)
            if session is not None:
                self.spawn(repr(action), self.pipeline, session, action)
        elif isinstance(action, GoodEcho):
            if self.good is not None:
                try:
                    with trio.fail_after(20):
                        reply = await self.good.emit_with_ack("echo", "mid", timeout=10)
                except Exception as exc:
                    reply = exc
                if reply != "mid":
                    self.problems.append(f"{action!r}: the good client got {reply!r}")
        else:
            await trio.sleep(action.seconds)

    async def handshake(self, action: Handshake) -> None:
        transport = "websocket" if action.websocket else "polling"
        target = f"{PATH}?{action.query.format(t=transport)}"
        extra: list[tuple[str | bytes, str | bytes]] = []
        if action.origin is not None:
            extra.append(("Origin", action.origin))
        if action.extensions is not None:
            extra.append(("Sec-WebSocket-Extensions", action.extensions))
        label = repr(action)
        if not action.websocket:
            with trio.fail_after(HANG):
                response = await self.http(None, label, "GET", target, extra)
            if response is not None and response.status == 200:
                open_packet = decode_payload(response.body)[0]
                self.sessions.append(FuzzSession(decode_open(open_packet).sid))
            return
        try:
            with trio.fail_after(HANG):
                response, ws = await open_websocket(
                    self.connect, target, key=action.key, version=action.version, extra=extra
                )
                if ws is None:
                    if response is None:
                        self.problems.append(f"{label}: connection closed without an answer")
                    elif response.status >= 500:
                        self.problems.append(f"{label}: answered {response.status}")
                    return
                ws.auto_pong = action.answers_pings
                self.start_reader(ws, label)
                opening = await ws.next_message()
        except trio.TooSlowError:
            self.problems.append(f"{label}: no answer after {HANG} s")
            return
        if opening is None:
            self.problems.append(f"{label}: WebSocket accepted, then closed without OPEN")
            return
        try:
            info = decode_open(decode_packet(opening))
        except RemoteProtocolError:
            self.problems.append(f"{label}: first message is not OPEN: {opening!r}")
            return
        self.sessions.append(FuzzSession(info.sid, ws))

    async def send(self, action: Send) -> None:
        session = self.pick(action.session)
        if session is None:
            return
        ws = session.ws
        if ws is not None and not ws.closed.is_set():
            for packet in action.packets:
                await ws.send(packet)
            return
        body = _payload(action.packets)
        target = f"{PATH}?EIO=4&transport=polling&sid={session.sid}"
        label = repr(action)
        self.spawn(label, self.http, session, label, "POST", target, [], body)

    async def upgrade(self, action: Upgrade) -> None:
        session = self.pick(action.session)
        if session is None:
            return
        target = f"{PATH}?EIO=4&transport=websocket&sid={session.sid}"
        label = repr(action)
        try:
            with trio.fail_after(HANG):
                response, ws = await open_websocket(self.connect, target)
        except trio.TooSlowError:
            self.problems.append(f"{label}: no answer after {HANG} s")
            return
        if ws is None:
            if response is None:
                self.problems.append(f"{label}: connection closed without an answer")
            return
        self.start_reader(ws, label)
        session.ws = ws
        for step in action.steps:
            await trio.testing.wait_all_tasks_blocked()
            await ws.send(step)

    async def close(self, action: Close) -> None:
        session = self.pick(action.session)
        if session is None:
            return
        ws = session.ws
        usable = ws is not None and not ws.closed.is_set()
        if action.how == "drop":
            for stream in list(session.streams):
                self.aborted.add(stream)
                await trio.aclose_forcefully(stream)
            if ws is not None:
                await ws.abort()
        elif usable and ws is not None:
            if action.how == "ws-close":
                await ws.send_raw(close_frame())
            else:
                await ws.send("1")
        else:
            await self.send(Send(action.session, ("1",)))

    async def raw_http(self, action: RawHttp) -> None:
        stream = await self.connect()
        try:
            await stream.send_all(action.data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

        async def read_then_close() -> None:
            # Whatever comes back must be valid HTTP; nothing need come back.
            with trio.move_on_after(2.0):
                method = "HEAD" if action.data.startswith(b"HEAD ") else "GET"
                try:
                    await read_response(stream, method=method)
                except WireViolation as exc:
                    self.problems.append(f"{action!r}: {exc}")
            if action.close:
                await trio.aclose_forcefully(stream)

        self.nursery.start_soon(read_then_close)

    async def drop_everything(self) -> None:
        for stream in self.streams:
            self.aborted.add(stream)
            await trio.aclose_forcefully(stream)


# -- one example -----------------------------------------------------------------------------


async def _run_example(plan: list[Action]) -> dict[str, Any]:
    outcome: dict[str, Any] = {"crash": None, "problems": []}
    sio = make_server(
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        upgrade_timeout=UPGRADE_TIMEOUT,
        connect_timeout=CONNECT_TIMEOUT,
        path=PATH,
        connection_state_recovery=True,
        **compression_options(),
    )
    async with trio.open_nursery() as nursery:

        async def run_server(*, task_status: trio.TaskStatus[None]) -> None:
            try:
                await sio.run(task_status=task_status)
            except Exception as exc:  # the server's nursery raised: it is dead
                outcome["crash"] = exc
                nursery.cancel_scope.cancel()

        await nursery.start(run_server)
        network = MemoryNetwork(nursery, sio)
        driver = Driver(nursery, network)
        good = trio_sio.Client(
            "http://testserver", connector=network.connect, reconnection=False, path=PATH
        )
        disconnects: list[str] = []
        good.on("disconnect", lambda reason: disconnects.append(reason))
        async with good:
            with trio.fail_after(10):
                while good.transport != "websocket":
                    await trio.sleep(0.01)
            driver.good = good
            good_sessions = set(sio.engine.sessions)
            assert len(good_sessions) == 1
            # Two sessions to start with, one per transport.
            await driver.play(Handshake(websocket=False, query="EIO=4&transport={t}"))
            await driver.play(
                Handshake(
                    websocket=True,
                    query="EIO=4&transport={t}",
                    extensions=b"permessage-deflate; client_max_window_bits",
                )
            )
            for action in plan:
                try:
                    await driver.play(action)
                except WireViolation as exc:
                    driver.problems.append(f"{action!r}: {exc}")
                await trio.testing.wait_all_tasks_blocked()
            # Every request is answered (a GET by the next ping at the latest).
            with trio.move_on_after(HANG + 5):
                if driver.outstanding:
                    await driver.all_answered.wait()
            outcome["problems"].extend(driver.problems)
            # The well-behaved client is unaffected.
            try:
                with trio.fail_after(20):
                    reply = await good.emit_with_ack("echo", {"still": "here"}, timeout=10)
            except Exception as exc:
                reply = exc
            outcome["good_reply"] = reply
            outcome["good_connected"] = good.connected
            outcome["disconnects"] = list(disconnects)
            # Once the fuzzing clients are gone, so are their sessions and sockets.
            await driver.drop_everything()
            await trio.sleep(REAP)
            outcome["sessions_left"] = set(sio.engine.sessions) - good_sessions
            outcome["sockets_left"] = {
                name: len(ns.sockets) - (1 if name == "/" else 0)
                for name, ns in sio.namespaces.items()
                if len(ns.sockets) != (1 if name == "/" else 0)
            }
            outcome["problems"] = list(driver.problems)
        sio.shutdown()
        nursery.cancel_scope.cancel()
    return outcome


def run_plan(plan: list[Action]) -> None:
    """Run one example and check everything the module docstring promises."""
    with capture_errors() as errors:
        clock = trio.testing.MockClock(autojump_threshold=0)
        outcome = trio.run(_run_example, plan, clock=clock)
    crash = outcome["crash"]
    if crash is not None:
        raise AssertionError(f"the server crashed: {crash!r}") from crash
    assert not errors.records, f"ERROR records were logged:\n{errors.describe()}"
    assert not outcome["problems"], "\n".join(outcome["problems"])
    assert outcome["good_reply"] == {"still": "here"}, (
        f"the well-behaved client's ack round trip gave {outcome['good_reply']!r}"
    )
    assert outcome["good_connected"] and not outcome["disconnects"], outcome["disconnects"]
    assert not outcome["sessions_left"], f"sessions never closed: {outcome['sessions_left']}"
    assert not outcome["sockets_left"], f"sockets never removed: {outcome['sockets_left']}"


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=st.lists(actions, min_size=2, max_size=30))
def test_fuzz_server(plan: list[Action]) -> None:
    run_plan(plan)


def test_well_behaved_plan_passes() -> None:
    """The harness itself: a plan of proper traffic passes every check."""
    run_plan(
        [
            Send(0, ("40",)),
            Send(1, ("40", '421["echo",1]')),
            Get(0),
            Send(0, ('42["echo","x"]', "3")),
            Upgrade(0, ("2probe", "5")),
            Send(0, ('42["binary"]', "41")),
            Close(1, "packet"),
            Sleep(0.5),
        ]
    )
