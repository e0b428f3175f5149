"""Our Socket.IO client against the official Node server (``socket.io``, pinned in
``package.json``), over WebSocket, HTTP long-polling, and polling upgraded to WebSocket.

The server is ``sio_node_server.mjs``: a scenario app that emits the examples of the
"emitting events" page, answers events, asks our client questions, and writes one JSON
line per thing it saw, so that every test checks both sides of each exchange. Real sockets
and Trio's real clock; every wait is bounded by ``trio.fail_after``.

The last tests run the page's restart example: a client emitting a counter every 100 ms
while the server is killed and started again on the same port, plain emits (buffered while
disconnected, every count arrives once, in order) against volatile ones (the counts sent
while disconnected are lost).

Without ``node`` or ``node_modules`` the tests are skipped, except under CI.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel

import trio_sio
from trio_sio import AckTimeoutError, Client

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
START_TIMEOUT = 15.0
LIMIT = 8.0  # per test (per restart run: see RESTART_LIMIT)
WAIT = 3.0  # for one log entry or one event
RESTART_LIMIT = 10.0

#: Our name for a transport setting → the client's ``transports``.
TRANSPORTS = {
    "websocket": ("websocket",),
    "polling": ("polling",),
    "upgrade": ("polling", "websocket"),
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _require_node() -> str:
    """The path of ``node``; skip (fail under CI) when it or ``socket.io`` is missing."""
    node = shutil.which("node")
    reason = None
    if node is None:
        reason = "node is not installed"
    elif not (HERE / "node_modules" / "socket.io").is_dir():
        reason = "node_modules/socket.io is missing: run `npm ci` in tests/interop"
    if reason is not None:
        if _in_ci():
            pytest.fail(f"interop test cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    assert node is not None
    return node


def bytes_of(hex_text: str) -> dict[str, str]:
    """How the server log writes a Buffer."""
    return {"$bytes": hex_text}


class NodeServer:
    """``sio_node_server.mjs`` in a subprocess; threads collect its JSON log lines.

    Blocks while Node starts: in a test, create it with ``trio.to_thread.run_sync``.
    """

    def __init__(self, node: str, port: int = 0) -> None:
        self.proc = subprocess.Popen(
            [node, "sio_node_server.mjs", str(port)],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._port: int | None = None
        self._started = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if not self._started.wait(START_TIMEOUT) or self._port is None:
            self.stop()
            raise RuntimeError(f"sio_node_server.mjs did not start: {self.stderr[-20:]}")
        self.port = self._port
        self.url = f"http://127.0.0.1:{self.port}"

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

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def entries(self, **match: Any) -> list[dict[str, Any]]:
        """The log entries seen so far whose fields equal ``match``."""
        return [e for e in list(self.log) if all(e.get(k) == v for k, v in match.items())]

    def args(self, sid: str, event: str) -> list[list[Any]]:
        """The args of every ``event`` received from socket ``sid``, as logged."""
        return [e["args"] for e in self.entries(ev="event", sid=sid, event=event)]

    async def wait_entry(self, **match: Any) -> dict[str, Any]:
        """The first log entry matching, waiting for it (at most ``WAIT`` seconds)."""
        with trio.fail_after(WAIT):
            while not (found := self.entries(**match)):
                if self.proc.poll() is not None:
                    raise AssertionError(f"the server exited; no log entry {match}")
                await trio.sleep(0.01)
        return found[0]

    def kill(self) -> None:
        """Kill the process at once (SIGKILL: no goodbye to the clients)."""
        self.proc.kill()
        self.proc.wait()
        self._reader.join(WAIT)  # every line written before the kill is in the log

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the server exits when its stdin closes
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass


@pytest.fixture(scope="module")
def server() -> Iterator[NodeServer]:
    srv = NodeServer(_require_node())
    yield srv
    srv.stop()
    assert not any("Error" in line for line in srv.stderr), "\n".join(srv.stderr[-40:])


@pytest.fixture(params=list(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Recorder:
    """Every event a namespace socket of our client receives, from before it connects."""

    def __init__(self, socket: Any) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._changed = trio.Event()
        socket.on_any(self._record)

    def _record(self, event: str, *args: Any) -> None:
        self.events.append((event, args))
        self._changed.set()
        self._changed = trio.Event()

    def all(self, event: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.events if name == event]

    async def first(self, event: str, **fields: Any) -> tuple[Any, ...]:
        """The args of the first ``event`` received (now or later); with ``fields``, the
        first whose first argument is a dict containing them."""

        def found() -> tuple[Any, ...] | None:
            for args in self.all(event):
                if not fields or (
                    args
                    and isinstance(args[0], dict)
                    and all(args[0].get(k) == v for k, v in fields.items())
                ):
                    return args
            return None

        with trio.fail_after(WAIT):
            while (args := found()) is None:
                await self._changed.wait()
        return args


def client_for(server: NodeServer, transport: str, **options: Any) -> Client:
    return Client(server.url, transports=TRANSPORTS[transport], **options)


_sync_tokens = iter(range(1_000_000))


async def sync(server: NodeServer, socket: Any) -> None:
    """A round trip: what the socket emitted before has reached the server, and the server's
    log lines about it have reached ``server.log`` (they are written in order)."""
    token = next(_sync_tokens)
    assert await socket.emit_with_ack("sync", token, timeout=WAIT) == "sync"
    await server.wait_entry(ev="event", sid=socket.id, event="sync", args=[token])


# -- connecting ---------------------------------------------------------------------------


async def test_connect_and_transport(server: NodeServer, transport: str) -> None:
    client = client_for(server, transport, auth={"token": "t", "user": "py"})
    with trio.fail_after(LIMIT):
        async with client:
            assert client.connected
            assert client.id is not None
            entry = await server.wait_entry(ev="connection", nsp="/", sid=client.id)
            assert entry["auth"] == {"token": "t", "user": "py"}
            expected = "polling" if transport == "polling" else "websocket"
            if transport == "upgrade":
                while client.transport != "websocket":
                    await trio.sleep(0.01)
                await server.wait_entry(ev="upgrade", sid=client.id, transport="websocket")
            else:
                assert entry["transport"] == expected
            assert client.transport == expected
            assert await client.emit_with_ack("transport", timeout=WAIT) == expected
            who = await client.emit_with_ack("whoami", timeout=WAIT)
            assert who["sid"] == client.id


async def test_disconnect_reason_seen_by_server(server: NodeServer, transport: str) -> None:
    """Leaving ``async with`` disconnects the namespace: the server sees the client's
    DISCONNECT ("client namespace disconnect"), as with socket.io-client's disconnect()."""
    client = client_for(server, transport)
    with trio.fail_after(LIMIT):
        async with client:
            sid = client.id
            await sync(server, client)
            if transport == "upgrade":
                while client.transport != "websocket":
                    await trio.sleep(0.01)
        entry = await server.wait_entry(ev="disconnect", sid=sid)
    assert entry["reason"] == "client namespace disconnect"


