"""The Socket.IO client against our server over an in-memory network, in virtual time."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import trio_sio
from trio_sio.testing import MemoryNetwork

TRANSPORTS = [("polling",), ("websocket",), ("polling", "websocket")]


def make_server(**options: Any) -> trio_sio.Server:
    options.setdefault("ping_interval", 25)
    options.setdefault("ping_timeout", 20)
    sio = trio_sio.Server(**options)

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: Any) -> None:
        socket.join("all")
        await socket.emit("welcome", auth)

    @sio.on("echo")
    async def echo(socket: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @sio.on("relay")
    async def relay(socket: trio_sio.Socket, *args: Any) -> None:
        await socket.emit("relayed", *args)

    return sio


async def serving(nursery: trio.Nursery, sio: trio_sio.Server) -> MemoryNetwork:
    await nursery.start(sio.run)
    return MemoryNetwork(nursery, sio)


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_seed_behaviours_client_to_server_and_back(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, transports: tuple[str, ...]
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)
    client = trio_sio.Client(
        "http://test", transports=transports, auth={"token": "t"}, connector=network.connect
    )
    welcomes: list[Any] = []
    client.on("welcome", lambda auth: welcomes.append(auth))
    async with client:
        assert client.connected and client.id is not None
        assert await client.emit_with_ack("echo", 1, "2", {3: "4", 5: b"\x06"}) == (
            1,
            "2",
            {"3": "4", "5": b"\x06"},
        )
        await client.emit("relay", "hello", b"\x01\x02")
        assert await client.wait_for("relayed") == ("hello", b"\x01\x02")
        got: list[Any] = []
        done = trio.Event()

        def callback(err: Exception | None, *args: Any) -> None:
            got.append((err, args))
            done.set()

        await client.timeout(5).emit("echo", "x", callback=callback)
        await done.wait()
        assert got == [(None, ("x",))]
        if len(transports) == 2:
            with trio.fail_after(30):
                while client.transport != "websocket":
                    await trio.sleep(0.1)
    assert welcomes == [{"token": "t"}]


async def test_ack_timeout_on_the_client(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    network = await serving(nursery, make_server())
    async with trio_sio.Client("http://test", connector=network.connect) as client:
        t0 = trio.current_time()
        with pytest.raises(trio_sio.AckTimeoutError):
            await client.emit_with_ack("nobody listens", timeout=5)
        assert trio.current_time() - t0 == pytest.approx(5, abs=0.01)
        calls: list[Any] = []
        done = trio.Event()

        def callback(err: Exception | None, *args: Any) -> None:
            calls.append(type(err).__name__)
            done.set()

        await client.timeout(2).emit("nobody listens", callback=callback)
        await done.wait()
        assert calls == ["AckTimeoutError"]


async def test_middleware_refusal_is_a_typed_exception(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()

    @sio.of("/admin").use
    def check(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        if auth.get("token") != "ok":
            raise trio_sio.ConnectionRefused("not authorized", {"code": 42})

    network = await serving(nursery, sio)
    client = trio_sio.Client(
        "http://test", namespaces=["/", "/admin"], auth={"token": "bad"}, connector=network.connect
    )
    with pytest.raises(trio_sio.ConnectionRefused) as info:
        async with client:
            pass
    assert info.value.message == "not authorized" and info.value.data == {"code": 42}

    good = trio_sio.Client(
        "http://test",
        namespaces=["/", "/admin"],
        auth=lambda: {"token": "ok"},
        connector=network.connect,
    )
    async with good:
        assert good.of("/admin").connected and good.of("/").connected
        main_socket = sio.main.sockets[good.id or ""]
        admin_socket = sio.of("/admin").sockets[good.of("/admin").id or ""]
        assert main_socket._connection is admin_socket._connection  # one connection for both
        with pytest.raises(trio_sio.AckTimeoutError):  # no handler there: no ack
            await good.of("/admin").emit_with_ack("echo", "admin", timeout=2)


async def test_reconnection_backoff_and_rejoin(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)
    client = trio_sio.Client(
        "http://test",
        transports=["websocket"],
        randomization_factor=0,
        connector=network.connect,
        auth=lambda: {"n": network.connections},
    )
    attempts: list[tuple[int, float]] = []
    reconnected: list[int] = []
    reasons: list[str] = []
    welcomes: list[Any] = []
    client.on("reconnect_attempt", lambda n: attempts.append((n, trio.current_time())))
    client.on("reconnect", lambda n: reconnected.append(n))
    client.on("disconnect", lambda reason: reasons.append(reason))
    client.on("welcome", lambda auth: welcomes.append(auth))
    async with client:
        await trio.sleep(1)  # let the welcome arrive
        network.server = None
        t0 = trio.current_time()
        await network.drop()
        with trio.fail_after(60):
            while len(attempts) < 5:
                await trio.sleep(0.1)
        network.server = sio
        await client.wait_for("welcome")
        assert client.connected
        assert await client.emit_with_ack("echo", "back") == "back"
    delays = [round(t - t0, 3) for _, t in attempts]
    # as in JS, attempt n fires when it starts, after its back-off: 1, 2, 4, 5, 5 seconds
    assert [n for n, _ in attempts][:5] == [1, 2, 3, 4, 5]
    assert delays[:5] == [1.0, 3.0, 7.0, 12.0, 17.0]
    assert reasons[0] == "transport close"
    assert reconnected and reconnected[0] >= 5
    assert welcomes == [{"n": 1}, {"n": 2}]  # auth evaluated at each connection


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_seed_restart_example_buffered_vs_volatile(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, transports: tuple[str, ...]
) -> None:
    """The seed page's last example: a counter emitted every second across a restart."""
    received: dict[str, list[int]] = {"plain": [], "volatile": []}

    def new_server() -> trio_sio.Server:
        sio = make_server()
        sio.on("ping", lambda socket, kind, count: received[kind].append(count))
        return sio

    first = new_server()
    await nursery.start(first.run)
    network = MemoryNetwork(nursery, first)
    client = trio_sio.Client(
        "http://test", transports=transports, randomization_factor=0, connector=network.connect
    )
    async with client:
        for count in range(1, 12):
            await client.emit("ping", "plain", count)
            await client.volatile.emit("ping", "volatile", count)
            if count == 4:
                await trio.sleep(0.5)
                first.shutdown()  # restart: down for a while
                network.server = None
                await network.drop()
            if count == 8:
                second = new_server()
                await nursery.start(second.run)
                network.server = second
                await client.main.wait_connected()
            await trio.sleep(1)
        await client.emit_with_ack("echo")  # everything before it has arrived
    assert received["plain"] == list(range(1, 12))
    assert received["volatile"][:4] == [1, 2, 3, 4]
    assert 5 not in received["volatile"] and 6 not in received["volatile"]
    assert received["volatile"][-3:] == [9, 10, 11]


