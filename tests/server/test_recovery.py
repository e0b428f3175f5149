"""Connection state recovery on the server: the wire (raw frames, as socket.io-client sees
them) and the in-memory store's bounds, in virtual time."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import sio_support
import trio
import trio.testing

import trio_sio
from trio_sio.adapters.base import BroadcastOptions
from trio_sio.adapters.memory import InMemoryAdapter
from trio_sio.adapters.recovery import ConnectionStateRecovery, RecoveryStore, Session
from trio_sio.testing import RawClient, open_raw_client


def make_server(**options: Any) -> trio_sio.Server:
    options.setdefault("connection_state_recovery", True)
    sio = sio_support.make_server(**options)

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        if not socket.recovered:
            socket.join("room1")
            socket.data["foo"] = "bar"

    @sio.on("state")
    def state(socket: trio_sio.Socket) -> dict[str, Any]:
        rooms = sorted(socket.rooms - {socket.id})
        return {"sid": socket.id, "recovered": socket.recovered, "rooms": rooms, **socket.data}

    return sio


async def connect(raw: RawClient, auth: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send CONNECT; return the reply's data (the events before it are skipped) once the
    connection handlers have run (an event's ack comes after them)."""
    await raw.send("40" + (json.dumps(auth) if auth is not None else ""))
    with trio.fail_after(5):
        while True:
            frame = await raw.receive()
            assert isinstance(frame, str)
            if frame.startswith("40"):
                reply: dict[str, Any] = json.loads(frame[2:])
                break
        await raw.send('4299["state"]')
        while not str(await raw.receive()).startswith("4399"):
            pass
    return reply


async def event(raw: RawClient) -> list[Any]:
    with trio.fail_after(5):
        frame = await raw.receive()
    assert isinstance(frame, str) and frame.startswith("42"), frame
    data: list[Any] = json.loads(frame[2:])
    return data


def without_offset(data: list[Any]) -> list[Any]:
    assert isinstance(data[-1], str) and "-" in data[-1], data
    return data[:-1]


async def first_session(sio: trio_sio.Server) -> tuple[str, str, str]:
    """Connect, get one broadcast, and lose the connection: (sid, pid, offset)."""
    async with open_raw_client(sio) as raw:
        reply = await connect(raw)
        await sio.emit("hello")
        name, offset = await event(raw)
        assert name == "hello" and isinstance(offset, str)
    with trio.fail_after(5):
        while sio.main.sockets:
            await trio.sleep(0.01)
    return reply["sid"], reply["pid"], offset


