"""A polling handshake leaves a small record; its session starts when the client comes back.

Driven in memory through the real request handlers, in virtual time (autojump clock): what
an abandoned handshake costs (no task but the one shared timer, a little memory) and when it
is forgotten, and that a session that comes back behaves as one started at the handshake
(its heartbeat, polling, the upgrade, Engine.IO v3, shutdown).
"""

from __future__ import annotations

import gc
import json
import logging
import tracemalloc
from typing import Any

import pytest
import trio
import trio.testing

from trio_sio.engineio import EngineServer, EngineSocket
from trio_sio.engineio.memory import (
    http_request,
    memory_websocket_pair,
    request_head,
)
from trio_sio.protocol.errors import ConnectionClosed

Q = "/engine.io/?EIO=4&transport=polling"
LIFETIME = 25 + 20  # ping_interval + ping_timeout


class Recorder:
    """An echoing server that notes each session it opens (``on_open``) and runs."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("ping_interval", 25)
        options.setdefault("ping_timeout", 20)
        self.opened: list[tuple[str, float]] = []
        self.handled: list[str] = []
        self.server = EngineServer(self.echo, on_open=self.on_open, **options)

    def on_open(self, socket: EngineSocket) -> None:
        self.opened.append((socket.sid, trio.current_time()))

    async def echo(self, socket: EngineSocket) -> None:
        self.handled.append(socket.sid)
        async for message in socket:
            await socket.send(message)


@pytest.fixture
async def rec(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> Recorder:
    recorder = Recorder()
    await nursery.start(recorder.server.run)
    return recorder


async def handshake(server: EngineServer, query: str = Q) -> str:
    response = await http_request(server, "GET", query)
    assert response.status == 200, response.body
    body = response.body.decode()
    assert body[0] == "0", body
    sid: str = json.loads(body[1:])["sid"]
    return sid


async def get(server: EngineServer, sid: str, query: str = Q) -> tuple[int, str]:
    response = await http_request(server, "GET", f"{query}&sid={sid}")
    return response.status, response.body.decode()


async def post(server: EngineServer, sid: str, body: str) -> tuple[int, str]:
    response = await http_request(server, "POST", f"{Q}&sid={sid}", body.encode())
    return response.status, response.body.decode()


def session_tasks(server: EngineServer) -> list[str]:
    """The names of the tasks in the server's sessions nursery."""
    assert server._nursery is not None
    return [task.name for task in server._nursery.child_tasks]


async def test_an_abandoned_handshake_starts_no_task(
    autojump_clock: trio.testing.MockClock, rec: Recorder
) -> None:
    server = rec.server
    assert session_tasks(server) == []
    sids = [await handshake(server) for _ in range(20)]
    await trio.testing.wait_all_tasks_blocked()
    # One timer for all of them, and no session: no on_open, no handler, no queue.
    assert [name.rsplit(".", 1)[-1] for name in session_tasks(server)] == ["_expire_pending"]
    assert rec.opened == [] and rec.handled == []
    assert all(server.started_session(sid) is None for sid in sids)
    assert server.session_count == server.polling_session_count == 20
    assert len(set(sids)) == 20


