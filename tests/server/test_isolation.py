"""One session's failure ends that session only: the server and the other sessions go on.

Failures are injected into every kind of task a session runs and into every phase of its
life; after each, a bystander connected before still gets its answers and a new client can
connect. Peer mistakes (bad packets, requests at the wrong time) must not even log an error.
"""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import sio_support
import trio
import trio.testing

import trio_sio
from trio_sio.engineio.memory import http_request, memory_websocket_pair, request_head
from trio_sio.engineio.socket import EngineSocket, Reader
from trio_sio.engineio.transports import PollingTransport
from trio_sio.server.connection import Connection
from trio_sio.testing import RawClient, open_raw_client

Q = "/socket.io/?EIO=4&transport=polling"


class Boom(Exception):
    """The injected failure."""


def make_server(**options: Any) -> trio_sio.Server:
    return sio_support.make_server(echo=True, **options)


async def round_trip(raw: RawClient, n: int) -> None:
    await raw.send(f'42{n}["echo",{n}]')
    await raw.expect(f"43{n}[{n}]")


async def assert_serving(sio: trio_sio.Server, bystander: RawClient) -> None:
    """The bystander is unaffected, and a new client connects and gets answers."""
    with trio.fail_after(30):
        await round_trip(bystander, 7)
        async with open_raw_client(sio) as fresh:
            await fresh.connect()
            await round_trip(fresh, 8)


@asynccontextmanager
async def bystander_of(sio: trio_sio.Server) -> AsyncIterator[RawClient]:
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await round_trip(raw, 1)
        yield raw


