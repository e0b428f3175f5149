"""The client's round-2 options over an in-memory network, in virtual time: ``open_client``,
entering a client again, auth through the wire conversion, manager events, cookies,
``try_all_transports`` and ``remember_upgrade``."""

from __future__ import annotations

import datetime
import email.utils
import time
from typing import Any

import pytest
import trio
import trio.testing
from client_support import make_server, serving, until

import trio_sio
from trio_sio.client import CookieJar
from trio_sio.protocol.socketio import Packet, PacketType


async def test_open_client_registers_handlers_before_connecting(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()

    @sio.on("connection")
    async def hello(socket: trio_sio.Socket, auth: Any) -> None:
        await socket.emit("welcome", "at once")

    network = await serving(nursery, sio)
    got: list[str] = []
    async with trio_sio.open_client(
        "http://test", connector=network.connect, handlers={"welcome": got.append}
    ) as client:
        assert client.connected
        await until(lambda: got == ["at once"])
        assert await client.emit_with_ack("echo", 1) == 1
    assert not client.connected
    assert trio_sio.connect is trio_sio.client.open_client


async def test_auth_goes_through_the_wire_conversion(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    seen: list[Any] = []

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: Any) -> None:
        seen.append(auth)

    network = await serving(nursery, sio)
    calls = 0

    async def auth() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"at": datetime.datetime(2024, 5, 6, tzinfo=datetime.UTC), "n": calls}

    client = trio_sio.Client("http://test", auth=auth, connector=network.connect)
    async with client:
        await until(lambda: len(seen) == 1)
    async with client:  # entered again: auth is called again
        await until(lambda: len(seen) == 2)
    assert seen == [
        {"at": "2024-05-06T00:00:00.000Z", "n": 1},
        {"at": "2024-05-06T00:00:00.000Z", "n": 2},
    ]

    bad = trio_sio.Client("http://test", auth={"s": {1, 2}}, connector=network.connect)
    with pytest.raises(TypeError, match="set"):
        async with bad:
            pass