async def test_emits_just_before_close_are_sent(server: NodeServer, transport: str) -> None:
    """Emits that returned before the client closes reach the server, in order, as with
    socket.io-client (``emit(...); disconnect()`` delivers every emit)."""
    client = client_for(server, transport)
    with trio.fail_after(LIMIT):
        async with client:
            sid = client.id
            assert sid is not None
            for k in range(50):
                await client.emit("bulk", k)
        await server.wait_entry(ev="disconnect", sid=sid)
    assert server.args(sid, "bulk") == [[k] for k in range(50)]


# -- server → client ----------------------------------------------------------------------


async def test_server_emits_page_examples(server: NodeServer, transport: str) -> None:
    """What the Node server emits on connection arrives as the page says: several args,
    binary (a Buffer) as bytes wherever it is, a Date as its ISO string, an object with
    ``toJSON()`` as what that returns."""
    client = client_for(server, transport)
    recorder = Recorder(client)
    hellos: list[str] = []

    @client.on("hello")
    def hello(arg: str) -> None:
        hellos.append(arg)

    with trio.fail_after(LIMIT):
        async with client:
            assert await recorder.first("hello") == ("world",)
            assert await recorder.first("hello-multi") == (1, "2", {"3": "4", "5": b"\x06"})
            assert await recorder.first("date") == (
                "2024-05-06T07:08:09.123Z",
                "1970-01-01T00:00:00.000Z",
            )
            assert await recorder.first("here's a hero") == ({"hp": 42},)
            assert await recorder.first("nested") == (
                {"list": [b"\x01\x02", {"deep": b""}], "text": "x"},
            )
    assert hellos == ["world"]