async def test_the_wire_is_the_js_servers(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    await nursery.start(sio.run)
    server_socket: list[trio_sio.Socket] = []
    sio.on("connection", lambda socket, auth: server_socket.append(socket))
    async with open_raw_client(sio) as raw:
        reply = await connect(raw)
        assert set(reply) == {"sid", "pid"} and reply["pid"] != reply["sid"]
        socket = server_socket[0]
        await sio.emit("b", 1)
        b, one, offset1 = await event(raw)
        await socket.emit("direct", "x")  # to one socket: kept too
        direct, x, offset2 = await event(raw)
        assert (b, one, direct, x) == ("b", 1, "direct", "x") and offset1 != offset2
        # not kept, so no offset: volatile, or waiting for an ack
        await sio.volatile.emit("v", "s")
        assert await event(raw) == ["v", "s"]
        await socket.volatile.emit("v2", "s")
        assert await event(raw) == ["v2", "s"]
        await socket.emit("ask", "s", callback=lambda *args: None)
        assert await raw.receive() == '420["ask","s"]'
        with pytest.raises(trio_sio.AckTimeoutError):
            await sio.timeout(1).emit_with_ack("poll", "s")
        assert await raw.receive() == '421["poll","s"]'


async def test_restore_sends_missed_packets_before_the_connect_reply(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    await nursery.start(sio.run)
    sid, pid, offset = await first_session(sio)
    await sio.emit("hello1")  # broadcast
    await sio.to("room1").emit("hello2")  # to its room
    await sio.to("room2").emit("not-for-it")
    await sio.except_("room1").emit("not-for-it-either")
    await sio.to(sid).emit("hello3")  # to its id
    async with open_raw_client(sio) as raw:
        await raw.send(json.dumps({"pid": pid, "offset": offset}).join(["40", ""]))
        assert [(await event(raw))[0] for _ in range(3)] == ["hello1", "hello2", "hello3"]
        assert await raw.receive() == f'40{{"sid":"{sid}","pid":"{pid}"}}'
        await raw.send('420["state"]')
        assert await raw.receive() == (
            f'430[{{"sid":"{sid}","recovered":true,"rooms":["room1"],"foo":"bar"}}]'
        )
        await sio.to("room1").emit("after")
        name, after_offset = await event(raw)
        assert name == "after" and isinstance(after_offset, str)


@pytest.mark.parametrize(
    "auth",
    [
        {"pid": "unknown", "offset": "x"},
        {"pid": "PID", "offset": "not-one-of-ours"},
        {"pid": "PID", "offset": 12},
        {"pid": 1, "offset": "OFFSET"},
        # Digits that str.isdigit() takes and int() refuses or reads as another number
        {"pid": "PID", "offset": "PREFIX-\u00b2"},
        {"pid": "PID", "offset": "PREFIX-\u00b9\u00b2\u00b3"},
        {"pid": "PID", "offset": "PREFIX-\u0663"},
        {"pid": "PID", "offset": "PREFIX-\uff11"},
        {"pid": "PID", "offset": "PREFIX-"},
        {"pid": "PID", "offset": "PREFIX--1"},
        {"pid": "PID", "offset": "PREFIX-+1"},
        {"pid": "PID", "offset": "PREFIX- 1"},
        {"pid": "PID", "offset": "PREFIX-1_0"},
        {"pid": "PID", "offset": "PREFIX-" + "9" * 40},
        {"pid": "PID", "offset": "PREFIX-99999999"},  # from the future
        {"pid": "PID", "offset": ""},
        {"pid": "PID", "offset": ["OFFSET"]},
        {"pid": "PID", "offset": {"offset": "OFFSET"}},
        {"pid": "PID", "offset": "x" * 100_000},
        {"pid": "PID\u0000", "offset": "OFFSET"},
        {"pid": "", "offset": "OFFSET"},
        {"pid": "p" * 100_000, "offset": "OFFSET"},
        {"pid": ["PID"], "offset": "OFFSET"},
        {"pid": {"pid": "PID"}, "offset": "OFFSET"},
        {"pid": None, "offset": "OFFSET"},
        {"pid": True, "offset": "OFFSET"},
        {"pid": "\u00e9\u00e9", "offset": "OFFSET"},
    ],
)
async def test_unknown_session_or_offset_is_a_new_socket(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    auth: dict[str, Any],
) -> None:
    """Malformed pids and offsets of every kind: a new socket, nothing logged above debug,
    and a wrong offset does not destroy the kept session."""
    sio = make_server()
    await nursery.start(sio.run)
    sid, pid, offset = await first_session(sio)
    prefix = offset.rsplit("-", 1)[0]

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            if value == "OFFSET":
                return offset
            return value.replace("PREFIX", prefix).replace("PID", pid)
        if isinstance(value, list):
            return [fill(item) for item in value]
        if isinstance(value, dict):
            return {key: fill(item) for key, item in value.items()}
        return value

    caplog.set_level(logging.DEBUG, logger="trio_sio")
    async with open_raw_client(sio) as raw:
        reply = await connect(raw, fill(auth))
        assert reply["sid"] != sid and reply["pid"] != pid
        await raw.send('420["state"]')
        state = json.loads(str(await raw.receive())[3:])[0]
        assert state["recovered"] is False and state["rooms"] == ["room1"]
    # (the Engine.IO session's opening and closing are logged at info, as for any client)
    noisy = [
        r for r in caplog.records if r.levelno > logging.DEBUG and r.name != "trio_sio.engineio"
    ]
    assert not noisy and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # The session is still kept for its real client
    async with open_raw_client(sio) as raw:
        assert (await connect(raw, {"pid": pid, "offset": offset}))["sid"] == sid


async def test_a_session_is_given_back_once_and_not_after_a_clean_disconnect(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    await nursery.start(sio.run)
    sid, pid, offset = await first_session(sio)
    async with open_raw_client(sio) as raw:
        assert (await connect(raw, {"pid": pid, "offset": offset}))["sid"] == sid
        await raw.send("41")  # a clean disconnect: nothing kept
        with trio.fail_after(5):
            while sio.main.sockets:
                await trio.sleep(0.01)
    for _ in range(2):
        async with open_raw_client(sio) as raw:
            assert (await connect(raw, {"pid": pid, "offset": offset}))["sid"] != sid


async def test_the_pid_of_a_live_socket_is_not_honoured(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A CONNECT with the pid of a socket that is still connected gets a new socket, as in
    JavaScript: whoever learnt a pid cannot take over a live socket, its id or its rooms'
    broadcasts, and the socket's own client keeps it."""
    sio = make_server()
    reasons: list[str] = []
    sio.on("disconnect", lambda socket, reason: reasons.append(reason))
    await nursery.start(sio.run)
    async with open_raw_client(sio) as victim:
        reply = await connect(victim)
        await sio.emit("hello")
        _, offset = await event(victim)
        async with open_raw_client(sio) as thief:
            stolen = await connect(thief, {"pid": reply["pid"], "offset": offset})
            assert stolen["sid"] != reply["sid"] and stolen["pid"] != reply["pid"]
            await sio.to(reply["sid"]).emit("for the victim only")
            assert without_offset(await event(victim)) == ["for the victim only"]
            await thief.send('420["state"]')
            state = json.loads(str(await thief.receive())[3:])[0]
            assert state["sid"] == stolen["sid"] and state["recovered"] is False
            with pytest.raises(trio.WouldBlock):
                thief.receive_nowait()
        assert reasons == ["transport close"]  # the thief's own socket
        await victim.send('420["state"]')
        state = json.loads(str(await victim.receive())[3:])[0]
        assert state["sid"] == reply["sid"] and state["rooms"] == ["room1"]
    assert len(reasons) == 2
    # Once the server saw the victim's connection close, its client recovers it
    async with open_raw_client(sio) as back:
        assert (await connect(back, {"pid": reply["pid"], "offset": offset}))["sid"] == reply["sid"]


@pytest.mark.parametrize("skip", [True, False])
async def test_middlewares_on_recovery(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, skip: bool
) -> None:
    sio = make_server(connection_state_recovery=ConnectionStateRecovery(skip_middlewares=skip))
    seen: list[bool] = []

    @sio.use
    def middleware(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        seen.append(socket.recovered)
        if socket.recovered:
            assert socket.data == {"foo": "bar"}

    await nursery.start(sio.run)
    sid, pid, offset = await first_session(sio)
    async with open_raw_client(sio) as raw:
        assert (await connect(raw, {"pid": pid, "offset": offset}))["sid"] == sid
    assert seen == ([False] if skip else [False, True])


async def test_expired_session(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    recovery = ConnectionStateRecovery(max_disconnection_duration=60)
    sio = make_server(connection_state_recovery=recovery)
    await nursery.start(sio.run)
    sid, pid, offset = await first_session(sio)
    await trio.sleep(61)
    async with open_raw_client(sio) as raw:
        assert (await connect(raw, {"pid": pid, "offset": offset}))["sid"] != sid
        adapter = sio.main.adapter
        assert isinstance(adapter, InMemoryAdapter) and adapter.recovery is not None
        assert adapter.recovery.sizes == (0, 0, 0)  # the session and the packet have expired


async def test_recovery_off_keeps_the_old_wire(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server(connection_state_recovery=False)
    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        reply = await connect(raw, {"pid": "p", "offset": "o"})
        assert set(reply) == {"sid"}
        await sio.emit("hello", "s")
        assert await event(raw) == ["hello", "s"]


# -- the store ------------------------------------------------------------------------------
def store(**options: Any) -> tuple[RecoveryStore, list[float]]:
    now = [0.0]
    return RecoveryStore(ConnectionStateRecovery(**options), clock=lambda: now[0]), now


def to(*rooms: str, but: tuple[str, ...] = ()) -> BroadcastOptions:
    return BroadcastOptions(rooms=frozenset(rooms), except_rooms=frozenset(but))


def session(store: RecoveryStore, pid: str, *rooms: str) -> Session:
    kept = Session(pid.upper(), pid, frozenset((pid.upper(), *rooms)), {}, store.last_offset())
    return kept


def test_store_filters_by_rooms_and_keeps_order() -> None:
    kept, _ = store()
    start = kept.last_offset()
    kept.persist(session(kept, "p", "a"))
    kept.record(["all"], to())
    kept.record(["to-a"], to("a"))
    kept.record(["to-b"], to("b"))
    kept.record(["not-a"], to(but=("a",)))
    kept.record(["me"], to("P"))
    restored = kept.restore("p", start)
    assert restored is not None
    assert [d[0] for d in restored.missed_packets] == ["all", "to-a", "me"]
    assert all(d[-1].startswith(start.split("-")[0]) for d in restored.missed_packets)
    assert restored.offset == kept.last_offset()
    assert kept.restore("p", start) is None  # once


def test_store_bounds_packets_and_falls_back() -> None:
    kept, _ = store(max_packets=3)
    kept.persist(session(kept, "p", "a"))
    offset = kept.last_offset()
    for n in range(5):
        kept.record([f"e{n}"], to("a"))
    assert kept.sizes[0] == 3
    assert kept.restore("p", offset) is None  # e0 and e1 are gone

    kept, _ = store(max_bytes=200)
    kept.persist(session(kept, "p", "a"))
    offset = kept.last_offset()
    for _ in range(5):
        kept.record(["big", "x" * 80], to("a"))
    assert kept.sizes[1] <= 200
    assert kept.restore("p", offset) is None


def test_store_a_quiet_room_survives_the_loss_of_other_rooms_packets() -> None:
    kept, _ = store(max_packets=3)
    kept.persist(session(kept, "p", "quiet"))
    offset = kept.last_offset()
    for n in range(10):
        kept.record([f"busy{n}"], to("busy"))
    kept.record(["q"], to("quiet"))
    restored = kept.restore("p", offset)
    assert restored is not None and [d[0] for d in restored.missed_packets] == ["q"]
    # ...but not the loss of a packet to everybody
    kept.persist(session(kept, "p", "quiet"))
    offset = kept.last_offset()
    for n in range(4):
        kept.record([f"all{n}"], to())
    assert kept.restore("p", offset) is None


def test_store_expiry_and_session_bound() -> None:
    kept, now = store(max_disconnection_duration=10, max_sessions=2)
    offset = kept.last_offset()
    kept.persist(session(kept, "p1"))
    now[0] = 5
    kept.record(["e"], to())
    kept.persist(session(kept, "p2"))
    kept.persist(session(kept, "p3"))  # p1 goes: at most 2 sessions
    assert kept.sizes[2] == 2 and kept.restore("p1", offset) is None
    now[0] = 15.5  # e (emitted at 5) and p2, p3 (kept at 5) have expired
    assert kept.restore("p2", offset) is None
    assert kept.sizes == (0, 0, 0)


def test_store_offsets_are_checked() -> None:
    kept, _ = store()
    other, _ = store()
    kept.persist(session(kept, "p"))
    assert kept.restore("p", other.last_offset()) is None
    assert kept.restore("p", kept.last_offset() + "9") is None  # from the future
    prefix = kept.last_offset().rsplit("-", 1)[0]
    for digits in ("\u0663", "\u00b2", "\u00b9\u00b2\u00b3", "", "-0", " 1", "1 ", "1_0"):
        assert kept.restore("p", f"{prefix}-{digits}") is None
    assert kept.sizes[2] == 1  # a wrong offset leaves the session kept
    assert kept.restore("p", None) is not None  # none got since it connected
    assert kept.sizes[2] == 0
    assert kept.has_room("P") is False


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        ConnectionStateRecovery(max_disconnection_duration=0)
    with pytest.raises(ValueError):
        ConnectionStateRecovery(max_packets=0)