def no_errors(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def post(sio: trio_sio.Server, sid: str, body: str) -> tuple[int, str]:
    response = await http_request(sio.engine, "POST", f"{Q}&sid={sid}", body.encode())
    return response.status, response.body.decode()


async def get(sio: trio_sio.Server, sid: str) -> tuple[int, str]:
    response = await http_request(sio.engine, "GET", f"{Q}&sid={sid}")
    return response.status, response.body.decode()


async def polling_session(sio: trio_sio.Server) -> str:
    response = await http_request(sio.engine, "GET", Q)
    assert response.status == 200
    sid: str = response.body.decode()[1:].split('"sid":"')[1].split('"')[0]
    return sid


# -- peer mistakes: the session ends, quietly -----------------------------------------------


async def test_connect_error_then_connect_in_one_payload_ends_only_that_session(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sio = make_server()
    await nursery.start(sio.run)
    async with bystander_of(sio) as bystander:
        sid = await polling_session(sio)
        assert await post(sio, sid, '44{"message":"x"}\x1e40') == (200, "ok")
        await trio.sleep(2)  # the close waits (close_timeout) for a GET to take the CLOSE
        assert sid not in sio.engine.sessions
        assert len(sio.main.sockets) == 1  # the bystander only: the CONNECT was not run
        await assert_serving(sio, bystander)
    no_errors(caplog)


async def test_connect_error_then_connect_over_websocket(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sio = make_server()
    await nursery.start(sio.run)
    async with bystander_of(sio) as bystander:
        async with open_raw_client(sio) as bad:
            await bad.send('44{"message":"x"}')
            await bad.send("40")
            with trio.fail_after(5):
                await bad.closed.wait()
        await assert_serving(sio, bystander)
    no_errors(caplog)


async def test_a_post_to_a_closing_session_is_answered(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sio = make_server()
    await nursery.start(sio.run)
    for _ in range(20):
        sid = await polling_session(sio)
        assert await post(sio, sid, "40") == (200, "ok")
        assert (await get(sio, sid))[0] == 200  # the CONNECT reply
        assert await post(sio, sid, "1") == (200, "ok")  # CLOSE: closes gracefully
        with trio.fail_after(5):
            status, _ = await post(sio, sid, "3")
        assert status == 400
    await trio.sleep(2)
    assert sio.engine.sessions == {}
    no_errors(caplog)


async def test_posts_queued_behind_a_closing_packet_are_answered(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    gate = trio.Event()
    sio = make_server()

    @sio.on("hold")
    async def hold(socket: trio_sio.Socket) -> None:
        await gate.wait()

    await nursery.start(sio.run)
    sid = await polling_session(sio)
    assert await post(sio, sid, "40") == (200, "ok")
    transport = sio.engine.sessions[sid]._transport
    assert isinstance(transport, PollingTransport)
    results: list[int] = []

    async def send(body: str) -> None:
        results.append((await post(sio, sid, body))[0])

    async with trio.open_nursery() as inner:
        inner.start_soon(send, "1")
        await trio.testing.wait_all_tasks_blocked()
        inner.start_soon(send, "42")
    assert sorted(results) == [200, 400]


# -- injected failures: each ends one session ------------------------------------------


Injector = Callable[[pytest.MonkeyPatch, trio_sio.Server], None]


def _target(socket: EngineSocket) -> bool:
    return socket.request.query.get("boom") == "1"


def _in_receive(mp: pytest.MonkeyPatch, sio: trio_sio.Server) -> None:
    original = Connection.on_message

    async def on_message(self: Connection, message: str | bytes, reader: Reader) -> None:
        if _target(self.engine) and message == '42["trigger"]':
            raise Boom
        await original(self, message, reader)

    mp.setattr(Connection, "on_message", on_message)


def _in_heartbeat(mp: pytest.MonkeyPatch, sio: trio_sio.Server) -> None:
    original = EngineSocket._heartbeat_loop

    async def heartbeat(self: EngineSocket) -> None:
        if _target(self):
            await trio.sleep(1)
            raise Boom
        await original(self)

    mp.setattr(EngineSocket, "_heartbeat_loop", heartbeat)


def _in_send(mp: pytest.MonkeyPatch, sio: trio_sio.Server) -> None:
    original = EngineSocket._written

    def written(self: EngineSocket, size: int) -> None:
        original(self, size)
        if _target(self) and isinstance(self.handler, Connection) and self.handler.sockets:
            raise Boom

    mp.setattr(EngineSocket, "_written", written)


def _in_handler(mp: pytest.MonkeyPatch, sio: trio_sio.Server) -> None:
    @sio.on("trigger")
    def trigger(socket: trio_sio.Socket) -> None:
        raise Boom


def _in_middleware(mp: pytest.MonkeyPatch, sio: trio_sio.Server) -> None:
    @sio.use
    def middleware(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        if socket.handshake.query.get("boom") == "1":
            raise Boom


def _in_connection_handler(mp: pytest.MonkeyPatch, sio: trio_sio.Server) -> None:
    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: Any) -> None:
        if socket.handshake.query.get("boom") == "1":
            raise Boom


def _in_ack_callback(mp: pytest.MonkeyPatch, sio: trio_sio.Server) -> None:
    @sio.on("trigger")
    async def trigger(socket: trio_sio.Socket) -> None:
        def callback(*args: Any) -> None:
            raise Boom

        await socket.emit("question", callback=callback)


def _in_background_task(mp: pytest.MonkeyPatch, sio: trio_sio.Server) -> None:
    @sio.on("trigger")
    def trigger(socket: trio_sio.Socket) -> None:
        async def task() -> None:
            await trio.sleep(1)
            raise Boom

        socket.start_soon(task)


def _in_adapter(mp: pytest.MonkeyPatch, sio: trio_sio.Server) -> None:
    async def broadcast(*args: Any) -> None:
        raise Boom

    mp.setattr(sio.main.adapter, "broadcast", broadcast)

    @sio.on("trigger")
    async def trigger(socket: trio_sio.Socket) -> None:
        if socket.handshake.query.get("boom") == "1":
            await socket.broadcast.emit("news")


def _in_disconnect_handler(mp: pytest.MonkeyPatch, sio: trio_sio.Server) -> None:
    @sio.on("disconnecting")
    @sio.on("disconnect")
    def gone(socket: trio_sio.Socket, reason: str) -> None:
        if socket.handshake.query.get("boom") == "1":
            raise Boom


def _in_transport_close(mp: pytest.MonkeyPatch, sio: trio_sio.Server) -> None:
    original = EngineSocket._release_queues

    def release(self: EngineSocket) -> None:
        original(self)
        if _target(self):
            raise Boom

    mp.setattr(EngineSocket, "_release_queues", release)


def _in_session_start(mp: pytest.MonkeyPatch, sio: trio_sio.Server) -> None:
    original = EngineSocket._send_loop

    async def send_loop(self: EngineSocket) -> None:
        if _target(self):
            raise Boom
        await original(self)

    mp.setattr(EngineSocket, "_send_loop", send_loop)


INJECTORS: dict[str, Injector] = {
    "receive task": _in_receive,
    "heartbeat task": _in_heartbeat,
    "send task": _in_send,
    "event handler": _in_handler,
    "middleware": _in_middleware,
    "connection handler": _in_connection_handler,
    "ack callback": _in_ack_callback,
    "background task": _in_background_task,
    "adapter delivery": _in_adapter,
    "disconnect handlers": _in_disconnect_handler,
    "close": _in_transport_close,
    "session start": _in_session_start,
}


@pytest.mark.parametrize("where", list(INJECTORS))
async def test_an_injected_failure_ends_one_session_at_most(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    sio = make_server()
    INJECTORS[where](monkeypatch, sio)
    await nursery.start(sio.run)
    async with bystander_of(sio) as bystander:
        with trio.move_on_after(5):
            try:
                async with open_raw_client(sio, query={"boom": "1"}) as victim:
                    await victim.connect()
                    await victim.send('42["trigger"]')
                    while True:
                        frame = await victim.receive()
                        if frame == '420["question"]':
                            await victim.send("430[]")
            except Exception:  # the victim's own connection may end in any way
                pass
        await trio.sleep(2)
        await assert_serving(sio, bystander)
    await trio.testing.wait_all_tasks_blocked()


async def test_an_injected_failure_during_the_upgrade_ends_one_session_at_most(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def switch(self: EngineSocket, transport: Any) -> bool:
        raise Boom

    monkeypatch.setattr(EngineSocket, "_switch", switch)
    sio = make_server()
    await nursery.start(sio.run)
    async with bystander_of(sio) as bystander:
        sid = await polling_session(sio)
        assert await post(sio, sid, "40") == (200, "ok")
        head = request_head(
            "GET",
            f"/socket.io/?EIO=4&transport=websocket&sid={sid}",
            {"upgrade": "websocket", "connection": "Upgrade"},
        )
        ours, theirs = memory_websocket_pair()

        async def upgrade() -> None:
            await ours.send_message("2probe")
            assert await ours.get_message() == "3probe"
            await ours.send_message("5")

        async with trio.open_nursery() as inner:
            inner.start_soon(upgrade)
            # the front end closes this WebSocket (and logs the bug); nothing else is hurt
            with pytest.raises(Boom):
                await sio.engine.serve_websocket(head, theirs)
        status, body = await get(sio, sid)  # the polling session goes on
        assert status == 200 and body.startswith('40{"sid":')
        await assert_serving(sio, bystander)


# -- memory comes back when a session ends ------------------------------------------------


async def test_a_closed_session_holds_no_queued_data(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    await nursery.start(sio.run)
    sid = await polling_session(sio)
    assert await post(sio, sid, "40") == (200, "ok")
    engine = sio.engine.sessions[sid]
    connection = engine.handler
    socket = next(iter(sio.main.sockets.values()))
    for _ in range(50):
        await socket.emit("big", "x" * 10_000)
    assert engine.statistics()["queued_bytes"] > 400_000
    refs = weakref.ref(engine), weakref.ref(connection)
    del engine, connection, socket
    gc.collect()
    gc.disable()  # what is freed now is freed by reference counting alone: no cycles
    try:
        await post(sio, sid, "1")
        await trio.sleep(2)
        assert sid not in sio.engine.sessions
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()


# -- slow consumers -------------------------------------------------------------------------


async def test_a_broadcast_never_waits_for_a_stalled_socket(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_sio")
    sio = make_server(max_buffer_bytes=100_000, slow_consumer_grace=5)
    reasons: list[str] = []

    @sio.on("disconnect")
    def gone(socket: trio_sio.Socket, reason: str) -> None:
        reasons.append(reason)

    await nursery.start(sio.run)
    stalled = await polling_session(sio)  # never polls again
    assert await post(sio, stalled, "40") == (200, "ok")
    async with bystander_of(sio) as healthy:
        start = trio.current_time()
        for tick in range(30):
            t0 = trio.current_time()
            await sio.emit("tick", tick, "x" * 10_000)
            assert trio.current_time() - t0 < 0.01  # virtual time: it never waited
            await healthy.expect(f'42["tick",{tick},"{"x" * 10_000}"]')
            await trio.sleep(1 / 3)
        assert trio.current_time() - start < 11
    assert reasons[0] == "slow consumer"
    assert stalled not in sio.engine.sessions
    assert any("slow consumer" in r.getMessage() for r in caplog.records)
    no_errors(caplog)


async def test_outgoing_listeners_see_broadcasts(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    seen: list[tuple[str, str, tuple[Any, ...]]] = []

    @sio.on_any_outgoing
    def outgoing(socket: trio_sio.Socket, event: str, *args: Any) -> None:
        seen.append((socket.id, event, args))

    await nursery.start(sio.run)
    async with open_raw_client(sio) as a, open_raw_client(sio) as b:
        ids = [await a.connect(), await b.connect()]
        await sio.emit("news", 1, "two")
        await a.expect('42["news",1,"two"]')
    assert sorted(seen) == sorted((i, "news", (1, "two")) for i in ids)


async def test_empty_child_namespaces_are_removed_when_asked(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    import re

    sio = make_server(cleanup_empty_child_namespaces=True)
    parent = sio.of(re.compile(r"/user-\d+"))
    await nursery.start(sio.run)
    for i in range(5):
        async with open_raw_client(sio) as raw:
            await raw.connect(f"/user-{i}")
            assert f"/user-{i}" in parent.children
        await trio.testing.wait_all_tasks_blocked()
    assert parent.children == {}
    kept = make_server()
    kept_parent = kept.of(re.compile(r"/user-\d+"))
    await nursery.start(kept.run)
    async with open_raw_client(kept) as raw:
        await raw.connect("/user-1")
    await trio.testing.wait_all_tasks_blocked()
    assert list(kept_parent.children) == ["/user-1"]  # the JS default keeps them