async def test_an_abandoned_handshake_is_forgotten_after_ping_interval_plus_timeout(
    autojump_clock: trio.testing.MockClock, rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    server = rec.server
    start = trio.current_time()
    early = await handshake(server)
    await trio.sleep(10)
    late = await handshake(server)
    await trio.sleep_until(start + LIFETIME - 0.001)
    assert server.session_count == 2
    await trio.sleep_until(start + LIFETIME)
    await trio.testing.wait_all_tasks_blocked()
    # The first is forgotten on time, the second is still there.
    assert server.session_count == 1
    status, body = await get(server, early)
    assert (status, json.loads(body)) == (400, {"code": 1, "message": "Session ID unknown"})
    await trio.sleep_until(start + 10 + LIFETIME)
    await trio.testing.wait_all_tasks_blocked()
    assert server.session_count == 0
    assert session_tasks(server) == []  # the timer is gone with the last record
    assert (await get(server, late))[0] == 400
    assert rec.opened == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_handshake_claimed_just_before_its_deadline_gets_its_session(
    autojump_clock: trio.testing.MockClock,
    rec: Recorder,
) -> None:
    server = rec.server
    start = trio.current_time()
    sid = await handshake(server)
    await trio.sleep_until(start + LIFETIME - 1)
    # The ping was due 19 s ago: it goes out at once, and the pong is due at the deadline
    # of a session started at the handshake.
    assert await get(server, sid) == (200, "2")
    assert rec.opened == [(sid, start + LIFETIME - 1)]
    socket = server.started_session(sid)
    assert socket is not None and socket.opened_at == start
    await trio.sleep_until(start + LIFETIME)
    await socket.wait_closed()
    assert socket.close_reason is not None and socket.close_reason.value == "ping timeout"
    assert trio.current_time() == start + LIFETIME


async def test_a_session_that_comes_back_pings_on_the_handshakes_schedule(
    autojump_clock: trio.testing.MockClock,
    rec: Recorder,
) -> None:
    server = rec.server
    start = trio.current_time()
    sid = await handshake(server)
    await trio.sleep(10)
    assert await post(server, sid, "4hello") == (200, "ok")
    assert rec.opened == [(sid, start + 10)] and rec.handled == [sid]
    assert await get(server, sid) == (200, "4hello")
    # The first ping comes 25 s after the handshake, not after the session started.
    assert await get(server, sid) == (200, "2")
    assert trio.current_time() == start + 25
    assert await post(server, sid, "3") == (200, "ok")
    assert await get(server, sid) == (200, "2")
    assert trio.current_time() == start + 50
    assert server.session_count == 1
    assert list(server.sessions) == [sid]


async def test_concurrent_first_requests_start_one_session(
    autojump_clock: trio.testing.MockClock, rec: Recorder, nursery: trio.Nursery
) -> None:
    server = rec.server
    sid = await handshake(server)
    polled: list[tuple[int, str]] = []

    async def poll() -> None:
        polled.append(await get(server, sid))

    nursery.start_soon(poll)
    assert await post(server, sid, "4x") == (200, "ok")
    await trio.testing.wait_all_tasks_blocked()
    assert polled == [(200, "4x")]
    assert [s for s, _ in rec.opened] == [sid]


async def test_a_websocket_upgrade_can_be_the_first_request(
    autojump_clock: trio.testing.MockClock, rec: Recorder, nursery: trio.Nursery
) -> None:
    server = rec.server
    sid = await handshake(server)
    head = request_head(
        "GET", f"/engine.io/?EIO=4&transport=websocket&sid={sid}", {"upgrade": "websocket"}
    )
    assert await server.check_websocket(head) is None
    assert [s for s, _ in rec.opened] == [sid]
    ours, theirs = memory_websocket_pair()
    nursery.start_soon(server.serve_websocket, head, theirs)
    await ours.send_message("2probe")
    assert await ours.get_message() == "3probe"
    await ours.send_message("5")
    await ours.send_message("4over websocket")
    assert await ours.get_message() == "4over websocket"
    socket = server.started_session(sid)
    assert socket is not None and socket.transport == "websocket"
    assert (await get(server, sid))[0] == 400


async def test_serve_websocket_alone_claims_the_handshake(
    autojump_clock: trio.testing.MockClock, rec: Recorder, nursery: trio.Nursery
) -> None:
    server = rec.server
    sid = await handshake(server)
    head = request_head(
        "GET", f"/engine.io/?EIO=4&transport=websocket&sid={sid}", {"upgrade": "websocket"}
    )
    ours, theirs = memory_websocket_pair()
    nursery.start_soon(server.serve_websocket, head, theirs)
    await ours.send_message("2probe")
    assert await ours.get_message() == "3probe"


async def test_a_websocket_request_with_a_pending_sid_but_no_upgrade_is_a_mismatch(
    autojump_clock: trio.testing.MockClock,
    rec: Recorder,
) -> None:
    server = rec.server
    sid = await handshake(server)
    response = await http_request(server, "GET", f"/engine.io/?EIO=4&transport=websocket&sid={sid}")
    assert response.status == 400
    assert rec.opened == [] and server.session_count == 1  # still waiting for its client


async def test_reading_sessions_starts_the_pending_ones(
    autojump_clock: trio.testing.MockClock, rec: Recorder
) -> None:
    server = rec.server
    sid = await handshake(server)
    socket = server.sessions[sid]
    await socket.send("queued before any GET")
    assert await get(server, sid) == (200, "4queued before any GET")
    assert [s for s, _ in rec.opened] == [sid]


async def test_engineio_v3_handshakes_start_their_session_at_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    recorder = Recorder(allow_eio3=True)
    await nursery.start(recorder.server.run)
    response = await http_request(recorder.server, "GET", "/engine.io/?EIO=3&transport=polling")
    assert response.status == 200
    ((sid, _),) = recorder.opened
    assert recorder.server.started_session(sid) is not None


async def test_websocket_handshakes_start_their_session_at_once(
    autojump_clock: trio.testing.MockClock, rec: Recorder, nursery: trio.Nursery
) -> None:
    head = request_head("GET", "/engine.io/?EIO=4&transport=websocket", {"upgrade": "websocket"})
    assert await rec.server.check_websocket(head) is None
    ours, theirs = memory_websocket_pair()
    nursery.start_soon(rec.server.serve_websocket, head, theirs)
    opening = await ours.get_message()
    assert isinstance(opening, str) and opening[0] == "0"
    assert [s for s, _ in rec.opened] == [json.loads(opening[1:])["sid"]]


async def test_shutdown_forgets_pending_handshakes_at_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    recorder = Recorder(close_timeout=5)
    server = recorder.server
    await nursery.start(server.run)
    sids = [await handshake(server) for _ in range(3)]
    start = trio.current_time()
    server.shutdown()
    await server.wait_stopped()
    assert trio.current_time() == start  # nothing to flush: no close_timeout to wait
    assert server.session_count == 0 and recorder.opened == []
    assert (await get(server, sids[0]))[0] == 400


async def test_a_claim_during_shutdown_is_an_unknown_sid(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    recorder = Recorder()
    server = recorder.server
    await nursery.start(server.run)
    sid = await handshake(server)
    started = await handshake(server)
    assert await post(server, started, "4x") == (200, "ok")
    socket = server.started_session(started)
    assert socket is not None
    server.shutdown()
    await trio.testing.wait_all_tasks_blocked()
    assert (await get(server, sid))[0] == 400
    with pytest.raises(ConnectionClosed):
        await socket.send("late")


async def test_the_cookie_and_the_headers_hooks_see_the_handshake(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    recorder = Recorder(cookie="io")
    server = recorder.server
    seen: list[tuple[str, str]] = []
    server.on("initial_headers", lambda headers, head: seen.append(("initial", head.method)))
    server.on("headers", lambda headers, head: seen.append(("headers", head.method)))
    await nursery.start(server.run)
    response = await http_request(server, "GET", Q)
    sid = json.loads(response.body.decode()[1:])["sid"]
    assert ("Set-Cookie", f"io={sid}; Path=/; HttpOnly; SameSite=Lax") in response.headers
    assert seen == [("initial", "GET"), ("headers", "GET")]
    assert await post(server, sid, "4x") == (200, "ok")
    assert seen[2:] == [("headers", "POST")]


async def test_an_abandoned_handshake_holds_little_memory(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    recorder = Recorder()
    server = recorder.server
    await nursery.start(server.run)
    for _ in range(20):  # first-use costs (the timer's task, caches) are not counted
        await handshake(server)
    heads = [request_head("GET", Q, {"host": "example.test"}) for _ in range(500)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for head in heads:
            response = await server.handle_http(head, _no_body())
            assert response.status == 200
            del response
        gc.collect()
        held = (tracemalloc.get_traced_memory()[0] - before) / len(heads)
    finally:
        tracemalloc.stop()
    # The record, its sid, its place in the dict and in the timer's queue: the request
    # head is the caller's (counted in `heads`). A started session holds about 18 KB.
    print(f"\n{held:.0f} bytes held per abandoned handshake")
    assert held < 600
    assert server.session_count == 520


async def _no_body() -> Any:
    return
    yield