async def test_a_client_connects_again_after_its_block(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """As socket.io-client's ``socket.disconnect(); socket.connect()``."""
    sio = make_server()

    @sio.of("/chat").on("echo")
    async def echo(socket: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    network = await serving(nursery, sio)
    client = trio_sio.Client("http://test", connector=network.connect)
    events: list[Any] = []
    client.on("connect", lambda: events.append("connect"))
    client.on("disconnect", events.append)
    chat = client.of("/chat")
    async with client:
        first = client.id
        assert await client.emit_with_ack("echo", "a") == "a"
        await chat.connect()
        with pytest.raises(RuntimeError, match="in use"):
            async with client:
                pass
    assert not client.connected and not chat.connected
    with pytest.raises(trio_sio.ConnectionClosed):
        await client.emit("echo", "closed")
    async with client:
        assert client.connected and client.id != first
        assert await client.emit_with_ack("echo", "b") == "b"
        assert not chat.connected  # made with of() later: connected on demand only
        await chat.connect()
        assert await chat.emit_with_ack("echo", "c") == "c"
    await until(lambda: len(events) == 4)
    assert events == ["connect", "io client disconnect", "connect", "io client disconnect"]
    assert network.connections >= 2


async def test_manager_events_in_socket_io_client_order(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)
    client = trio_sio.Client(
        "http://test",
        transports=["websocket"],
        connector=network.connect,
        reconnection_delay=1,
        randomization_factor=0,
        reconnection_attempts=2,
    )
    events: list[tuple[Any, ...]] = []
    for name in ("open", "close", "error", "ping", "reconnect_attempt", "reconnect"):
        client.io.on(name, lambda *args, name=name: events.append((name, *args)))
    client.io.on("reconnect_error", lambda exc: events.append(("reconnect_error",)))
    client.on("reconnect_failed", lambda: events.append(("reconnect_failed",)))  # also here
    packets: list[Packet] = []
    client.io.on("packet", packets.append)
    pings: list[str] = []
    client.on("ping", pings.append)  # a namespace event of that name is not the manager's
    with pytest.raises(ValueError, match="not a manager event"):
        client.io.on("connect", print)
    async with client:
        assert events == [("open",)]
        assert [p.type for p in packets] == [PacketType.CONNECT]
        await trio.sleep(26)  # the server pings every 25 s
        assert ("ping",) in events
        assert pings == []
        await sio.emit("ping", "namespace event")
        await until(lambda: pings == ["namespace event"])
        events.clear()
        network.server = None  # the next attempts are refused
        await network.drop()
        await until(lambda: ("reconnect_failed",) in events)
    names = [e[0] for e in events]
    assert names == [
        "close",
        "reconnect_attempt",
        "error",
        "reconnect_error",
        "reconnect_attempt",
        "error",
        "reconnect_error",
        "reconnect_failed",
    ]
    assert events[0] == ("close", "transport close")


async def test_manager_events_on_reconnection(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)
    client = trio_sio.Client(
        "http://test", transports=["websocket"], connector=network.connect, reconnection_delay=1
    )
    names: list[str] = []
    for name in ("open", "close", "reconnect_attempt", "reconnect"):
        client.io.on(name, lambda *args, name=name: names.append(name))
    client.on("connect", lambda: names.append("connect"))
    async with client:
        await network.drop()
        await until(lambda: names.count("connect") == 2)
    assert names == [
        "open",
        "connect",
        "close",
        "reconnect_attempt",
        "open",
        "reconnect",
        "connect",
        "close",  # leaving the block: "io client disconnect"
    ]


async def test_cookies_are_kept_across_reconnections(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server(cookie="io")
    network = await serving(nursery, sio)
    client = trio_sio.Client("http://test", transports=["polling"], connector=network.connect)
    assert isinstance(client.cookies, CookieJar)
    async with client:
        assert "io" in client.cookies
        header = client.cookies.header("test", "/socket.io/", secure=False)
        assert header is not None and header.startswith("io=")
    no_jar = trio_sio.Client("http://test", cookies=False, connector=network.connect)
    assert no_jar.cookies is None
    async with no_jar:
        assert no_jar.connected


async def test_try_all_transports_falls_back(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server(transports=["polling"])
    network = await serving(nursery, sio)
    plain = trio_sio.Client(
        "http://test",
        transports=["websocket", "polling"],
        reconnection=False,
        connector=network.connect,
    )
    with pytest.raises(trio_sio.ConnectError):
        async with plain:
            pass
    client = trio_sio.Client(
        "http://test",
        transports=["websocket", "polling"],
        try_all_transports=True,
        reconnection=False,
        connector=network.connect,
    )
    async with client:
        assert client.transport == "polling"
        assert await client.emit_with_ack("echo", 1) == 1


async def test_remember_upgrade_starts_on_websocket(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)
    for remember, second in ((False, "polling"), (True, "websocket")):
        client = trio_sio.Client(
            "http://test", remember_upgrade=remember, connector=network.connect
        )
        async with client:
            assert client.transport == "polling"
            await until(lambda client=client: client.transport == "websocket")  # type: ignore[misc]
        async with client:
            assert client.transport == second


def test_cookie_jar_rules() -> None:
    jar = CookieJar()
    jar.set_cookie("a.example", "/socket.io/?EIO=4", "SRV=one; Path=/")
    jar.set_cookie("a.example", "/socket.io/", "sec=1; Secure")
    jar.set_cookie("a.example", "/", "wide=1; Domain=example")
    jar.set_cookie("a.example", "/", "other=1; Domain=elsewhere.org")  # refused
    jar.set_cookie("a.example", "/", "no-equals-sign")
    jar.set_cookie("a.example", "/", "x" * 5000 + "=1")
    assert jar.header("a.example", "/socket.io/?x=1", secure=False) == "SRV=one; wide=1"
    assert jar.header("a.example", "/socket.io/", secure=True) == "sec=1; SRV=one; wide=1"
    assert jar.header("b.example", "/", secure=False) == "wide=1"
    assert jar.header("example.org", "/", secure=False) is None
    jar.set_cookie("a.example", "/", "SRV=gone; Path=/; Max-Age=0")
    jar.set_cookie(
        "a.example", "/", "wide=x; Domain=example; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    )
    assert jar.header("a.example", "/", secure=False) is None
    for i in range(200):
        jar.set_cookie("a.example", "/", f"c{i}=1")
    assert len(jar) == 64


async def test_cookie_max_age_in_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    jar = CookieJar()
    jar.set_cookie("h", "/", "short=1; Max-Age=10")
    assert jar.header("h", "/", secure=False) == "short=1"
    await trio.sleep(11)
    assert jar.header("h", "/", secure=False) is None


async def test_cookie_expires_in_the_future_is_kept_until_then(
    autojump_clock: trio.testing.MockClock,
) -> None:
    jar = CookieJar()
    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    jar.set_cookie("h", "/", f"dated=1; Expires={when}")
    jar.set_cookie("h", "/", "session=1")
    await trio.sleep(50)
    assert jar.header("h", "/", secure=False) == "dated=1; session=1"
    await trio.sleep(20)
    assert jar.header("h", "/", secure=False) == "session=1"
    # Max-Age wins over Expires, whichever comes first in the header.
    jar.set_cookie("h", "/", f"both=1; Expires={when}; Max-Age=5")
    await trio.sleep(6)
    assert jar.header("h", "/", secure=False) == "session=1"


class _Recorder(trio.abc.Stream):
    """A stream that keeps a copy of what the client writes."""

    def __init__(self, stream: trio.abc.Stream, sent: bytearray) -> None:
        self._stream = stream
        self._sent = sent

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._sent += data
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._stream.aclose()


async def test_compress_false_sends_an_uncompressed_frame(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server(per_message_deflate=True)
    network = await serving(nursery, sio)
    sent = bytearray()

    async def connect(host: str, port: int, ssl_context: Any) -> trio.abc.Stream:
        return _Recorder(await network.connect(host, port, ssl_context), sent)

    big = "compressible " * 500
    async with trio_sio.open_client(
        "http://test", transports=["websocket"], connector=connect
    ) as client:
        assert client.compressed
        start = len(sent)
        assert await client.emit_with_ack("echo", big) == big
        squeezed = len(sent) - start
        start = len(sent)
        assert await client.compress(False).emit_with_ack("echo", big) == big
        plain = len(sent) - start
    assert squeezed < len(big) // 10  # compressed (the server inflated it: the echo)
    assert plain > len(big)  # the same event, sent plain


@pytest.mark.parametrize("transports", [("websocket",), ("polling", "websocket")])
@pytest.mark.parametrize("server_deflate", [True, False])
async def test_permessage_deflate_with_our_server(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    transports: tuple[str, ...],
    server_deflate: bool,
) -> None:
    sio = make_server(per_message_deflate=server_deflate)
    network = await serving(nursery, sio)
    big = "compressible " * 5000
    async with trio_sio.open_client(
        "http://test", transports=transports, connector=network.connect
    ) as client:
        await until(lambda: client.transport == "websocket")
        assert client.compressed is server_deflate
        for _ in range(3):  # the compression context is kept from one message to the next
            assert await client.emit_with_ack("echo", big, b"\x00" * 100_000) == (
                big,
                b"\x00" * 100_000,
            )
    async with trio_sio.open_client(
        "http://test",
        transports=["websocket"],
        per_message_deflate=False,
        connector=network.connect,
    ) as client:
        assert not client.compressed


def _task_names() -> list[str]:
    names: list[str] = []
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        names.append(task.name)
        todo.extend(t for n in task.child_nurseries for t in n.child_tasks)
    return names


async def test_no_reader_task_between_the_websocket_and_the_handlers(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """On WebSocket, the client's reading task reads the socket itself: the engine runs no
    receive task, and trio-websocket none either."""
    sio = make_server()
    network = await serving(nursery, sio)
    for transports in (("websocket",), ("polling", "websocket")):
        async with trio_sio.open_client(
            "http://test", transports=transports, connector=network.connect
        ) as client:
            await until(lambda: client.transport == "websocket")
            await trio.testing.wait_all_tasks_blocked()
            assert await client.emit_with_ack("echo", "hi") == "hi"
            names = _task_names()
            engine = [
                n
                for n in names
                if n.startswith(("trio_sio.engineio.client.", "trio_sio.engineio._client_"))
            ]
            assert not [n for n in engine if "_receive_loop" in n or "_websocket_loop" in n]
            assert engine  # the send loop and the watchdog, so the names are the right ones
            assert not [n for n in names if "trio_websocket" in n]
            assert sum("Reader._run" in n for n in names) == 1


async def test_no_retry_task_without_retries(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)
    counts = {}
    for retries in (0, 2):
        async with trio_sio.open_client(
            "http://test", retries=retries, connector=network.connect
        ) as client:
            assert client.connected
            counts[retries] = sum("RetryLane.run" in name for name in _task_names())
    assert counts == {0: 0, 2: 1}