async def test_volatile_from_server(server: NodeServer, transport: str) -> None:
    """``socket.volatile.emit`` on the server: what arrives is in order and intact (over
    polling, and during the upgrade, the server drops those it cannot write right away)."""
    client = client_for(server, transport)
    recorder = Recorder(client)
    with trio.fail_after(LIMIT):
        async with client:
            await client.emit("volatile-burst", 5)
            assert await recorder.first("volatile-done") == (5,)
    positions = recorder.all("position")
    xs = [x for x, _ in positions]
    assert 1 <= len(positions) <= 5, positions
    assert all(y == 2 * x for x, y in positions), positions
    assert xs == sorted(set(xs)), positions
    assert set(xs) <= set(range(5))


# -- client → server ----------------------------------------------------------------------


async def test_client_emits_several_args_and_binary(server: NodeServer, transport: str) -> None:
    client = client_for(server, transport)
    with trio.fail_after(LIMIT):
        async with client:
            sid = client.id
            assert sid is not None
            await client.emit("hello", "world")
            await client.emit("hello-multi", 1, "2", {3: "4", 5: b"\x06"})
            await client.emit(
                "nested",
                {"list": [b"\x01\x02", {"deep": b""}], "text": "x"},
                [b"\xff" * 3, [None, True, 1.5]],
            )
            await client.emit("nothing")
            await sync(server, client)
    assert server.args(sid, "hello") == [["world"]]
    # Binary arrives as a Buffer (logged without a "type"), dict keys as strings.
    assert server.args(sid, "hello-multi") == [[1, "2", {"3": "4", "5": bytes_of("06")}]]
    assert server.args(sid, "nested") == [
        [
            {"list": [bytes_of("0102"), {"deep": bytes_of("")}], "text": "x"},
            [bytes_of("ffffff"), [None, True, 1.5]],
        ]
    ]
    assert server.args(sid, "nothing") == [[]]


DATES = [
    # (what we send, the string Node gets, what `new Date(string)` makes of it)
    (
        datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC),
        "2024-05-06T07:08:09.123Z",
        1714979289123,
    ),
    (
        datetime.datetime(
            2024, 5, 6, 9, 8, 9, 123000, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
        ),
        "2024-05-06T07:08:09.123Z",
        1714979289123,
    ),
    (datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC), "1970-01-01T00:00:00.000Z", 0),
    (datetime.datetime(2000, 1, 1), "2000-01-01T00:00:00.000Z", 946684800000),  # naive = UTC
]


async def test_client_emits_datetime(server: NodeServer, transport: str) -> None:
    """A ``datetime`` goes as the string ``Date.prototype.toISOString()`` would give, which
    ``new Date()`` in Node parses back to the same instant (in ms)."""
    client = client_for(server, transport)
    with trio.fail_after(LIMIT):
        async with client:
            sid = client.id
            for value, text, ms in DATES:
                assert await client.emit_with_ack("date", value, timeout=WAIT) == ms
                assert text.endswith("Z")
            await sync(server, client)
    logged = [(e["value"], e["type"], e["ms"]) for e in server.entries(ev="date", sid=sid)]
    assert logged == [(text, "string", ms) for _, text, ms in DATES]


class Hero:
    """The page's class with a custom serialization (``toJSON()`` in JS)."""

    def __init__(self) -> None:
        self._hp = 42

    def __sio_json__(self) -> dict[str, int]:
        return {"hp": self._hp}


@dataclasses.dataclass
class Point:
    x: int
    y: int
    label: str


