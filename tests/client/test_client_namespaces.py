"""Namespaces of the client: disconnected by the server, refused on reconnection, added with
``of()``, connected and disconnected one by one. In-memory network, virtual time."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from client_support import make_server, serving, until

import trio_sio
from trio_sio import ConnectionClosed


def echo(socket: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
    return args


async def test_server_disconnect_fails_acks_buffered_and_waiting_emits(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The server disconnects ``/chat`` while 64 packets sit in the connection's send queue,
    20 in the namespace's buffer and 16 emits wait for room: every one of them fails with
    ConnectionClosed("io server disconnect"), at once."""
    sio = make_server()
    sio.of("/chat").on("echo", echo)
    network = await serving(nursery, sio)
    client = trio_sio.Client(
        "http://test",
        namespaces=["/", "/chat"],
        transports=["websocket"],
        buffer_size=20,
        connector=network.connect,
    )
    reasons: list[str] = []
    client.of("/chat").on("disconnect", reasons.append)
    async with client:
        chat = client.of("/chat")
        server_socket = sio.of("/chat").sockets[chat.id or ""]
        outcomes: list[str] = []

        async def ask(i: int) -> None:
            try:
                await chat.emit_with_ack("nobody listens", i)
                outcomes.append("acked")
            except ConnectionClosed as exc:
                outcomes.append(exc.reason)

        network.freeze()
        async with trio.open_nursery() as tasks:
            for i in range(100):
                tasks.start_soon(ask, i)
            await trio.sleep(1)
            assert len(chat._state.buffer) == 20  # the rest: 64 in the send queue, 16 waiting
            await server_socket.disconnect()
            t0 = trio.current_time()
            network.thaw()
        assert trio.current_time() - t0 < 0.1
        assert outcomes == ["io server disconnect"] * 100
        assert not chat._state.pending and not chat._state.sent_acks and len(chat._state.acks) == 0
        assert not chat.connected and chat.server_disconnected
        with pytest.raises(ConnectionClosed, match="io server disconnect"):
            await chat.emit("after")
        with pytest.raises(ConnectionClosed):
            await chat.emit_with_ack("echo", "after")
        # Not reconnected automatically, even after a while; "/" is unaffected.
        await trio.sleep(30)
        assert not chat.connected
        assert await client.emit_with_ack("echo", 1) == 1
        # Connected again by hand, on the same connection.
        await chat.connect()
        assert chat.connected and not chat.server_disconnected
        assert await chat.emit_with_ack("echo", "again") == "again"
        assert network.connections == 1
    assert reasons == ["io server disconnect", "io client disconnect"]


