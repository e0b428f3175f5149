"""The msgpack parser against the official one (``socket.io-msgpack-parser``, pinned in
``package.json``), through ``msgpack_peer.mjs``:

- the codec alone: what the JS Encoder writes (as the JS server and client build packets,
  with ``undefined``, Dates, ArrayBuffers and typed arrays), we decode; what we write, the
  JS Decoder accepts and encodes back to the same bytes; our Date strings are
  ``toISOString()``'s;
- the official Node client (``socket.io-client``) against our server;
- our client against the official Node server (``socket.io``).

Both with multi-argument events, nested binary both ways, acks both ways, a room broadcast,
a refused namespace, and notepack's special values, over WebSocket, long-polling and polling
upgraded to WebSocket. Real sockets and Trio's clock; every wait is bounded. Without
``node`` or ``node_modules`` the tests are skipped, except under CI.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_sio
from trio_sio.protocol.msgpack_parser import MsgpackParser, _iso_date
from trio_sio.protocol.socketio import Packet, PacketType
from trio_sio.server import Socket

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
START_TIMEOUT = 15.0
LIMIT = 10.0
WAIT = 3.0
TRANSPORTS = {
    "websocket": ("websocket",),
    "polling": ("polling",),
    "upgrade": ("polling", "websocket"),
}
UTC = datetime.UTC

#: What our side makes of msgpack_peer.mjs's specials() (notepack's special values).
JS_SPECIALS = [
    "1970-01-01T00:00:00.000Z",
    "2024-05-06T07:08:09.123Z",
    "1969-12-31T23:59:59.999Z",
    "+275760-09-13T00:00:00.000Z",
    "-271821-04-20T00:00:00.000Z",
    None,  # undefined in a list
    {"keep": 1},  # an undefined property is dropped
    b"\x09",  # a 1-byte Uint8Array: ext 8 of type 0, not undefined
    bytes(range(1, 9)),  # an 8-byte Uint8Array: not a Date
    b"\x01\x02\x03",  # an ArrayBuffer
    b"\x04\x05",  # a Buffer
    ["1970-01-01T00:00:00.001Z", [None, b""]],
    2**40,
    -(2**40),
    1.5,
    -7,
    "ünï ☃ 😀",
]

#: Python values with special rules, and what a JS peer gets (described as the peer does).
PY_SPECIALS = [
    datetime.datetime(2024, 5, 6, 7, 8, 9, 123_456, tzinfo=UTC), datetime.date(2024, 5, 6),
    b"\x01", {"bin": b"\x02", "when": datetime.datetime(1970, 1, 1)}, None, 2**40, 1.5,
    "ünï ☃ 😀", [b"", None, True], {3: "4"},
]  # fmt: skip


def buffer(data: bytes) -> dict[str, str]:
    """How msgpack_peer.mjs describes a Buffer."""
    return {"$bytes": data.hex(), "type": "Buffer"}


def described(value: Any) -> Any:
    """A wire value (bytes arrive as a Buffer in Node) as msgpack_peer.mjs describes it."""
    if isinstance(value, bytes):
        return buffer(value)
    if isinstance(value, list | tuple):
        return [described(v) for v in value]
    if isinstance(value, dict):
        return {k: described(v) for k, v in value.items()}
    return value


PY_SPECIALS_IN_JS = [
    "2024-05-06T07:08:09.123Z", "2024-05-06",
    buffer(b"\x01"), {"bin": buffer(b"\x02"), "when": "1970-01-01T00:00:00.000Z"}, None, 2**40,
    1.5, "ünï ☃ 😀", [buffer(b""), None, True], {"3": "4"},
]  # fmt: skip

#: An event with many arguments and binary at every depth (bin 8, 16 and 32).
SENT = [
    1, "2", {3: "4", "5": b"\x06"}, [b"", None, True],
    {"deep": {"list": [b"\x01\x02", {"x": b"\x07" * 300}]}}, 1.5, -(2**40), b"\x09" * 70_000,
]  # fmt: skip
SENT_BACK = (1, "2", {"3": "4", "5": b"\x06"}, *SENT[3:])


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _require_node() -> str:
    """The path of ``node``; skip (fail under CI) without it or the Node packages."""
    node = shutil.which("node")
    reason = None
    if node is None:
        reason = "node is not installed"
    else:
        for package in ("socket.io", "socket.io-client", "socket.io-msgpack-parser"):
            if not (HERE / "node_modules" / package).is_dir():
                reason = f"node_modules/{package} is missing: run `npm ci` in tests/interop"
    if reason is not None:
        if _in_ci():
            pytest.fail(f"interop test cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    assert node is not None
    return node


@pytest.fixture(params=list(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- the codec ----------------------------------------------------------------------------

PARSER = MsgpackParser()
E, A = PacketType.EVENT, PacketType.ACK

#: Our frames for the JS Decoder.
OURS = [
    Packet(PacketType.CONNECT, "/", {"sid": "x"}),
    Packet(PacketType.CONNECT),
    Packet(PacketType.DISCONNECT, "/a"),
    Packet(E, "/", ["hi", 1, -33, 2**53, 0.1, None, True, b"\x01", {"k": [b"", "v"]}], 7),
    Packet(E, data=["big", b"\x05" * 300, b"\x06" * 70_000]),  # bin 16, bin 32
    Packet(E, data=["s" * 40, "t" * 300, "u" * 70_000, "ünï ☃ 😀"]),  # str 8/16/32
    Packet(E, data=["n", -(2**31) - 1, 2**32, 255, 65536, -129, -32769]),
    Packet(E, data=["list", list(range(20)), {str(i): i for i in range(20)}]),
    Packet(A, "/admin", [], 0),
    Packet(PacketType.CONNECT_ERROR, "/admin", {"message": "nope"}),
]


def js_view(packet: Packet) -> dict[str, Any]:
    """The packet object the JS Decoder makes of our frame, as msgpack_peer.mjs describes it."""
    view: dict[str, Any] = {"type": int(packet.type), "nsp": packet.namespace}
    if packet.data is not None:
        view["data"] = described(packet.data)
    if packet.id is not None:
        view["id"] = packet.id
    return view


#: msgpack_peer.mjs's JS-made packets, as we decode them.
THEIRS = {
    "server_event": Packet(E, "/", ["hello", 1, b"\x01\x02"]),
    "server_connect": Packet(PacketType.CONNECT, "/", {"sid": "abc"}),
    "server_connect_error": Packet(
        PacketType.CONNECT_ERROR, "/admin", {"message": "not authorized"}
    ),
    "server_ack": Packet(A, "/", [], 0),
    "server_disconnect": Packet(PacketType.DISCONNECT, "/"),
    "client_connect": Packet(PacketType.CONNECT, "/"),
    "client_event": Packet(E, "/admin", ["hello", {"deep": [b"\x03"]}], 3),
    "specials": Packet(E, "/", ["specials", *JS_SPECIALS]),
    "numbers": Packet(E, "/", ["n", 2**53, -(2**53), 2**32, -(2**31) - 1, 255, -33, 0.1, -0.5]),
    "binary_sizes": Packet(E, "/", ["b", b"\x01" * 255, b"\x02" * 256, b"\x03" * 65536]),
    "typed_arrays": Packet(E, "/", ["t", b"\x01\x00\x02\x00", b"", b"\x04" * 300]),
    # notepack writes an invalid Date as 0 ms.
    "invalid_date": Packet(E, "/", ["d", "1970-01-01T00:00:00.000Z"]),
}


def test_codec_against_the_official_parser() -> None:
    node = _require_node()
    frames = [PARSER.encode(packet)[0] for packet in OURS]
    rng = random.Random(13)
    limit = 8_640_000_000_000_000
    dates = [0, -1, 1, limit, -limit, limit + 1, -limit - 1, -62_167_219_200_001]
    dates += [rng.randint(-limit, limit) for _ in range(300)]
    dates += [rng.randint(-(10**13), 10**13) for _ in range(300)]
    request = {"decode": [bytes(f).hex() for f in frames], "dates": dates}
    result = subprocess.run(
        [node, "msgpack_peer.mjs", "codec"],
        cwd=HERE,
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)

    # JS → us
    assert set(output["encoded"]) == set(THEIRS)
    for name, hex_text in output["encoded"].items():
        decoder = PARSER.decoder()
        decoder.feed(bytes.fromhex(hex_text))
        assert decoder.next_packet() == THEIRS[name], name

    # us → JS: accepted by the official Decoder, and the same bytes when it encodes them back
    for packet, frame, got, again in zip(
        OURS, frames, output["decoded"], output["reencoded"], strict=True
    ):
        assert got == js_view(packet)
        assert again == bytes(frame).hex(), packet

    # our date strings are toISOString()'s (null: an invalid Date)
    assert output["iso"] == [_iso_date(ms) for ms in dates]


# -- the official Node client against our server ------------------------------------------


def make_server(seen: dict[str, list[Any]]) -> trio_sio.Server:
    """Our server with msgpack_peer.mjs's scenario app; ``seen`` gets what it received."""
    sio = trio_sio.Server(parser=MsgpackParser())

    @sio.on("connection")
    async def connected(socket: Socket, auth: dict[str, Any]) -> None:
        seen["auth"].append(auth)

    @sio.on("echo")
    async def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        seen["echo"].append(args)
        await socket.emit("echoed", *args)
        return args

    @sio.on("ask")
    async def ask(socket: Socket, event: str, *args: Any) -> list[Any]:
        reply = await socket.emit_with_ack(event, *args, timeout=WAIT)
        return list(reply) if isinstance(reply, tuple) else [reply]

    @sio.on("join")
    async def join(socket: Socket, room: str) -> str:
        socket.join(room)
        return room

    @sio.on("to-room")
    async def to_room(socket: Socket, room: str, *args: Any) -> str:
        await socket.to(room).emit("room-news", *args)
        return "sent"

    @sio.on("specials")
    async def specials(socket: Socket, *args: Any) -> tuple[Any, ...]:
        seen["specials"].append(args)
        return args

    @sio.on("send-specials")
    async def send_specials(socket: Socket) -> None:
        await socket.emit("specials", *PY_SPECIALS)

    @sio.on("sync")
    async def sync(socket: Socket) -> str:
        return "sync"

    @sio.of("/private").use
    async def refuse(socket: Socket, auth: dict[str, Any]) -> None:
        raise trio_sio.ConnectionRefused("nope")

    return sio