async def test_client_emits_hook_dataclass_and_refuses_sets(
    server: NodeServer, transport: str
) -> None:
    client = client_for(server, transport)
    with trio.fail_after(LIMIT):
        async with client:
            sid = client.id
            assert sid is not None
            await client.emit("here's a hero", Hero())
            await client.emit("heroes", [Hero(), {"h": Hero(), "bin": b"\x01"}])
            await client.emit("point", Point(1, 2, "p"))
            # Sets must be serialized by hand (as the page says of Map and Set).
            with pytest.raises(TypeError, match="set"):
                await client.emit("set", {1, 2})
            await client.emit("set", sorted({1, 2}))
            await sync(server, client)
    assert server.args(sid, "here's a hero") == [[{"hp": 42}]]
    assert server.args(sid, "heroes") == [[[{"hp": 42}, {"h": {"hp": 42}, "bin": bytes_of("01")}]]]
    assert server.args(sid, "point") == [[{"x": 1, "y": 2, "label": "p"}]]
    assert server.args(sid, "set") == [[[1, 2]]]


# -- acknowledgements, client → server ----------------------------------------------------


async def test_ack_client_to_server(server: NodeServer, transport: str) -> None:
    """The page's ``update item``: a callback, ``emit_with_ack``, and both with a timeout;
    an ack with several args (and binary) comes back as a tuple."""
    client = client_for(server, transport)
    recorder = Recorder(client)
    plain: list[tuple[Any, ...]] = []
    timed: list[tuple[Any, ...]] = []
    done = trio.Event()

    def on_plain(*args: Any) -> None:
        plain.append(args)
        if plain and timed:
            done.set()

    def on_timed(*args: Any) -> None:
        timed.append(args)
        if plain and timed:
            done.set()

    with trio.fail_after(LIMIT):
        async with client:
            sid = client.id
            assert sid is not None
            item = ("1", {"name": "updated"})
            await client.emit("update item", *item, callback=on_plain)
            await client.timeout(2).emit("update item", *item, callback=on_timed)
            assert await client.emit_with_ack("update item", *item) == {"status": "ok"}
            assert await client.timeout(2).emit_with_ack("update item", *item) == {"status": "ok"}
            await done.wait()
            echoed = await client.emit_with_ack("echo", 1, "2", {"5": b"\x06"}, timeout=WAIT)
            assert echoed == (1, "2", {"5": b"\x06"})
            assert await recorder.first("echoed") == (1, "2", {"5": b"\x06"})
            await sync(server, client)
    assert plain == [({"status": "ok"},)]
    assert timed == [(None, {"status": "ok"})]
    calls = server.entries(ev="event", sid=sid, event="update item")
    assert [(e["args"], e["ack"]) for e in calls] == [(["1", {"name": "updated"}], True)] * 4


async def test_ack_client_side_timeout(server: NodeServer, transport: str) -> None:
    """``timeout(0.5)`` on an event the server receives but never acknowledges: the
    callback gets an AckTimeoutError, ``emit_with_ack`` raises it, after 0.5 s."""
    client = client_for(server, transport)
    got: list[tuple[Any, ...]] = []
    called = trio.Event()

    def callback(*args: Any) -> None:
        got.append(args)
        called.set()

    with trio.fail_after(LIMIT):
        async with client:
            sid = client.id
            started = trio.current_time()
            await client.timeout(0.5).emit("no-answer", 1, callback=callback)
            with pytest.raises(AckTimeoutError):
                await client.emit_with_ack("no-answer", 2, timeout=0.5)
            await called.wait()
            assert trio.current_time() - started >= 0.45
            await sync(server, client)
    [(err, *rest)] = got
    assert isinstance(err, AckTimeoutError)
    assert rest == []
    calls = server.entries(ev="event", sid=sid, event="no-answer")
    assert [(e["args"], e["ack"]) for e in calls] == [([1], True), ([2], True)]


# -- acknowledgements, server → client ----------------------------------------------------


async def ask(client: Client, recorder: Recorder, request: dict[str, Any]) -> dict[str, Any]:
    """Have the server ask our client (see ``ask`` in sio_node_server.mjs); its report."""
    await client.emit("ask", request)
    [answer] = await recorder.first("answer", id=request["id"])
    return dict(answer)


