"""The Socket.IO server and polling handshakes that are never followed up (or late).

A polling handshake starts no Socket.IO connection until its client comes back (see
``EngineServer``); these tests check what the layer above sees: no connection, the counts,
the connect timeout counted from the handshake, and a client that comes back being served
as before. Raw HTTP requests in memory, in virtual time.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import trio
import trio.testing
from sio_support import make_server

import trio_sio
from trio_sio.engineio.memory import http_request

Q = "/socket.io/?EIO=4&transport=polling"


async def handshake(sio: trio_sio.Server) -> str:
    response = await http_request(sio.engine, "GET", Q)
    assert response.status == 200, response.body
    sid: str = json.loads(response.body.decode()[1:])["sid"]
    return sid


async def get(sio: trio_sio.Server, sid: str) -> tuple[int, str]:
    response = await http_request(sio.engine, "GET", f"{Q}&sid={sid}")
    return response.status, response.body.decode()


async def post(sio: trio_sio.Server, sid: str, body: str) -> tuple[int, str]:
    response = await http_request(sio.engine, "POST", f"{Q}&sid={sid}", body.encode())
    return response.status, response.body.decode()


async def test_an_abandoned_handshake_makes_no_connection_and_is_forgotten(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sio = make_server()
    events: list[Any] = []
    sio.on("connection", lambda socket, auth: events.append("connection"))
    sio.on("disconnect", lambda socket, reason: events.append(reason))
    await nursery.start(sio.run)
    start = trio.current_time()
    sid = await handshake(sio)
    assert sio.engine.session_count == 1
    assert sio.engine.started_session(sid) is None
    await trio.sleep_until(start + 45)
    await trio.testing.wait_all_tasks_blocked()
    assert sio.engine.session_count == 0
    assert (await get(sio, sid))[0] == 400
    assert events == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_client_that_comes_back_connects_as_before(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server(echo=True)
    events: list[Any] = []

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        events.append(("connection", auth, socket.handshake.query["EIO"]))

    await nursery.start(sio.run)
    start = trio.current_time()
    sid = await handshake(sio)
    await trio.sleep(10)
    assert await post(sio, sid, '40{"token":"t"}') == (200, "ok")
    status, body = await get(sio, sid)
    assert status == 200 and body.startswith('40{"sid":')
    assert events == [("connection", {"token": "t"}, "4")]
    assert await post(sio, sid, '421["echo","hi"]') == (200, "ok")
    assert await get(sio, sid) == (200, '431["hi"]')
    # The heartbeat counts from the handshake.
    assert await get(sio, sid) == (200, "2")
    assert trio.current_time() == start + 25


async def test_the_connect_timeout_counts_from_the_handshake(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server(connect_timeout=30)
    await nursery.start(sio.run)
    start = trio.current_time()
    sid = await handshake(sio)
    await trio.sleep(20)
    # Back without connecting a namespace: the session ends 30 s after the handshake
    # (its ping, due at 25 s, comes first).
    assert await get(sio, sid) == (200, "2")
    assert await post(sio, sid, "3") == (200, "ok")
    assert await get(sio, sid) == (200, "1")
    assert trio.current_time() == start + 30


async def test_the_admin_counts_include_handshakes_not_followed_up(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    admin = sio.instrument(auth=False)
    await nursery.start(sio.run)
    sid = await handshake(sio)
    other = await handshake(sio)
    stats = admin.stats()
    assert (stats["clientsCount"], stats["pollingClientsCount"]) == (2, 2)
    assert sio.engine.started_session(sid) is None  # counting started nothing
    assert await post(sio, other, "40") == (200, "ok")
    stats = admin.stats()
    assert (stats["clientsCount"], stats["pollingClientsCount"]) == (2, 2)


async def test_a_handshake_not_followed_up_within_the_connect_timeout_is_forgotten(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server(connect_timeout=10)
    await nursery.start(sio.run)
    start = trio.current_time()
    sid = await handshake(sio)
    await trio.sleep_until(start + 10)
    await trio.testing.wait_all_tasks_blocked()
    # As its session would have been closed by the connect timeout: the sid is unknown.
    assert sio.engine.session_count == 0
    assert (await get(sio, sid))[0] == 400