async def test_node_client_against_our_server(transport: str) -> None:
    node = _require_node()
    seen: dict[str, list[Any]] = {"auth": [], "echo": [], "specials": []}
    sio = make_server(seen)
    node_transports = json.dumps(list(TRANSPORTS[transport]))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
            url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
            proc = await trio.run_process(
                [node, "msgpack_peer.mjs", "client", url, node_transports],
                cwd=HERE,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            nursery.cancel_scope.cancel()
    lines = proc.stdout.decode().strip().splitlines()
    assert lines, proc.stderr.decode()[-3000:]
    results = json.loads(lines[-1])["results"]
    failed = {name: r["error"] for name, r in results.items() if not r["ok"]}
    assert not failed, (failed, proc.stderr.decode()[-3000:])
    assert proc.returncode == 0

    # The client connected with auth (a Date in it) and without (data: undefined).
    assert sorted(seen["auth"], key=len) == [
        {},
        {"token": "a", "when": "1970-01-01T00:00:00.000Z"},
    ]
    expected_echo = (1, "2", {"3": "4", "5": b"\x06"}, [b"", None, True])
    assert seen["echo"][0][:4] == expected_echo
    assert seen["echo"][0][4] == {"deep": {"list": [b"\x01\x02", {"x": b"\x07" * 300}]}}
    assert seen["echo"][1] == ("big", b"\x09" * 70_000)
    assert seen["specials"] == [tuple(JS_SPECIALS)]
    assert results["specials_to_server"]["data"] == described(JS_SPECIALS)
    assert results["specials_from_server"]["data"] == PY_SPECIALS_IN_JS
    # as from a JS server: err.data is undefined
    assert results["refused"]["data"] == {"message": "nope", "data": {"$undefined": True}}


# -- our client against the official Node server ------------------------------------------


class NodeServer:
    """``msgpack_peer.mjs server`` in a subprocess; a thread collects its JSON log lines."""

    def __init__(self, node: str) -> None:
        self.proc = subprocess.Popen(
            [node, "msgpack_peer.mjs", "server"],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[dict[str, Any]] = []
        self.stderr = ""
        self._port: int | None = None
        self._started = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._started.wait(START_TIMEOUT) or self._port is None:
            self.stop()
            raise RuntimeError(f"msgpack_peer.mjs server did not start: {self.stderr}")
        self.url = f"http://127.0.0.1:{self._port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if self._port is None:
                if line.strip().isdigit():
                    self._port = int(line)
                self._started.set()
                continue
            self.log.append(json.loads(line))
        self._started.set()

    def entries(self, **match: Any) -> list[dict[str, Any]]:
        """The log entries seen so far whose fields equal ``match``."""
        return [e for e in list(self.log) if all(e.get(k) == v for k, v in match.items())]

    async def wait_entry(self, **match: Any) -> dict[str, Any]:
        """The first log entry matching, waiting at most ``WAIT`` seconds for it."""
        with trio.fail_after(WAIT):
            while not (found := self.entries(**match)):
                await trio.sleep(0.01)
        return found[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the server exits when its stdin closes
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def node_server() -> Iterator[NodeServer]:
    server = NodeServer(_require_node())
    yield server
    server.stop()
    assert "Error" not in server.stderr, server.stderr[-3000:]


def client_for(server: NodeServer, transport: str, **options: Any) -> trio_sio.Client:
    return trio_sio.Client(
        server.url,
        transports=TRANSPORTS[transport],
        parser=MsgpackParser(),
        reconnection=False,
        **options,
    )


async def test_connect_with_and_without_auth(node_server: NodeServer, transport: str) -> None:
    with trio.fail_after(LIMIT):
        auth = {"token": "t", "n": [1, None]}
        async with client_for(node_server, transport, auth=auth) as client:
            entry = await node_server.wait_entry(ev="connection", sid=client.id)
            assert entry["auth"] == auth
            assert await client.emit_with_ack("sync", timeout=WAIT) == "sync"
        async with client_for(node_server, transport) as client:
            entry = await node_server.wait_entry(ev="connection", sid=client.id)
            assert entry["auth"] == {}


async def test_multi_args_and_nested_binary_both_ways(
    node_server: NodeServer, transport: str
) -> None:
    with trio.fail_after(LIMIT):
        async with client_for(node_server, transport) as client:
            echoed = trio.Event()
            got: list[tuple[Any, ...]] = []

            @client.on("echoed")
            async def on_echoed(*args: Any) -> None:
                got.append(args)
                echoed.set()

            ack = await client.emit_with_ack("echo", *SENT, timeout=WAIT)
            assert ack == SENT_BACK
            await echoed.wait()
            assert got == [SENT_BACK]
            entry = await node_server.wait_entry(ev="event", sid=client.id, event="echo")
            assert entry["args"] == described(list(SENT_BACK))
            assert entry["ack"] is True


async def test_acks_both_ways(node_server: NodeServer, transport: str) -> None:
    with trio.fail_after(LIMIT):
        async with client_for(node_server, transport) as client:

            @client.on("question")
            async def question(*args: Any) -> tuple[Any, ...]:
                return ("answer", *args)

            reply = await client.emit_with_ack("ask", "question", "q1", b"\x07\x08", timeout=WAIT)
            assert reply == ["answer", "q1", b"\x07\x08"]
            # An ack with no argument, and one with a single binary argument.
            assert await client.emit_with_ack("echo", timeout=WAIT) is None
            assert await client.emit_with_ack("echo", {"b": b"\x00"}, timeout=WAIT) == {
                "b": b"\x00"
            }
            calls: list[tuple[Any, ...]] = []
            done = trio.Event()

            async def callback(*args: Any) -> None:
                calls.append(args)
                done.set()

            await client.emit("echo", 1, b"\x02", callback=callback)
            await done.wait()
            assert calls == [(1, b"\x02")]


async def test_special_values_both_ways(node_server: NodeServer, transport: str) -> None:
    with trio.fail_after(LIMIT):
        async with client_for(node_server, transport) as client:
            received = trio.Event()
            got: list[tuple[Any, ...]] = []

            @client.on("specials")
            async def specials(*args: Any) -> None:
                got.append(args)
                received.set()

            await client.emit("send-specials")
            await received.wait()
            assert got == [tuple(JS_SPECIALS)]
            # Python's special values, as the Node server decoded them.
            assert await client.emit_with_ack("specials", *PY_SPECIALS, timeout=WAIT) == tuple(
                PY_SPECIALS_IN_JS
            )


async def test_room_broadcast(node_server: NodeServer, transport: str) -> None:
    room = f"room-{transport}"
    with trio.fail_after(LIMIT):
        async with (
            client_for(node_server, transport) as a,
            client_for(node_server, transport) as b,
        ):
            news: dict[str, list[tuple[Any, ...]]] = {"a": [], "b": []}
            arrived = trio.Event()

            @a.on("room-news")
            async def on_a(*args: Any) -> None:
                news["a"].append(args)

            @b.on("room-news")
            async def on_b(*args: Any) -> None:
                news["b"].append(args)
                arrived.set()

            assert await a.emit_with_ack("join", room, timeout=WAIT) == room
            assert await b.emit_with_ack("join", room, timeout=WAIT) == room
            sent = await a.emit_with_ack("to-room", room, "news", {"bin": b"\x01"}, timeout=WAIT)
            assert sent == "sent"
            await arrived.wait()
            assert await a.emit_with_ack("sync", timeout=WAIT) == "sync"
            assert news == {"a": [], "b": [("news", {"bin": b"\x01"})]}


async def test_refused_namespace(node_server: NodeServer, transport: str) -> None:
    client = client_for(node_server, transport, namespaces=["/private"])
    with trio.fail_after(LIMIT):
        with pytest.raises(trio_sio.ConnectionRefused) as info:
            async with client:
                pytest.fail("connected to /private")
    assert info.value.message == "nope"
    assert info.value.data is None