async def test_full_offline_buffer_blocks_and_giving_up_raises(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)
    client = trio_sio.Client(
        "http://test",
        buffer_size=3,
        reconnection_attempts=2,
        randomization_factor=0,
        connector=network.connect,
    )
    failed = trio.Event()
    client.on("reconnect_failed", failed.set)
    async with client:
        network.server = None
        await network.drop()
        await trio.sleep(0.01)
        for i in range(3):
            await client.emit("buffered", i)
        with trio.move_on_after(0.5) as scope:
            await client.emit("one too many")
        assert scope.cancelled_caught
        await failed.wait()
        with pytest.raises(trio_sio.ConnectionClosed):
            await client.emit("after giving up")


async def test_dead_server_is_noticed_through_the_heartbeat(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)
    reasons: list[tuple[str, float]] = []
    client = trio_sio.Client("http://test", transports=["websocket"], connector=network.connect)
    client.on("disconnect", lambda reason: reasons.append((reason, trio.current_time())))
    async with client:
        await trio.sleep(1)
        t0 = trio.current_time()
        network.freeze()
        with trio.fail_after(100):
            while not reasons:
                await trio.sleep(1)
        network.thaw()
    assert reasons[0][0] == "ping timeout"
    # silence is noticed at most ping_interval + ping_timeout after the last ping
    assert reasons[0][1] - t0 <= 45 + 0.01


async def test_server_side_disconnect_stops_reconnection(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()

    @sio.on("kick me")
    async def kick(socket: trio_sio.Socket) -> None:
        await socket.disconnect()

    network = await serving(nursery, sio)
    reasons: list[str] = []
    client = trio_sio.Client("http://test", connector=network.connect)
    client.on("disconnect", lambda reason: reasons.append(reason))
    async with client:
        await client.emit("kick me")
        with trio.fail_after(5):
            while not reasons:
                await trio.sleep(0.1)
        await trio.sleep(30)
        assert not client.connected
        assert sio.engine.sessions == {}  # the connection was closed, not reopened
    assert reasons == ["io server disconnect"]


async def test_retries_give_at_least_once_delivery(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    seen: list[int] = []

    @sio.on("flaky")
    async def flaky(socket: trio_sio.Socket, n: int) -> str | None:
        seen.append(n)
        if seen.count(n) < 3:
            raise RuntimeError("lost")  # no ack: the client tries again
        return f"ok {n}"

    network = await serving(nursery, sio)
    client = trio_sio.Client("http://test", retries=3, ack_timeout=1, connector=network.connect)
    async with client:
        assert await client.emit_with_ack("flaky", 1) == "ok 1"
        assert seen == [1, 1, 1]
        with pytest.raises(trio_sio.AckTimeoutError):
            await client.emit_with_ack("nobody listens")


async def test_client_catch_all_and_handler_errors(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    network = await serving(nursery, make_server())
    client = trio_sio.Client("http://test", connector=network.connect)
    incoming: list[Any] = []
    outgoing: list[Any] = []
    client.on_any(lambda event, *args: incoming.append(event))
    client.on_any_outgoing(lambda event, *args: outgoing.append(event))

    @client.on("relayed")
    def broken(*args: Any) -> None:
        raise RuntimeError("bug in client handler")

    async with client:
        await client.emit("relay", 1)
        await client.emit("relay", 2)
        assert await client.wait_for("relayed") in {(1,), (2,)}
        assert await client.emit_with_ack("echo", 3) == 3
    assert incoming[0] == "welcome" and incoming.count("relayed") == 2
    assert outgoing == ["relay", "relay", "echo"]


async def test_reserved_and_unserializable_emits_fail_at_the_call(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    network = await serving(nursery, make_server())
    async with trio_sio.Client("http://test", connector=network.connect) as client:
        with pytest.raises(ValueError):
            await client.emit("disconnect")
        with pytest.raises(TypeError, match="set"):
            await client.emit("x", {1, 2})
        assert await client.emit_with_ack("echo", "fine") == "fine"


async def test_cancelled_around_the_block_closes_cleanly(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)
    reasons: list[str] = []
    sio.on("disconnect", lambda socket, reason: reasons.append(reason))
    with trio.move_on_after(1) as scope:
        async with trio_sio.Client("http://test", connector=network.connect):
            await trio.sleep(5)
    assert scope.cancelled_caught
    await trio.sleep(1)
    assert sio.main.sockets == {}
    # Cancelled from outside, the client's own tasks are cancelled too: no goodbye, but a
    # clean close that the server sees as the transport closing.
    assert reasons == ["transport close"]