async def test_ack_server_to_client(server: NodeServer, transport: str) -> None:
    """Node's ``socket.timeout(2000).emitWithAck`` (and ``emit`` with a callback) answered
    by our handlers' return values: one value, a tuple → several args, binary, async."""
    client = client_for(server, transport)
    recorder = Recorder(client)

    @client.on("single")
    def single(x: str) -> str:
        return f"got {x}"

    @client.on("multi")
    def multi(*args: Any) -> tuple[Any, ...]:
        return ("answer", *args)

    @client.on("async")
    async def async_handler() -> dict[str, Any]:
        await trio.sleep(0.01)
        return {"ok": True, "data": b"\x01", "when": datetime.datetime(1970, 1, 1)}

    @client.on("none")
    def none() -> None:
        return None

    def request(
        n: int, event: str, *args: Any, style: str = "promise", timeout: int | None = 2000
    ) -> dict[str, Any]:
        return {"id": n, "event": event, "args": list(args), "style": style, "timeout": timeout}

    with trio.fail_after(LIMIT):
        async with client:
            answer = await ask(client, recorder, request(1, "single", "a"))
            assert answer["value"] == "got a"
            answer = await ask(
                client, recorder, request(2, "multi", "q", b"\x07", style="callback")
            )
            assert (answer["err"], answer["args"]) == (None, ["answer", "q", b"\x07"])
            answer = await ask(client, recorder, request(3, "multi", "p", style="plain"))
            assert answer["args"] == ["answer", "p"]
            answer = await ask(client, recorder, request(4, "async"))
            assert answer["value"] == {
                "ok": True,
                "data": b"\x01",
                "when": "1970-01-01T00:00:00.000Z",
            }
            answer = await ask(client, recorder, request(5, "none", style="callback"))
            assert (answer["err"], answer["args"]) == (None, [])
            answer = await ask(client, recorder, request(6, "single", "b", timeout=None))
            assert answer["value"] == "got b"
            sid = client.id
            await sync(server, client)
    assert [e["id"] for e in server.entries(ev="answer", sid=sid)] == [1, 2, 3, 4, 5, 6]
    assert [e["event"] for e in server.entries(ev="event", sid=sid, event="ask")] == ["ask"] * 6


async def test_ack_server_side_timeout(server: NodeServer, transport: str) -> None:
    """Node's ``socket.timeout(300)`` towards our client: a handler too slow to answer in
    time makes ``emitWithAck`` reject and the callback get an error; the late ack is
    ignored; the connection carries on."""
    client = client_for(server, transport)
    recorder = Recorder(client)

    @client.on("slow")
    async def slow(x: int) -> int:
        await trio.sleep(0.5)
        return x

    with trio.fail_after(LIMIT):
        async with client:
            answer = await ask(
                client, recorder, {"id": 1, "event": "slow", "args": [1], "timeout": 300}
            )
            assert answer["error"] == "operation has timed out"
            assert answer["ms"] >= 250
            answer = await ask(
                client,
                recorder,
                {"id": 2, "event": "slow", "args": [2], "timeout": 300, "style": "callback"},
            )
            assert (answer["err"], answer["args"]) == ("operation has timed out", [])
            # Still fine after the late acks.
            answer = await ask(client, recorder, {"id": 3, "event": "slow", "args": [3]})
            assert answer["value"] == 3
            await sync(server, client)


async def test_ack_server_side_timeout_without_handler(server: NodeServer, transport: str) -> None:
    """An event with an ack id but no handler on our client: as with the JS client (and
    our own server), nobody acknowledges it, so Node's ``emitWithAck`` times out."""
    client = client_for(server, transport)
    recorder = Recorder(client)
    with trio.fail_after(LIMIT):
        async with client:
            answer = await ask(client, recorder, {"id": 1, "event": "unhandled", "timeout": 300})
    assert answer.get("error") == "operation has timed out", answer


# -- volatile -----------------------------------------------------------------------------


async def test_volatile_from_client_while_connected(server: NodeServer, transport: str) -> None:
    client = client_for(server, transport)
    with trio.fail_after(LIMIT):
        async with client:
            sid = client.id
            assert sid is not None
            for i in range(1, 6):
                await client.volatile.emit("vping", i)
                await trio.sleep(0.03)
            await client.timeout(1).volatile.emit("vping", 6)
            await sync(server, client)
    assert server.args(sid, "vping") == [[i] for i in range(1, 7)]


# -- namespaces ---------------------------------------------------------------------------


