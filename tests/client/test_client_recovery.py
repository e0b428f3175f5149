"""Connection state recovery, our client against our server over an in-memory network, in
virtual time: the link is cut (``MemoryNetwork.drop``), the server broadcasts meanwhile, and
the client comes back with its socket, rooms, data and the events it missed."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import trio_sio
from trio_sio.adapters.recovery import ConnectionStateRecovery
from trio_sio.testing import MemoryNetwork

TRANSPORTS = [("websocket",), ("polling",), ("polling", "websocket")]


#: The server-side sockets of each "connection" handler run, by server.
CONNECTIONS: dict[int, list[trio_sio.Socket]] = {}


def make_server(**options: Any) -> trio_sio.Server:
    options.setdefault("ping_interval", 10)
    options.setdefault("ping_timeout", 5)
    options.setdefault("connection_state_recovery", True)
    sio = trio_sio.Server(**options)
    connections = CONNECTIONS.setdefault(id(sio), [])

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: Any) -> None:
        connections.append(socket)
        if not socket.recovered:
            socket.join("news")
            socket.data["visits"] = socket.data.get("visits", 0) + 1

    @sio.on("echo")
    async def echo(socket: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @sio.on("whoami")
    async def whoami(socket: trio_sio.Socket) -> dict[str, Any]:
        return {"sid": socket.id, "rooms": sorted(socket.rooms - {socket.id}), **socket.data}

    return sio


def collect(client: trio_sio.Client, *events: str) -> list[tuple[Any, ...]]:
    got: list[tuple[Any, ...]] = []
    for event in events:
        client.on(event, lambda *args, _event=event: got.append((_event, *args)))
    return got


async def until(condition: Any, timeout: float = 60) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


async def cut(network: MemoryNetwork, sio: trio_sio.Server, sid: str) -> None:
    """Cut the link and keep the client out until the server has let the socket go."""
    network.server = None
    await network.drop()
    # Over polling the server only notices at the next heartbeat.
    await until(lambda: sid not in sio.main.sockets)


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_missed_events_rooms_and_data_come_back(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, transports: tuple[str, ...]
) -> None:
    sio = make_server()
    await nursery.start(sio.run)
    network = MemoryNetwork(nursery, sio)
    client = trio_sio.Client(
        "http://test", transports=transports, randomization_factor=0, connector=network.connect
    )
    got = collect(client, "tick", "news", "other")
    connects: list[bool] = []
    client.on("connect", lambda: connects.append(client.recovered))
    async with client:
        await client.emit_with_ack("echo")  # the connection handler has run: it is in "news"
        sid = client.id
        assert sid is not None and client.recovered is False
        await sio.to("news").emit("news", 0)
        await until(lambda: len(got) == 1)
        await cut(network, sio, sid)
        await sio.emit("tick", 1)  # to everybody
        await sio.to("news").emit("news", 2, {"n": [3]})  # to the socket's room
        await sio.to("elsewhere").emit("other", 3)  # not for it
        await sio.volatile.emit("tick", "volatile")  # never kept
        network.server = sio
        await until(lambda: len(connects) == 2)
        assert client.recovered and client.id == sid
        await sio.to("news").emit("news", 4)  # after the recovery
        assert await client.emit_with_ack("whoami") == {"sid": sid, "rooms": ["news"], "visits": 1}
        await until(lambda: len(got) == 4)
    # once each, in order, the missed ones before the new one, offsets taken off
    assert got == [("news", 0), ("tick", 1), ("news", 2, {"n": [3]}), ("news", 4)]
    assert connects == [False, True]
    assert [s.recovered for s in CONNECTIONS.pop(id(sio))] == [False, True]


async def test_missed_events_run_before_the_connect_handler(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    await nursery.start(sio.run)
    network = MemoryNetwork(nursery, sio)
    client = trio_sio.Client(
        "http://test", transports=["websocket"], randomization_factor=0, connector=network.connect
    )
    order: list[Any] = []
    client.on("news", lambda n: order.append(("news", n, client.recovered)))
    client.on("connect", lambda: order.append(("connect", client.recovered)))
    async with client:
        await client.emit_with_ack("echo")  # the connection handler has run: it is in "news"
        assert client.id is not None
        await cut(network, sio, client.id)  # no event got yet: recovered all the same
        for n in range(3):
            await sio.to("news").emit("news", n)
        network.server = sio
        await until(lambda: len(order) == 5)
    assert order == [
        ("connect", False),
        ("news", 0, True),
        ("news", 1, True),
        ("news", 2, True),
        ("connect", True),
    ]


async def test_expired_session_is_a_new_connection(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    recovery = ConnectionStateRecovery(max_disconnection_duration=30)
    sio = make_server(connection_state_recovery=recovery)
    await nursery.start(sio.run)
    network = MemoryNetwork(nursery, sio)
    client = trio_sio.Client(
        "http://test", transports=["websocket"], randomization_factor=0, connector=network.connect
    )
    got = collect(client, "news")
    async with client:
        await client.emit_with_ack("echo")  # the connection handler has run: it is in "news"
        sid = client.id
        assert sid is not None
        await sio.to("news").emit("news", 0)
        await until(lambda: got == [("news", 0)])
        await cut(network, sio, sid)
        await sio.to("news").emit("news", 1)
        await trio.sleep(31)
        network.server = sio
        await until(lambda: client.connected)
        assert client.recovered is False and client.id != sid
        assert await client.emit_with_ack("whoami") == {
            "sid": client.id,
            "rooms": ["news"],
            "visits": 1,
        }
        await sio.to("news").emit("news", 2)
        await until(lambda: len(got) == 2)
    assert got == [("news", 0), ("news", 2)]  # the missed one is lost, no error


async def test_clean_disconnect_is_not_recovered(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    await nursery.start(sio.run)
    network = MemoryNetwork(nursery, sio)
    client = trio_sio.Client("http://test", transports=["websocket"], connector=network.connect)
    got = collect(client, "news")
    async with client:
        await client.emit_with_ack("echo")  # the connection handler has run: it is in "news"
        sid = client.id
        await sio.to("news").emit("news", 0)
        await until(lambda: len(got) == 1)
        await client.main.disconnect()
        await sio.to("news").emit("news", 1)
        await client.main.connect()
        assert client.recovered is False and client.id != sid
        await client.emit_with_ack("echo")
        await sio.to("news").emit("news", 2)
        await until(lambda: len(got) == 2)
    assert got == [("news", 0), ("news", 2)]


async def test_server_without_recovery_gives_no_pid_and_offsets_stay(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server(connection_state_recovery=False)
    await nursery.start(sio.run)
    network = MemoryNetwork(nursery, sio)
    client = trio_sio.Client(
        "http://test", transports=["websocket"], randomization_factor=0, connector=network.connect
    )
    got = collect(client, "news")
    async with client:
        await client.emit_with_ack("echo")  # the connection handler has run: it is in "news"
        sid = client.id
        assert sid is not None
        await sio.to("news").emit("news", "a-string-last")
        await until(lambda: len(got) == 1)
        await cut(network, sio, sid)
        await until(lambda: not client.connected)  # the client noticed too
        network.server = sio
        await until(lambda: client.connected)
        assert client.recovered is False and client.id != sid
    assert got == [("news", "a-string-last")]  # nothing taken off


async def test_namespaces_recover_each_on_its_own(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    chat = sio.of("/chat")
    chat.on("connection", lambda socket, auth: socket.join("room"))
    await nursery.start(sio.run)
    network = MemoryNetwork(nursery, sio)
    client = trio_sio.Client(
        "http://test",
        namespaces=["/", "/chat"],
        transports=["websocket"],
        randomization_factor=0,
        connector=network.connect,
    )
    got: list[Any] = []
    client.of("/chat").on("said", lambda *args: got.append(args))
    async with client:
        await client.emit_with_ack("echo")  # the connection handler has run: it is in "news"
        chat_socket = client.of("/chat")
        chat_id, main_id = chat_socket.id, client.id
        assert main_id is not None
        await until(lambda: chat_id in chat.sockets and "room" in chat.sockets[chat_id].rooms)
        await chat.to("room").emit("said", "before")
        await until(lambda: len(got) == 1)
        await cut(network, sio, main_id)
        await until(lambda: not client.connected)  # the client noticed too
        await chat.to("room").emit("said", "during", 1)
        network.server = sio
        await until(lambda: client.connected and chat_socket.connected)
        assert chat_socket.recovered and chat_socket.id == chat_id
        assert client.recovered and client.id == main_id
        await until(lambda: len(got) == 2)
    assert got == [("before",), ("during", 1)]
