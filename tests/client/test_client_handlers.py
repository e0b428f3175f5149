"""How the client runs its handlers: concurrently, started in arrival order, bounded (with
backpressure), optionally ordered; and the ``ack`` parameter. In-memory network, virtual
time."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from client_support import make_server, serving, until

import trio_sio
from trio_sio import Ack, AckTimeoutError


async def server_side(sio: trio_sio.Server, client: trio_sio.Client) -> trio_sio.Socket:
    await until(lambda: client.id in sio.main.sockets)
    return sio.main.sockets[client.id or ""]


async def test_handlers_run_concurrently_and_start_in_arrival_order(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)
    client = trio_sio.Client("http://test", connector=network.connect)
    started: list[int] = []
    ended: list[int] = []
    fast_seen = trio.Event()

    @client.on("job")
    async def job(n: int) -> None:
        started.append(n)
        await trio.sleep((50 - n) / 10)  # the later ones end first
        ended.append(n)

    @client.on("slow")
    async def slow() -> None:
        await fast_seen.wait()  # would never end if events were handled one at a time

    @client.on("fast")
    def fast() -> None:
        fast_seen.set()

    async with client:
        server = await server_side(sio, client)
        await server.emit("slow")
        await server.emit("fast")
        for n in range(50):
            await server.emit("job", n)
        with trio.fail_after(10):
            await fast_seen.wait()
        await until(lambda: len(ended) == 50)
    assert started == list(range(50))
    assert ended == list(reversed(range(50)))


async def test_max_concurrent_handlers_stops_the_reading(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """At the bound no more handlers start; once the event queue is full too, the client
    stops reading its connection: even an ack from the server waits."""
    sio = make_server()
    network = await serving(nursery, sio)
    client = trio_sio.Client(
        "http://test", max_concurrent_handlers=3, event_queue_size=2, connector=network.connect
    )
    release = trio.Event()
    running: list[int] = []
    done: list[int] = []

    @client.on("work")
    async def work(n: int) -> None:
        running.append(n)
        await release.wait()
        done.append(n)

    async with client:
        server = await server_side(sio, client)
        for n in range(20):
            await server.emit("work", n)
        await trio.sleep(1)
        dispatcher = client.main._dispatcher
        assert running == [0, 1, 2] and dispatcher.in_flight == 3
        assert len(dispatcher.queue) == 2
        with trio.move_on_after(2) as scope:
            await client.emit_with_ack("echo", "blocked")
        assert scope.cancelled_caught  # its ack is behind the events not read
        release.set()
        await until(lambda: len(done) == 20)
        assert running == list(range(20))
        assert await client.emit_with_ack("echo", "free") == "free"
        assert dispatcher.in_flight == 0


async def test_ordered_handlers_run_one_at_a_time(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)
    client = trio_sio.Client("http://test", ordered_handlers=True, connector=network.connect)
    log: list[tuple[str, Any]] = []

    @client.on("a")
    async def a(n: int) -> None:
        log.append(("start", n))
        await trio.sleep(1 if n % 2 else 0.1)
        log.append(("end", n))

    client.on("b", lambda n: log.append(("b", n)))
    async with client:
        server = await server_side(sio, client)
        for n in range(4):
            await server.emit("a", n)
            await server.emit("b", n)
        await until(lambda: len(log) == 12)
    assert log == [entry for n in range(4) for entry in (("start", n), ("end", n), ("b", n))]


async def test_ordered_per_event(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """``ordered=True``: those events one at a time, in order; the others run meanwhile."""
    sio = make_server()
    network = await serving(nursery, sio)
    client = trio_sio.Client("http://test", connector=network.connect)
    log: list[tuple[str, int, float]] = []

    @client.on("ordered", ordered=True)
    async def ordered(n: int) -> None:
        log.append(("o-start", n, trio.current_time()))
        await trio.sleep(1)
        log.append(("o-end", n, trio.current_time()))

    @client.on("free")
    async def free(n: int) -> None:
        log.append(("f-start", n, trio.current_time()))
        await trio.sleep(1)

    async with client:
        server = await server_side(sio, client)
        t0 = trio.current_time()
        for n in range(3):
            await server.emit("ordered", n)
            await server.emit("free", n)
        await until(lambda: len([e for e in log if e[0] == "o-end"]) == 3)
    ordered_log = [(kind, n) for kind, n, _ in log if kind.startswith("o")]
    assert ordered_log == [(k, n) for n in range(3) for k in ("o-start", "o-end")]
    starts = {n: round(t - t0) for kind, n, t in log if kind == "o-start"}
    assert starts == {0: 0, 1: 1, 2: 2}
    free_starts = [round(t - t0) for kind, _, t in log if kind == "f-start"]
    assert free_starts == [0, 0, 0]  # not held back by the ordered ones


async def test_lifecycle_handlers_keep_their_place(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)

    @sio.on("connection")
    async def hello(socket: trio_sio.Socket, auth: Any) -> None:
        await socket.emit("first")

    @sio.on("go")
    async def go(socket: trio_sio.Socket) -> None:
        await socket.emit("second")
        await socket.emit("third")
        await socket.disconnect()

    client = trio_sio.Client("http://test", connector=network.connect)
    started: list[str] = []
    still_running: list[str] = []
    release = trio.Event()

    @client.on("connect")
    async def connected() -> None:
        started.append("connect")
        await trio.sleep(1)

    for name in ("first", "second", "third"):

        async def handler(name: str = name) -> None:
            started.append(name)
            await release.wait()  # runs on after the disconnect
            still_running.append(name)

        client.on(name, handler)
    client.on("disconnect", lambda reason: started.append(f"disconnect: {reason}"))
    async with client:
        await client.emit("go")
        await until(lambda: len(started) == 5)
        assert not client.connected
        release.set()
        await until(lambda: len(still_running) == 3)
    assert started == ["connect", "first", "second", "third", "disconnect: io server disconnect"]


async def test_running_handlers_are_cancelled_when_the_client_closes(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)
    client = trio_sio.Client("http://test", connector=network.connect)
    outcome: list[str] = []

    @client.on("forever")
    async def forever() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            outcome.append("cancelled")
            raise

    async with client:
        server = await server_side(sio, client)
        await server.emit("forever")
        await until(lambda: client.main._dispatcher.in_flight == 1)
        await network.drop()  # a lost connection does not stop it
        await until(lambda: client.connected)
        assert client.main._dispatcher.in_flight == 1 and outcome == []
    assert outcome == ["cancelled"]


# -- the ack parameter --------------------------------------------------------------------


async def test_handler_may_decline_to_ack(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)
    client = trio_sio.Client("http://test", connector=network.connect)
    seen: list[tuple[Any, bool]] = []

    @client.on("question")
    def question(value: Any, *, ack: Ack) -> str:
        seen.append((value, ack.requested))
        return "not an ack"  # ignored: the handler takes `ack`

    async with client:
        server = await server_side(sio, client)
        with pytest.raises(AckTimeoutError):
            await server.emit_with_ack("question", 1, timeout=3)
        await server.emit("question", 2)  # no ack asked: the Ack does nothing
        await until(lambda: len(seen) == 2)
    assert seen == [(1, True), (2, False)]


async def test_late_ack_from_another_task_and_only_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    network = await serving(nursery, sio)
    client = trio_sio.Client("http://test", connector=network.connect)
    acks: list[Ack] = []
    errors: list[str] = []

    @client.on("job")
    async def job(spec: str, *, ack: Ack) -> None:
        acks.append(ack)

    async def worker() -> None:
        await until(lambda: acks)
        await trio.sleep(2)
        await acks[0]("done", b"\x01")
        try:
            await acks[0]("twice")
        except RuntimeError as exc:
            errors.append(str(exc))

    async with client:
        server = await server_side(sio, client)
        nursery.start_soon(worker)
        t0 = trio.current_time()
        assert await server.emit_with_ack("job", "x", timeout=5) == ("done", b"\x01")
        assert round(trio.current_time() - t0) == 2
        assert errors == ["this event was acknowledged already"]
        assert acks[0].sent
        # An ack whose connection is gone is dropped silently.
        server = await server_side(sio, client)
        with trio.move_on_after(1):
            await server.emit_with_ack("job", "y")
        await network.drop()
        with pytest.raises(TypeError):
            await acks[1]({1, 2})  # still checked; the ack stays unsent
        await acks[1]("too late")
        assert acks[1].sent