async def test_namespaces_multiplexed(server: NodeServer, transport: str) -> None:
    """``/`` and ``/admin`` over one Engine.IO connection; auth from an async function."""

    async def auth() -> dict[str, str]:
        await trio.lowlevel.checkpoint()
        return {"token": "secret", "user": "py-admin"}

    client = client_for(server, transport, namespaces=["/", "/admin"], auth=auth)
    admin = client.of("/admin")
    admin_recorder = Recorder(admin)
    main_recorder = Recorder(client)
    with trio.fail_after(LIMIT):
        async with client:
            assert client.connected
            assert admin.connected
            assert admin.id is not None
            assert admin.id != client.id
            assert await admin_recorder.first("admin-hello") == ({"welcome": "py-admin"},)
            assert await main_recorder.first("hello") == ("world",)
            assert admin_recorder.all("hello") == []
            main_who = await client.emit_with_ack("whoami", timeout=WAIT)
            admin_who = await admin.emit_with_ack("whoami", timeout=WAIT)
            assert (main_who["nsp"], admin_who["nsp"]) == ("/", "/admin")
            assert admin_who["auth"] == {"token": "secret", "user": "py-admin"}
            assert main_who["eio"] == admin_who["eio"]
            await client.emit("where", "main")
            await admin.emit("where", "admin", b"\x02")
            assert await admin.emit_with_ack("echo", "x", b"\x01", timeout=WAIT) == ("x", b"\x01")
            await sync(server, client)
            await sync(server, admin)
            admin_sid, main_sid = admin.id, client.id
    [entry] = server.entries(ev="connection", sid=admin_sid)
    assert entry["nsp"] == "/admin"
    assert entry["eio"] == server.entries(ev="connection", sid=main_sid)[0]["eio"]
    assert server.args(main_sid, "where") == [["main"]]
    assert server.args(admin_sid, "where") == [["admin", bytes_of("02")]]


@pytest.mark.parametrize("namespaces", [["/admin"], ["/", "/admin"]], ids=["admin", "both"])
async def test_middleware_refusal(
    server: NodeServer, transport: str, namespaces: list[str]
) -> None:
    """The ``/admin`` middleware refuses a bad token with ``err.data``: connecting raises
    ConnectionRefused with the server's message and data."""
    client = client_for(server, transport, namespaces=namespaces, auth={"token": "bad"})
    with trio.fail_after(LIMIT):
        with pytest.raises(trio_sio.ConnectionRefused) as info:
            async with client:
                pytest.fail("connected despite the middleware")
    assert info.value.message == "not authorized"
    assert info.value.data == {"code": 403, "reason": "bad token"}
    with trio.fail_after(LIMIT):
        await server.wait_entry(ev="refused", auth={"token": "bad"})


# -- rooms --------------------------------------------------------------------------------


async def test_rooms_between_two_clients(server: NodeServer, transport: str) -> None:
    room = f"room-{transport}"
    a = client_for(server, transport)
    b = client_for(server, transport)
    rec_a, rec_b = Recorder(a), Recorder(b)
    with trio.fail_after(LIMIT):
        async with a, b:
            assert await a.emit_with_ack("join", room, timeout=WAIT) == [room]
            assert await b.emit_with_ack("join", room, timeout=WAIT) == [room]
            assert await a.emit_with_ack("to-room", room, "n1", b"\x09", timeout=WAIT) == "sent"
            assert await rec_b.first("room-news") == ("n1", b"\x09")
            assert await b.emit_with_ack("to-room", room, "n2", timeout=WAIT) == "sent"
            assert await rec_a.first("room-news") == ("n2",)
            await sync(server, a)
            await sync(server, b)
    # socket.to(room) excludes the sender.
    assert rec_a.all("room-news") == [("n2",)]
    assert rec_b.all("room-news") == [("n1", b"\x09")]


# -- the page's restart example -----------------------------------------------------------


