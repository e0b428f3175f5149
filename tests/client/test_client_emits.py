"""Client emits: ack bookkeeping, volatile order, reconnection timing. In-memory network,
virtual time."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from client_support import make_server, serving, until

import trio_sio


async def test_acked_emits_leave_no_bookkeeping(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)
    client = trio_sio.Client("http://test", connector=network.connect)
    acked: list[Any] = []
    timed_out: list[Any] = []
    async with client:
        socket = client.main
        for n in range(5000):
            await client.emit("echo", n, callback=acked.append)
        await until(lambda: len(acked) == 5000)
        assert acked == list(range(5000))
        for n in range(100):  # waits that end without an ack
            await client.timeout(1).emit("nobody listens", n, callback=timed_out.append)
        await until(lambda: len(timed_out) == 100)
        assert all(isinstance(err, trio_sio.AckTimeoutError) for err in timed_out)
        with trio.move_on_after(1):
            await client.emit_with_ack("nobody listens")
        await trio.sleep(0.1)
        assert socket._state.sent_acks == set()
        assert socket._state.pending == set()
        assert len(socket._state.acks) == 0


@pytest.mark.parametrize("transports", [("websocket",), ("polling",)])
async def test_volatile_emit_keeps_its_place(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, transports: tuple[str, ...]
) -> None:
    sio = make_server()
    got: list[int] = []
    sio.on("n", lambda socket, n: got.append(n))
    network = await serving(nursery, sio)
    client = trio_sio.Client("http://test", transports=transports, connector=network.connect)
    async with client:
        for n in range(1, 6):
            await client.emit("n", n)
        await client.volatile.emit("n", 6)
        await client.emit_with_ack("echo")
        assert got == [1, 2, 3, 4, 5, 6]


async def test_volatile_emit_dropped_rather_than_queued(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """When the connection cannot take it now (its send queue is full), a volatile emit is
    dropped; the plain emits queued before and after arrive in order."""
    sio = make_server()
    got: list[int] = []
    sio.on("n", lambda socket, n: got.append(n))
    network = await serving(nursery, sio)
    client = trio_sio.Client("http://test", transports=["websocket"], connector=network.connect)
    async with client:
        network.freeze()
        for n in range(100):  # more than the connection's send queue holds
            await client.emit("n", n)
        assert len(client.main._state.buffer) > 0
        await client.volatile.emit("n", -1)
        await client.emit("n", 100)
        network.thaw()
        await client.emit_with_ack("echo")
        assert got == list(range(101))
        await client.volatile.emit("n", 101)
        await client.emit_with_ack("echo")
        assert got[-1] == 101


async def test_reconnect_attempt_fires_after_the_delay(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """As socket.io-client: ``reconnect_attempt`` when an attempt starts (after its
    back-off), ``reconnect_error`` when it fails, ``reconnect_failed`` right after the
    last failure."""
    sio = make_server()
    network = await serving(nursery, sio)
    client = trio_sio.Client(
        "http://test",
        transports=["websocket"],
        reconnection_attempts=3,
        randomization_factor=0,
        connector=network.connect,
    )
    log: list[tuple[str, Any, float]] = []
    client.on("reconnect_attempt", lambda n: log.append(("attempt", n, trio.current_time())))
    client.on("reconnect_error", lambda e: log.append(("error", None, trio.current_time())))
    client.on("reconnect_failed", lambda: log.append(("failed", None, trio.current_time())))
    async with client:
        network.server = None
        t0 = trio.current_time()
        await network.drop()
        await until(lambda: log and log[-1][0] == "failed")
    assert [(kind, n, round(t - t0, 6)) for kind, n, t in log] == [
        ("attempt", 1, 1.0),
        ("error", None, 1.0),
        ("attempt", 2, 3.0),
        ("error", None, 3.0),
        ("attempt", 3, 7.0),
        ("error", None, 7.0),
        ("failed", None, 7.0),
    ]
