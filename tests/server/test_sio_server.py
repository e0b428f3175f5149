"""The Socket.IO server, seen from the wire: raw frames over memory, in virtual time."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import re
from typing import Any

import pytest
import trio
import trio.testing
from sio_support import make_server

import trio_sio
from trio_sio.testing import RawClient, open_raw_client


async def started(nursery: trio.Nursery, sio: trio_sio.Server) -> trio_sio.Server:
    await nursery.start(sio.run)
    return sio


def payload(frame: str | bytes, prefix: str) -> Any:
    assert isinstance(frame, str) and frame.startswith(prefix), frame
    return json.loads(frame[len(prefix) :])


# -- connecting ---------------------------------------------------------------------------


async def test_connect_main_namespace(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    seen: list[Any] = []

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        seen.append((socket.id, auth, socket.handshake.auth))
        await socket.emit("auth", auth)

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.send('40{"token":"123"}')
        reply = payload(await raw.receive(), "40")
        assert set(reply) == {"sid"}
        await raw.expect('42["auth",{"token":"123"}]')
        assert seen == [(reply["sid"], {"token": "123"}, {"token": "123"})]
        engine_sid = next(iter(sio.engine.sessions))
        assert reply["sid"] != engine_sid  # the public id is not the secret session id


async def test_unknown_namespace_and_custom(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    sio.of("/custom")
    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.send("40/random")
        await raw.expect('44/random,{"message":"Invalid namespace"}')
        await raw.send("40/custom,")
        payload(await raw.receive(), "40/custom,")


async def test_dynamic_namespaces(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    parent = sio.of(re.compile(r"/room-\d+"))
    joined: list[str] = []

    @parent.on("connection")
    async def connected(socket: trio_sio.Socket, auth: Any) -> None:
        joined.append(socket.namespace.name)

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect("/room-12")
        await raw.send("40/room-x,")
        await raw.expect('44/room-x,{"message":"Invalid namespace"}')
    assert joined == ["/room-12"]
    assert "/room-12" in sio.namespaces


async def test_middleware_refusal_carries_data(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    admin = sio.of("/admin")

    @admin.use
    async def check(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        if auth.get("token") != "secret":
            raise trio_sio.ConnectionRefused("not authorized", {"retry": False})
        socket.data["user"] = "root"

    users: list[Any] = []
    admin.on("connection", lambda socket, auth: users.append(socket.data["user"]))
    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.send('40/admin,{"token":"nope"}')
        await raw.expect('44/admin,{"message":"not authorized","data":{"retry":false}}')
        await raw.connect("/admin", {"token": "secret"})
    assert users == ["root"]


async def test_connect_timeout_closes_silent_connections(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = await started(nursery, make_server(connect_timeout=45))
    async with open_raw_client(sio) as raw:
        t0 = trio.current_time()
        await raw.expect("1")
        assert trio.current_time() - t0 == pytest.approx(45, abs=0.01)


async def test_connect_timeout_is_lifted_by_the_first_namespace_connection(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = await started(nursery, make_server(connect_timeout=45))
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send("41")  # leaves its only namespace: the session stays
        await trio.sleep(100)
        await raw.send('42["late"]')  # nothing closed it meanwhile
        await raw.connect()
        with pytest.raises(trio.WouldBlock):
            raw.receive_nowait()


# -- emitting: the seed page, server → client --------------------------------------------


async def test_basic_and_multi_argument_emit_with_binary(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: Any) -> None:
        await socket.emit("hello", "world")
        await socket.emit("hello", 1, "2", {3: "4", 5: b"\x06"})

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.expect('42["hello","world"]')
        await raw.expect('451-["hello",1,"2",{"3":"4","5":{"_placeholder":true,"num":0}}]')
        await raw.expect(b"\x06")


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Hero:
    def __init__(self) -> None:
        self._hp = 42

    def __sio_json__(self) -> dict[str, int]:
        return {"hp": self._hp}


async def test_serialization_rules(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    errors: list[str] = []

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: Any) -> None:
        epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
        await socket.emit("when", epoch, Point(1, 2), Hero())
        try:
            await socket.emit("bad", {"tags": {"a", "b"}})
        except TypeError as exc:
            errors.append(str(exc))
        await socket.emit("after")

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.expect('42["when","1970-01-01T00:00:00.000Z",{"x":1,"y":2},{"hp":42}]')
        await raw.expect('42["after"]')  # nothing half-sent before
    assert len(errors) == 1 and "set" in errors[0]


async def test_reserved_event_names_are_refused(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    caught: list[Exception] = []

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: Any) -> None:
        for name in ("connect", "disconnect", "connect_error"):
            try:
                await socket.emit(name)
            except ValueError as exc:
                caught.append(exc)

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await trio.testing.wait_all_tasks_blocked()
    assert len(caught) == 3


# -- emitting: client → server, acks -------------------------------------------------------


async def test_handler_args_and_ack_from_return_value(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    got: list[Any] = []

    @sio.on("update item")
    async def update(
        socket: trio_sio.Socket, item_id: str, changes: dict[str, Any]
    ) -> dict[str, str]:
        got.append((item_id, changes))
        return {"status": "ok"}

    @sio.on("hello")
    def hello(socket: trio_sio.Socket, arg: Any) -> None:  # a sync handler
        got.append(arg)

    @sio.on("several")
    async def several(socket: trio_sio.Socket) -> tuple[int, str]:
        return 1, "two"

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send('42["hello","world","extra ignored"]')
        await raw.send('427["update item","1",{"name":"updated"}]')
        await raw.expect('437[{"status":"ok"}]')
        await raw.send('428["several"]')
        await raw.expect('438[1,"two"]')
        await raw.send('451-9["hello",{"_placeholder":true,"num":0}]')
        await raw.send(b"\x01\x02")
        await raw.expect("439[]")  # acked with no arguments
    assert got == ["world", ("1", {"name": "updated"}), b"\x01\x02"]


async def test_emit_with_ack_and_timeouts(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    results: list[Any] = []

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: Any) -> None:
        results.append(await socket.emit_with_ack("question", timeout=5))
        t0 = trio.current_time()
        try:
            await socket.emit_with_ack("ignored", timeout=5)
        except trio_sio.AckTimeoutError:
            results.append(("timeout after", trio.current_time() - t0))
        calls: list[Any] = []
        done = trio.Event()

        def callback(err: Exception | None, *args: Any) -> None:
            calls.append((type(err).__name__ if err else None, args))
            if len(calls) == 2:
                done.set()

        await socket.timeout(3).emit("answered", callback=callback)
        await socket.timeout(3).emit("never", callback=callback)
        await done.wait()
        results.append(calls)

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.expect('420["question"]')
        await raw.send('430[{"answer":42}]')
        await raw.expect('421["ignored"]')
        await raw.expect('422["answered"]')
        await raw.expect('423["never"]')
        await raw.send('432["yes"]')
        await raw.send('431["too late"]')  # its waiter is gone: ignored
        with trio.fail_after(10):
            while len(results) < 3:
                await trio.sleep(0.5)
    assert results[0] == {"answer": 42}
    assert results[1] == ("timeout after", pytest.approx(5, abs=0.01))
    assert results[2] == [(None, ("yes",)), ("AckTimeoutError", ())]


async def test_pending_acks_fail_on_disconnect(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    outcome: list[str] = []

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: Any) -> None:
        try:
            await socket.emit_with_ack("question")
        except trio_sio.ConnectionClosed as exc:
            outcome.append(exc.reason)

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.expect('420["question"]')
        await raw.send("41")
        await trio.testing.wait_all_tasks_blocked()
    assert outcome == ["client namespace disconnect"]


async def test_handler_waiting_for_ack_does_not_block_receiving(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()

    @sio.on("ask me")
    async def ask(socket: trio_sio.Socket) -> Any:
        return await socket.emit_with_ack("what?", timeout=10)

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send('425["ask me"]')
        await raw.expect('420["what?"]')
        await raw.send('430["this"]')
        await raw.expect('435["this"]')


@pytest.mark.parametrize("how", ["event", "namespace", "server"])
async def test_ordered_events_are_handled_one_at_a_time_in_order(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, how: str
) -> None:
    sio = make_server(ordered_handlers=how == "server")
    if how == "namespace":
        sio.main.ordered_handlers = True
    order: list[int] = []

    @sio.on("n", ordered=how == "event")
    async def n(socket: trio_sio.Socket, i: int) -> None:
        await trio.sleep(1 if i % 2 else 0)
        order.append(i)

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        for i in range(10):
            await raw.send(f'42["n",{i}]')
        with trio.fail_after(60):
            while len(order) < 10:
                await trio.sleep(1)
    assert order == list(range(10))


async def test_handlers_start_in_arrival_order_and_run_concurrently(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    started_order: list[int] = []

    @sio.on("slow")
    async def slow(socket: trio_sio.Socket, i: int) -> int:
        started_order.append(i)
        await trio.sleep(10 - i)  # later events finish first
        return i

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        t0 = trio.current_time()
        for i in range(5):
            await raw.send(f'42{i}["slow",{i}]')
        acks = [await raw.receive() for _ in range(5)]
    assert started_order == [0, 1, 2, 3, 4]
    assert acks == [f"43{i}[{i}]" for i in (4, 3, 2, 1, 0)]
    assert trio.current_time() - t0 == pytest.approx(10)  # concurrently, not 40 s


async def test_a_blocked_handler_does_not_block_the_next_events(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()

    @sio.on("forever")
    async def forever(socket: trio_sio.Socket) -> None:
        await trio.sleep_forever()

    @sio.on("ping")
    def ping(socket: trio_sio.Socket) -> str:
        return "pong"

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send('421["forever"]')
        await raw.send('422["ping"]')
        await raw.expect('432["pong"]')


async def test_handlers_in_flight_are_bounded_and_reading_pauses(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server(max_concurrent_handlers=3)
    running = 0
    most = 0
    release = trio.Event()

    @sio.on("work")
    async def work(socket: trio_sio.Socket) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1

    @sio.on("ping")
    def ping(socket: trio_sio.Socket) -> str:
        return "pong"

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        for _ in range(10):
            await raw.send('42["work"]')
        await raw.send('421["ping"]')
        await trio.testing.wait_all_tasks_blocked()
        assert (running, most) == (3, 3)
        with pytest.raises(trio.WouldBlock):
            raw.receive_nowait()  # reading paused: the ping is not handled yet
        release.set()
        await raw.expect('431["pong"]')
    assert most == 3


async def test_a_handler_can_decline_or_acknowledge_later(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    acks: list[trio_sio.Ack] = []

    @sio.on("decline")
    async def decline(socket: trio_sio.Socket, *, ack: trio_sio.Ack) -> str:
        return "not an ack"

    @sio.on("later")
    def later(socket: trio_sio.Socket, x: int, *, ack: trio_sio.Ack) -> None:
        acks.append(ack)

        async def finish() -> None:
            await trio.sleep(5)
            await ack(x * 2, "done")

        socket.start_soon(finish)

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send('421["decline"]')
        await raw.send('422["later",21]')
        t0 = trio.current_time()
        await raw.expect('432[42,"done"]')
        assert trio.current_time() - t0 == pytest.approx(5)
        with pytest.raises(RuntimeError, match="already"):
            await acks[0]("again")
        await raw.send('42["later",1]')  # no ack asked: calling it does nothing
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(6)
        with pytest.raises(trio.WouldBlock):
            raw.receive_nowait()
    assert [a.requested for a in acks] == [True, False]


async def test_failing_handler_is_logged_and_harms_nothing(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sio = make_server()

    @sio.on("boom")
    async def boom(socket: trio_sio.Socket) -> None:
        raise RuntimeError("bug in handler")

    @sio.on("ping me")
    async def ping_me(socket: trio_sio.Socket) -> str:
        return "pong"

    await started(nursery, sio)
    async with open_raw_client(sio) as a, open_raw_client(sio) as b:
        await a.connect()
        await b.connect()
        with caplog.at_level(logging.ERROR, "trio_sio.server"):
            await a.send('421["boom"]')
            await trio.testing.wait_all_tasks_blocked()
        assert "bug in handler" in caplog.text
        await a.send('422["ping me"]')
        await a.expect('432["pong"]')
        await b.send('423["ping me"]')
        await b.expect('433["pong"]')


async def test_catch_all_listeners(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    incoming: list[Any] = []
    outgoing: list[Any] = []
    sio.on_any(lambda socket, event, *args: incoming.append((event, args)))
    sio.on_any_outgoing(lambda socket, event, *args: outgoing.append((event, args)))

    @sio.on("known")
    async def known(socket: trio_sio.Socket, x: int) -> None:
        await socket.emit("reply", x + 1)

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send('42["known",1]')
        await raw.expect('42["reply",2]')
        await raw.send('42["unknown","a","b"]')
        await trio.testing.wait_all_tasks_blocked()
    assert incoming == [("known", (1,)), ("unknown", ("a", "b"))]
    assert outgoing == [("reply", (2,))]


# -- volatile -----------------------------------------------------------------------------


async def test_volatile_emits_are_dropped_when_the_queue_is_full(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server(max_buffer_bytes=40)
    await started(nursery, sio)
    sent = trio.Event()

    @sio.on("go")
    async def go(socket: trio_sio.Socket) -> None:
        for i in range(50):
            await socket.volatile.emit("position", i)  # never blocks
        sent.set()

    async with open_raw_client(sio) as raw:
        await raw.connect()
        raw.auto_pong = True
        await raw.send('42["go"]')
        await sent.wait()
        frames = []
        with trio.move_on_after(1):
            while True:
                frames.append(await raw.receive())
    assert 0 < len(frames) < 50
    assert frames[0] == '42["position",0]'


# -- rooms and broadcasts ----------------------------------------------------------------


async def _connect_three(sio: trio_sio.Server, raws: list[RawClient]) -> list[str]:
    return [await raw.connect() for raw in raws]


async def test_rooms_and_broadcast_operators(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    sockets: dict[str, trio_sio.Socket] = {}

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        sockets[auth["name"]] = socket
        socket.join(auth["room"])

    await started(nursery, sio)
    async with open_raw_client(sio) as a, open_raw_client(sio) as b, open_raw_client(sio) as c:
        await a.connect("/", {"name": "a", "room": "red"})
        await b.connect("/", {"name": "b", "room": "red"})
        await c.connect("/", {"name": "c", "room": "blue"})
        await trio.testing.wait_all_tasks_blocked()
        assert sockets["a"].rooms == {sockets["a"].id, "red"}

        await sio.to("red").emit("news", 1)
        await a.expect('42["news",1]')
        await b.expect('42["news",1]')
        await sio.to("red").except_(sockets["b"].id).emit("news", 2)
        await a.expect('42["news",2]')
        await sio.except_("red").emit("news", 3)
        await c.expect('42["news",3]')
        await sockets["a"].broadcast.emit("news", 4)
        await b.expect('42["news",4]')
        await c.expect('42["news",4]')
        await sockets["a"].to("blue").emit("news", 5)
        await c.expect('42["news",5]')
        await sio.emit("all", b"\x07")
        for raw in (a, b, c):
            await raw.expect('451-["all",{"_placeholder":true,"num":0}]')
            await raw.expect(b"\x07")
        for raw in (a, b, c):  # nothing else was delivered to anybody
            with pytest.raises(trio.WouldBlock):
                raw.receive_nowait()

        found = await sio.in_("red").fetch_sockets()
        assert {s.id for s in found} == {sockets["a"].id, sockets["b"].id}
        await sio.in_("blue").sockets_join("green")
        assert "green" in sockets["c"].rooms
        await sio.sockets_leave("red")
        assert "red" not in sockets["a"].rooms
        sockets["a"].leave(sockets["a"].id)
        await sio.in_("green").disconnect_sockets()
        await c.expect("41")
        assert not sockets["c"].connected


async def test_broadcast_with_acks(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = await started(nursery, make_server())
    async with open_raw_client(sio) as a, open_raw_client(sio) as b:
        await a.connect()
        await b.connect()
        with pytest.raises(ValueError):
            await sio.emit_with_ack("poll")

        async def answer(raw: RawClient, value: str) -> None:
            frame = await raw.receive()
            assert isinstance(frame, str)
            ack_id = re.match(r'42(\d+)\["poll"\]', frame)
            assert ack_id is not None
            await raw.send(f'43{ack_id.group(1)}["{value}"]')

        async with trio.open_nursery() as inner:
            inner.start_soon(answer, a, "yes")
            inner.start_soon(answer, b, "no")
            replies = await sio.timeout(2).emit_with_ack("poll")
        assert sorted(replies) == ["no", "yes"]

        async with trio.open_nursery() as inner:
            inner.start_soon(answer, a, "only me")
            t0 = trio.current_time()
            with pytest.raises(trio_sio.AckTimeoutError) as info:
                await sio.timeout(2).emit_with_ack("poll")
            assert trio.current_time() - t0 == pytest.approx(2, abs=0.01)
            assert info.value.replies == ["only me"]
        await b.receive()


# -- disconnecting -------------------------------------------------------------------------


async def test_disconnect_reasons_and_disconnecting_sees_rooms(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    events: list[Any] = []

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: Any) -> None:
        socket.join("lobby")

    @sio.on("disconnecting")
    def disconnecting(socket: trio_sio.Socket, reason: str) -> None:
        events.append(("disconnecting", reason, "lobby" in socket.rooms))

    @sio.on("disconnect")
    def disconnect(socket: trio_sio.Socket, reason: str) -> None:
        events.append(("disconnect", reason, "lobby" in socket.rooms))

    @sio.on("kick me")
    async def kick(socket: trio_sio.Socket) -> None:
        await socket.disconnect()

    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send("41")
        await trio.testing.wait_all_tasks_blocked()
        await raw.connect()
        await raw.send('42["kick me"]')
        await raw.expect("41")
        await raw.connect()
    await trio.testing.wait_all_tasks_blocked()
    assert events == [
        ("disconnecting", "client namespace disconnect", True),
        ("disconnect", "client namespace disconnect", False),
        ("disconnecting", "server namespace disconnect", True),
        ("disconnect", "server namespace disconnect", False),
        ("disconnecting", "transport close", True),
        ("disconnect", "transport close", False),
    ]
    assert sio.main.sockets == {}


async def test_ping_timeout_reason(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    reasons: list[str] = []
    sio.on("disconnect", lambda socket, reason: reasons.append(reason))
    await started(nursery, sio)
    async with open_raw_client(sio, auto_pong=False) as raw:
        await raw.connect()
        await raw.expect("2")
        await raw.expect("1")
    assert reasons == ["ping timeout"]


@pytest.mark.parametrize(
    "frame",
    [
        "4abc",
        "42{}",
        '42abc["x"]',
        '42["connect"]',
        '451-["x",{"_placeholder":true,"num":"0"}]',
        '4211-["x"]',
        "43",
        "4/nope",
    ],
)
async def test_bad_packets_close_only_that_connection(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, frame: str
) -> None:
    sio = make_server()
    reasons: list[str] = []
    sio.on("disconnect", lambda socket, reason: reasons.append(reason))
    sio.on("echo", lambda socket, x: x)
    await started(nursery, sio)
    async with open_raw_client(sio) as bad, open_raw_client(sio) as good:
        await bad.connect()
        await good.connect()
        await bad.send(frame)
        with pytest.raises(trio_sio.ConnectionClosed):
            while True:
                await bad.receive()
        await good.send('421["echo","still here"]')
        await good.expect('431["still here"]')
    assert reasons[0] == "parse error"


async def test_shutdown_disconnects_with_reason(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    reasons: list[str] = []
    sio.on("disconnect", lambda socket, reason: reasons.append(reason))
    stopped = trio.Event()

    async def run() -> None:
        await sio.run()
        stopped.set()

    nursery.start_soon(run)
    await trio.testing.wait_all_tasks_blocked()
    async with open_raw_client(sio) as raw:
        await raw.connect()
        sio.shutdown()
        await raw.expect("1")
        await stopped.wait()
    assert reasons == ["server shutting down"]


async def test_handshake_time_is_written_as_javascript_writes_dates(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    times: list[str] = []
    sio.on("connection", lambda socket, auth: times.append(socket.handshake.time))
    await started(nursery, sio)
    async with open_raw_client(sio) as raw:
        await raw.connect()
    pattern = (
        r"[A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d{4} \d\d:\d\d:\d\d"
        r" GMT\+0000 \(Coordinated Universal Time\)"
    )
    assert re.fullmatch(pattern, times[0]), times