@pytest.mark.parametrize("volatile", [False, True], ids=["plain", "volatile"])
async def test_restart_example(transport: str, volatile: bool) -> None:
    """A counter emitted every 100 ms; the server is killed after count 4 and started
    again on the same port a second later. Plain emits are buffered while disconnected and
    sent on reconnection: every count arrives once, in order. Volatile ones sent while
    disconnected are dropped.

    The kill happens between two counts, once the server has logged count 4, and the
    counter goes on once the client has seen the connection drop: a count emitted into a
    connection that is already dead but not yet known to be is lost whatever the flag (as
    with the JS client), which is not what this test is about.
    """
    node = _require_node()
    first = await trio.to_thread.run_sync(NodeServer, node)
    second: NodeServer | None = None
    client = Client(
        first.url,
        transports=TRANSPORTS[transport],
        reconnection_delay=0.1,
        reconnection_delay_max=0.5,
        randomization_factor=0,
    )
    sent: list[tuple[int, bool]] = []  # (count, connected when emitted)
    reconnects: list[int] = []
    client.on("reconnect", reconnects.append)
    stop = trio.Event()

    async def emitter() -> None:
        count = 0
        while not stop.is_set():
            count += 1
            sent.append((count, client.connected))
            if volatile:
                await client.volatile.emit("ping", count)
            else:
                await client.emit("ping", count)
            if count == 4:
                await first.wait_entry(ev="event", event="ping", args=[4])
                first.kill()
                with trio.fail_after(WAIT):
                    while client.connected:
                        await trio.sleep(0.005)
            with trio.move_on_after(0.1):
                await stop.wait()

    try:
        with trio.fail_after(RESTART_LIMIT):
            async with client:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(emitter)
                    with trio.fail_after(WAIT):
                        while first.proc.poll() is None:
                            await trio.sleep(0.01)
                    await trio.sleep(1.0)
                    second = await trio.to_thread.run_sync(
                        functools.partial(NodeServer, node, first.port)
                    )
                    await second.wait_entry(ev="connection", nsp="/")
                    target = len(sent) + 5
                    with trio.fail_after(WAIT):
                        while len(sent) < target:
                            await trio.sleep(0.02)
                    stop.set()
                last = sent[-1][0]
                if not volatile:
                    await second.wait_entry(ev="event", event="ping", args=[last])
                await sync(second, client)
    finally:
        first.stop()
        if second is not None:
            second.stop()

    assert reconnects, "the client did not reconnect"
    assert second is not None
    before = [e["args"][0] for e in first.entries(ev="event", event="ping")]
    after = [e["args"][0] for e in second.entries(ev="event", event="ping")]
    offline = [n for n, connected in sent if not connected]
    assert len(offline) >= 5, sent  # a second without a server
    assert before == [1, 2, 3, 4]
    if not volatile:
        # connect / 1 2 3 4 / (restart) connect / 5 6 7 ... : once each, in order.
        assert after == list(range(5, last + 1)), after
        assert offline[0] == 5
    else:
        # connect / 1 2 3 4 / (restart) connect / 17 18 19 ...: the offline counts are lost.
        assert after == [n for n, connected in sent if connected and n > 4], (after, sent)
        assert len(after) >= 5
        assert not set(offline) & set(after)
        assert after[0] == offline[-1] + 1


# -- namespaces connected and disconnected one by one -------------------------------------


async def test_server_disconnects_a_namespace(server: NodeServer, transport: str) -> None:
    """Node's ``socket.disconnect()`` on ``/admin``: the ack our client waits for there fails
    with "io server disconnect", emits on it raise, ``/`` carries on, and ``connect()``
    joins ``/admin`` again over the same Engine.IO connection (not automatically)."""
    client = client_for(server, transport, namespaces=["/", "/admin"], auth={"token": "secret"})
    admin = client.of("/admin")
    reasons: list[str] = []
    admin.on("disconnect", reasons.append)
    with trio.fail_after(LIMIT):
        async with client:
            first_sid = admin.id
            outcome: list[str] = []

            async def wait_ack() -> None:
                try:
                    await admin.emit_with_ack("no-answer")
                except trio_sio.ConnectionClosed as exc:
                    outcome.append(exc.reason)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_ack)
                await trio.sleep(0.05)
                await admin.emit("kick-me")
            assert outcome == ["io server disconnect"]
            assert admin.server_disconnected and not admin.connected
            with pytest.raises(trio_sio.ConnectionClosed):
                await admin.emit("after")
            entry = await server.wait_entry(ev="disconnect", sid=first_sid)
            assert entry["reason"] == "server namespace disconnect"
            await trio.sleep(0.3)
            assert not admin.connected
            assert reasons == ["io server disconnect"]
            await sync(server, client)
            await admin.connect()
            assert admin.connected and admin.id != first_sid
            who = await admin.emit_with_ack("whoami", timeout=WAIT)
            main_who = await client.emit_with_ack("whoami", timeout=WAIT)
            assert who["nsp"] == "/admin" and who["eio"] == main_who["eio"]