async def test_refusal_on_reconnection_fails_buffered_emits(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Emits buffered during an outage, and one waiting for room, fail when the server
    refuses the namespace on reconnection; ``connect()`` tries again (and raises
    ConnectionRefused when refused)."""
    sio = make_server()
    admin_ns = sio.of("/admin")
    admin_ns.on("echo", echo)
    allowed = True

    @admin_ns.use
    def check(socket: trio_sio.Socket, auth: Any) -> None:
        if not allowed:
            raise trio_sio.ConnectionRefused("closed for now", {"code": 7})

    network = await serving(nursery, sio)
    client = trio_sio.Client(
        "http://test",
        namespaces=["/", "/admin"],
        transports=["websocket"],
        buffer_size=2,
        randomization_factor=0,
        connector=network.connect,
    )
    errors: list[Any] = []
    client.of("/admin").on("connect_error", errors.append)
    async with client:
        admin = client.of("/admin")
        network.server = None
        await network.drop()
        await until(lambda: not admin.connected)
        outcomes: list[Any] = []

        async def ask(i: int) -> None:
            try:
                outcomes.append(await admin.emit_with_ack("echo", i))
            except ConnectionClosed as exc:
                outcomes.append(exc.reason)

        async with trio.open_nursery() as tasks:
            for i in range(3):  # two buffered, one waiting for room
                tasks.start_soon(ask, i)
            await trio.sleep(0.1)
            assert len(admin._state.buffer) == 2
            allowed = False
            network.server = sio
        assert outcomes == ["io server disconnect"] * 3
        await until(lambda: errors)
        assert errors == [{"message": "closed for now", "data": {"code": 7}}]
        assert admin.refused and not admin.connected
        with pytest.raises(ConnectionClosed):
            await admin.emit("refused")
        assert client.connected and await client.emit_with_ack("echo", "main") == "main"

        with pytest.raises(trio_sio.ConnectionRefused) as info:
            await admin.connect()
        assert (info.value.message, info.value.data) == ("closed for now", {"code": 7})
        allowed = True
        await admin.connect()
        assert admin.connected and not admin.refused
        assert await admin.emit_with_ack("echo", "back") == "back"


async def test_of_connect_and_disconnect_one_namespace(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    late = sio.of("/late")
    late.on("echo", echo)
    server_reasons: list[str] = []
    late.on("disconnect", lambda socket, reason: server_reasons.append(reason))
    received: list[Any] = []
    late.on("note", lambda socket, n: received.append(n))
    network = await serving(nursery, sio)
    client = trio_sio.Client("http://test", transports=["websocket"], connector=network.connect)
    early = client.of("/early")  # made before connecting: connected with "/"
    sio.of("/early").on("echo", echo)
    async with client:
        assert early.connected
        sock = client.of("late")
        assert sock is client.of("/late")
        assert not sock.connected
        events: list[str] = []
        sock.on("connect", lambda: events.append("connect"))
        sock.on("disconnect", events.append)
        await sock.connect()
        assert sock.connected and sock.id in late.sockets
        await sock.connect()  # connected already: returns at once
        for n in range(3):
            await sock.emit("note", n)
        await sock.disconnect()  # the emits go out first
        assert not sock.connected
        await until(lambda: server_reasons)
        assert server_reasons == ["client namespace disconnect"]
        assert received == [0, 1, 2]
        with pytest.raises(ConnectionClosed, match="io client disconnect"):
            await sock.emit("note", 3)
        assert client.connected  # the connection stays for the other namespaces
        await sock.connect()
        assert await sock.emit_with_ack("echo", "x") == "x"
        assert events == ["connect", "io client disconnect", "connect"]
        assert network.connections == 1
    assert not sock.connected
    with pytest.raises(ConnectionClosed):
        await sock.connect()
    with pytest.raises(ConnectionClosed):
        await client.of("/after").emit("x")


async def test_connect_needs_a_running_client() -> None:
    client = trio_sio.Client("http://test")
    with pytest.raises(RuntimeError):
        await client.of("/x").connect()


async def test_connection_closed_when_unused_and_reopened_by_connect(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """As with socket.io-client's manager: the connection closes when its last namespace
    is disconnected, without reconnecting; ``connect()`` opens a new one at once."""
    sio = make_server()
    network = await serving(nursery, sio)
    attempts: list[int] = []
    client = trio_sio.Client("http://test", transports=["websocket"], connector=network.connect)
    client.on("reconnect_attempt", attempts.append)
    async with client:
        await client.main.disconnect()
        await until(lambda: sio.engine.sessions == {})
        assert client.transport is None
        await trio.sleep(30)
        assert network.connections == 1
        t0 = trio.current_time()
        await client.main.connect()
        assert trio.current_time() - t0 < 0.1  # no back-off
        assert network.connections == 2
        assert await client.emit_with_ack("echo", 2) == 2
    assert attempts == []


async def test_server_disconnected_namespace_stays_off_after_reconnection(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    sio.of("/chat")
    network = await serving(nursery, sio)
    client = trio_sio.Client(
        "http://test",
        namespaces=["/", "/chat"],
        transports=["websocket"],
        randomization_factor=0,
        connector=network.connect,
    )
    async with client:
        chat = client.of("/chat")
        await sio.of("/chat").sockets[chat.id or ""].disconnect()
        await until(lambda: chat.server_disconnected)
        await network.drop()
        await until(lambda: network.connections == 2 and client.connected)
        await trio.sleep(5)
        assert not chat.connected and sio.of("/chat").sockets == {}