async def test_namespace_added_connected_refused_and_left(
    server: NodeServer, transport: str
) -> None:
    """``client.of("/admin")`` after connecting, then ``connect()`` (socket.io-client's
    ``manager.socket()`` + ``socket.connect()``): refused by Node's middleware with its
    message and data, accepted with a good token (auth evaluated again), left with
    ``disconnect()`` (Node sees "client namespace disconnect")."""
    token = "bad"
    client = client_for(server, transport, auth=lambda: {"token": token, "user": "late"})
    with trio.fail_after(LIMIT):
        async with client:
            admin = client.of("/admin")
            hello = Recorder(admin)
            with pytest.raises(trio_sio.ConnectionRefused) as info:
                await admin.connect()
            assert info.value.message == "not authorized"
            assert info.value.data == {"code": 403, "reason": "bad token"}
            token = "secret"
            await admin.connect()
            assert await hello.first("admin-hello") == ({"welcome": "late"},)
            sid = admin.id
            for n in range(3):
                await admin.emit("where", n)
            await admin.disconnect()
            entry = await server.wait_entry(ev="disconnect", sid=sid)
            assert entry["reason"] == "client namespace disconnect"
            assert server.args(sid, "where") == [[0], [1], [2]]
            assert client.connected
            await sync(server, client)


# -- handler concurrency and the ack parameter --------------------------------------------


async def test_handlers_run_concurrently_with_node(server: NodeServer, transport: str) -> None:
    """Node asks two questions at once; our first handler waits for the second one's:
    answered only because handlers run concurrently."""
    client = client_for(server, transport)
    recorder = Recorder(client)
    second_seen = trio.Event()

    @client.on("first")
    async def first() -> str:
        await second_seen.wait()
        return "first"

    @client.on("second")
    def second() -> str:
        second_seen.set()
        return "second"

    with trio.fail_after(LIMIT):
        async with client:
            await client.emit("ask", {"id": 1, "event": "first", "timeout": 2000})
            await client.emit("ask", {"id": 2, "event": "second", "timeout": 2000})
            [one] = await recorder.first("answer", id=1)
            [two] = await recorder.first("answer", id=2)
    assert (one["value"], two["value"]) == ("first", "second")


async def test_ack_parameter_with_node(server: NodeServer, transport: str) -> None:
    """A handler taking ``ack``: acknowledged later from another task (Node's
    ``emitWithAck`` resolves), or never (Node's times out)."""
    client = client_for(server, transport)
    recorder = Recorder(client)
    pending: list[trio_sio.Ack] = []

    @client.on("later")
    def later(x: int, *, ack: trio_sio.Ack) -> None:
        pending.append(ack)

    @client.on("never")
    def never(*, ack: trio_sio.Ack) -> str:
        return "ignored"

    async def acknowledge() -> None:
        while not pending:
            await trio.sleep(0.01)
        await trio.sleep(0.2)
        await pending[0]("late", b"\x02")

    with trio.fail_after(LIMIT):
        async with client, trio.open_nursery() as nursery:
            nursery.start_soon(acknowledge)
            request = {"id": 1, "event": "later", "args": [1], "timeout": 2000, "style": "callback"}
            answer = await ask(client, recorder, request)
            assert (answer["err"], answer["args"]) == (None, ["late", b"\x02"])
            assert answer["ms"] >= 150
            answer = await ask(client, recorder, {"id": 2, "event": "never", "timeout": 300})
            assert answer["error"] == "operation has timed out"


async def test_volatile_after_plain_emits_keeps_order(server: NodeServer, transport: str) -> None:
    """Five plain emits then a volatile one: Node receives them in that order."""
    client = client_for(server, transport)
    with trio.fail_after(LIMIT):
        async with client:
            sid = client.id
            for n in range(1, 6):
                await client.emit("seq", n)
            await client.volatile.emit("seq", 6)
            await sync(server, client)
    assert server.args(sid or "", "seq") == [[n] for n in range(1, 7)]
