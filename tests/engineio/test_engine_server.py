"""Engine.IO server behaviour, driven in memory through the real request handlers.

Every test runs under pytest-trio's autojump clock: heartbeats and timeouts take virtual time.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import trio
import trio.testing

from trio_sio.engineio import EngineServer, EngineSocket
from trio_sio.engineio.memory import (
    MemoryWebSocket,
    http_request,
    memory_websocket_pair,
    request_head,
)
from trio_sio.engineio.socket import SessionState
from trio_sio.protocol.engineio import CloseReason, Packet, PacketType
from trio_sio.protocol.errors import ConnectionClosed

Q = "/engine.io/?EIO=4&transport=polling"


async def echo(socket: EngineSocket) -> None:
    async for message in socket:
        await socket.send(message)


@pytest.fixture
async def server(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> EngineServer:
    srv = EngineServer(echo, ping_interval=25, ping_timeout=20)
    await nursery.start(srv.run)
    return srv


async def handshake(server: EngineServer, query: str = Q) -> tuple[str, dict[str, Any]]:
    response = await http_request(server, "GET", query)
    assert response.status == 200, response.body
    body = response.body.decode()
    assert body[0] == "0"
    info = json.loads(body[1:])
    return info["sid"], info


async def get(server: EngineServer, sid: str) -> tuple[int, str]:
    response = await http_request(server, "GET", f"{Q}&sid={sid}")
    return response.status, response.body.decode()


async def post(server: EngineServer, sid: str, body: str | bytes) -> tuple[int, str]:
    data = body.encode() if isinstance(body, str) else body
    response = await http_request(server, "POST", f"{Q}&sid={sid}", data)
    return response.status, response.body.decode()


async def open_ws(server: EngineServer, nursery: trio.Nursery, query: str) -> MemoryWebSocket:
    head = request_head("GET", query, {"upgrade": "websocket", "connection": "Upgrade"})
    assert await server.check_websocket(head) is None
    ours, theirs = memory_websocket_pair()

    async def serve() -> None:
        try:
            await server.serve_websocket(head, theirs)
        finally:
            await theirs.aclose()

    nursery.start_soon(serve)
    return ours


# -- handshake --------------------------------------------------------------------------


async def test_polling_handshake(
    autojump_clock: trio.testing.MockClock, server: EngineServer
) -> None:
    sid, info = await handshake(server)
    assert set(info) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert info["upgrades"] == ["websocket"]
    assert (info["pingInterval"], info["pingTimeout"], info["maxPayload"]) == (
        25000,
        20000,
        1_000_000,
    )
    assert len(sid) >= 20  # 120 random bits, base64url
    assert sid in server.sessions


async def test_sids_are_unique(
    autojump_clock: trio.testing.MockClock, server: EngineServer
) -> None:
    sids = {(await handshake(server))[0] for _ in range(50)}
    assert len(sids) == 50


@pytest.mark.parametrize(
    ("method", "query", "status", "code"),
    [
        ("GET", "/engine.io/?transport=polling", 400, 5),
        ("GET", "/engine.io/?EIO=abc&transport=polling", 400, 5),
        ("GET", "/engine.io/?EIO=4", 400, 0),
        ("GET", "/engine.io/?EIO=4&transport=abc", 400, 0),
        ("POST", "/engine.io/?EIO=4&transport=polling", 400, 2),
        ("PUT", "/engine.io/?EIO=4&transport=polling", 400, 2),
        ("GET", "/engine.io/?EIO=4&transport=polling&sid=nope", 400, 1),
        ("GET", "/engine.io/?EIO=4&transport=websocket", 400, 3),
    ],
)
async def test_bad_requests_get_js_error_bodies(
    autojump_clock: trio.testing.MockClock,
    server: EngineServer,
    method: str,
    query: str,
    status: int,
    code: int,
) -> None:
    response = await http_request(server, method, query)
    assert response.status == status
    assert json.loads(response.body)["code"] == code
    assert server.sessions == {}


async def test_websocket_refused_before_accept(
    autojump_clock: trio.testing.MockClock, server: EngineServer
) -> None:
    for query, code in [
        ("/engine.io/?EIO=3&transport=websocket", 5),
        ("/engine.io/?EIO=4&transport=websocket&sid=unknown", 1),
        ("/engine.io/?EIO=4&transport=polling", 3),
    ]:
        head = request_head("GET", query, {"upgrade": "websocket"})
        refusal = await server.check_websocket(head)
        assert refusal is not None and json.loads(refusal.body)["code"] == code


# -- polling ----------------------------------------------------------------------------


async def test_polling_echo_batches_replies(
    autojump_clock: trio.testing.MockClock, server: EngineServer
) -> None:
    sid, _ = await handshake(server)
    assert await post(server, sid, "4test1\x1e4test2\x1e4test3") == (200, "ok")
    assert await get(server, sid) == (200, "4test1\x1e4test2\x1e4test3")
    assert await post(server, sid, "4hello\x1ebAQIDBA==") == (200, "ok")
    assert await get(server, sid) == (200, "4hello\x1ebAQIDBA==")


async def test_get_parks_until_data(
    autojump_clock: trio.testing.MockClock, server: EngineServer, nursery: trio.Nursery
) -> None:
    sid, _ = await handshake(server)
    result: list[tuple[int, str]] = []

    async def poll() -> None:
        result.append(await get(server, sid))

    nursery.start_soon(poll)
    await trio.sleep(5)
    assert result == []
    await server.sessions[sid].send("late")
    await trio.testing.wait_all_tasks_blocked()
    assert result == [(200, "4late")]


async def test_invalid_payload_closes_session(
    autojump_clock: trio.testing.MockClock, server: EngineServer
) -> None:
    sid, _ = await handshake(server)
    socket = server.sessions[sid]
    status, _ = await post(server, sid, "abc")
    assert status == 400
    await socket.wait_closed()
    assert socket.close_reason is CloseReason.PARSE_ERROR
    assert (await get(server, sid))[0] == 400
    assert sid not in server.sessions


async def test_duplicate_get_closes_session(
    autojump_clock: trio.testing.MockClock, server: EngineServer, nursery: trio.Nursery
) -> None:
    sid, _ = await handshake(server)
    first: list[tuple[int, str]] = []

    async def poll() -> None:
        first.append(await get(server, sid))

    nursery.start_soon(poll)
    await trio.testing.wait_all_tasks_blocked()
    assert (await get(server, sid))[0] == 400
    await trio.testing.wait_all_tasks_blocked()
    assert first == [(200, "1")]
    assert (await get(server, sid))[0] == 400


async def test_oversize_post_is_413_and_session_survives(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    srv = EngineServer(echo, max_http_buffer_size=100)
    await nursery.start(srv.run)
    sid, info = await handshake(srv)
    assert info["maxPayload"] == 100
    response = await http_request(srv, "POST", f"{Q}&sid={sid}", b"4" + b"x" * 100)
    assert response.status == 413 and response.close
    assert await post(srv, sid, "4" + "x" * 99) == (200, "ok")
    assert await get(srv, sid) == (200, "4" + "x" * 99)


async def test_client_close_releases_get_with_noop(
    autojump_clock: trio.testing.MockClock, server: EngineServer, nursery: trio.Nursery
) -> None:
    sid, _ = await handshake(server)
    got: list[tuple[int, str]] = []

    async def poll() -> None:
        got.append(await get(server, sid))

    nursery.start_soon(poll)
    await trio.testing.wait_all_tasks_blocked()
    assert (await post(server, sid, "1"))[0] == 200
    await trio.testing.wait_all_tasks_blocked()
    assert got == [(200, "6")]
    assert (await get(server, sid))[0] == 400


# -- heartbeat --------------------------------------------------------------------------


async def test_polling_heartbeat_and_timeout(
    autojump_clock: trio.testing.MockClock, server: EngineServer
) -> None:
    sid, _ = await handshake(server)
    socket = server.sessions[sid]
    t0 = trio.current_time()
    for _ in range(3):
        assert await get(server, sid) == (200, "2")
        assert await post(server, sid, "3") == (200, "ok")
    assert trio.current_time() - t0 == pytest.approx(75, abs=0.01)
    # No pong for the next ping: closed ping_timeout after it.
    assert await get(server, sid) == (200, "2")
    t_ping = trio.current_time()
    await socket.wait_closed()
    assert trio.current_time() - t_ping == pytest.approx(20, abs=0.01)
    assert socket.close_reason is CloseReason.PING_TIMEOUT
    assert (await get(server, sid))[0] == 400


async def test_websocket_ping_timeout(
    autojump_clock: trio.testing.MockClock, server: EngineServer, nursery: trio.Nursery
) -> None:
    ws = await open_ws(server, nursery, "/engine.io/?EIO=4&transport=websocket")
    opening = await ws.get_message()
    assert isinstance(opening, str) and opening.startswith("0")
    assert json.loads(opening[1:])["upgrades"] == []
    t0 = trio.current_time()
    assert await ws.get_message() == "2"
    await ws.send_message("3")
    assert await ws.get_message() == "2"
    assert trio.current_time() - t0 == pytest.approx(50, abs=0.01)
    assert await ws.get_message() == "1"  # no pong: closed with a close packet
    assert trio.current_time() - t0 == pytest.approx(70, abs=0.01)
    with pytest.raises(ConnectionClosed):
        await ws.get_message()
    await trio.testing.wait_all_tasks_blocked()
    assert server.sessions == {}


# -- websocket --------------------------------------------------------------------------


async def test_websocket_echo_and_bad_packet(
    autojump_clock: trio.testing.MockClock, server: EngineServer, nursery: trio.Nursery
) -> None:
    ws = await open_ws(server, nursery, "/engine.io/?EIO=4&transport=websocket")
    await ws.get_message()
    await ws.send_message("4hello")
    assert await ws.get_message() == "4hello"
    await ws.send_message(b"\x01\x02")
    assert await ws.get_message() == b"\x01\x02"
    await ws.send_message("abc")
    assert await ws.get_message() == "1"
    with pytest.raises(ConnectionClosed):
        await ws.get_message()
    await trio.testing.wait_all_tasks_blocked()
    assert server.sessions == {}


async def test_websocket_client_close(
    autojump_clock: trio.testing.MockClock, server: EngineServer, nursery: trio.Nursery
) -> None:
    ws = await open_ws(server, nursery, "/engine.io/?EIO=4&transport=websocket")
    opening = await ws.get_message()
    sid = json.loads(opening[1:])["sid"]
    socket = server.sessions[sid]
    await ws.send_message("1")
    await socket.wait_closed()
    assert socket.close_reason is CloseReason.TRANSPORT_CLOSE


# -- upgrade ----------------------------------------------------------------------------


async def test_upgrade_keeps_order_and_refuses_polling_after(
    autojump_clock: trio.testing.MockClock, server: EngineServer, nursery: trio.Nursery
) -> None:
    sid, _ = await handshake(server)
    socket = server.sessions[sid]
    parked: list[tuple[int, str]] = []

    async def poll() -> None:
        parked.append(await get(server, sid))

    nursery.start_soon(poll)
    await trio.testing.wait_all_tasks_blocked()
    ws = await open_ws(server, nursery, f"/engine.io/?EIO=4&transport=websocket&sid={sid}")
    await ws.send_message("2probe")
    assert await ws.get_message() == "3probe"
    await trio.testing.wait_all_tasks_blocked()
    assert parked == [(200, "6")]  # the parked GET was released with a noop
    # Messages queued mid-upgrade wait and go out on the WebSocket, in order.
    for i in range(5):
        await socket.send(f"m{i}")
    await ws.send_message("5")
    for i in range(5):
        assert await ws.get_message() == f"4m{i}"
    assert socket.transport == "websocket"
    assert (await get(server, sid))[0] == 400
    await ws.send_message("4hello")
    assert await ws.get_message() == "4hello"
    # A second WebSocket for the same sid is closed at once; the first one is unharmed.
    second = await open_ws(server, nursery, f"/engine.io/?EIO=4&transport=websocket&sid={sid}")
    with pytest.raises(ConnectionClosed):
        await second.get_message()
    await ws.send_message("4again")
    assert await ws.get_message() == "4again"


async def test_get_mid_upgrade_gets_noop(
    autojump_clock: trio.testing.MockClock, server: EngineServer, nursery: trio.Nursery
) -> None:
    sid, _ = await handshake(server)
    ws = await open_ws(server, nursery, f"/engine.io/?EIO=4&transport=websocket&sid={sid}")
    await ws.send_message("2probe")
    assert await ws.get_message() == "3probe"
    t0 = trio.current_time()
    assert await get(server, sid) == (200, "6")
    assert trio.current_time() - t0 <= 0.1 + 1e-6


async def test_failed_probe_leaves_polling_working(
    autojump_clock: trio.testing.MockClock, server: EngineServer, nursery: trio.Nursery
) -> None:
    sid, _ = await handshake(server)
    ws = await open_ws(server, nursery, f"/engine.io/?EIO=4&transport=websocket&sid={sid}")
    await ws.send_message("4not-a-probe")
    with pytest.raises(ConnectionClosed):
        await ws.get_message()
    assert await post(server, sid, "4still") == (200, "ok")
    assert await get(server, sid) == (200, "4still")


async def test_upgrade_timeout(
    autojump_clock: trio.testing.MockClock, server: EngineServer, nursery: trio.Nursery
) -> None:
    sid, _ = await handshake(server)
    ws = await open_ws(server, nursery, f"/engine.io/?EIO=4&transport=websocket&sid={sid}")
    await ws.send_message("2probe")
    assert await ws.get_message() == "3probe"
    t0 = trio.current_time()
    with pytest.raises(ConnectionClosed):
        await ws.get_message()
    assert trio.current_time() - t0 == pytest.approx(10, abs=0.01)
    assert server.sessions[sid].transport == "polling"


# -- lifetime, isolation, limits --------------------------------------------------------


async def test_shutdown_closes_every_session_with_close_packet(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    srv = EngineServer(echo)
    done = trio.Event()

    async def run() -> None:
        await srv.run()
        done.set()

    nursery.start_soon(run)
    await trio.testing.wait_all_tasks_blocked()
    sid, _ = await handshake(srv)
    ws = await open_ws(srv, nursery, "/engine.io/?EIO=4&transport=websocket")
    await ws.get_message()
    parked: list[tuple[int, str]] = []

    async def poll() -> None:
        parked.append(await get(srv, sid))

    nursery.start_soon(poll)
    await trio.testing.wait_all_tasks_blocked()
    srv.shutdown()
    assert await ws.get_message() == "1"
    await done.wait()
    assert parked == [(200, "1")]
    assert srv.sessions == {}


async def test_failing_handler_harms_no_other_session(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(socket: EngineSocket) -> None:
        async for message in socket:
            if message == "boom":
                raise RuntimeError("handler bug")
            await socket.send(message)

    srv = EngineServer(handler)
    await nursery.start(srv.run)
    a, _ = await handshake(srv)
    b, _ = await handshake(srv)
    with caplog.at_level(logging.ERROR, "trio_sio.engineio"):
        await post(srv, a, "4boom")
        await trio.testing.wait_all_tasks_blocked()
    assert "handler bug" in caplog.text
    assert await get(srv, a) == (200, "1")  # graceful close after the handler failed
    assert await post(srv, b, "4fine") == (200, "ok")
    assert await get(srv, b) == (200, "4fine")


async def test_send_queue_is_bounded_in_bytes(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def idle(socket: EngineSocket) -> None:
        await trio.sleep_forever()

    srv = EngineServer(idle, max_buffer_bytes=100, slow_consumer_grace=5)
    await nursery.start(srv.run)
    sid, _ = await handshake(srv)
    socket = srv.sessions[sid]
    for i in range(4):
        socket.send_nowait(f"{i}" * 20)  # 4 x (20 + 8) bytes: over 100 after the 4th
    with pytest.raises(trio.WouldBlock):
        socket.send_nowait("too many")
    with trio.move_on_after(1) as scope:
        await socket.send("blocks")
    assert scope.cancelled_caught
    assert socket.statistics()["queued_bytes"] == 112
    # a forced send (a broadcast) is still queued, up to twice the bound
    socket.send_packets_nowait([Packet(PacketType.MESSAGE, "x" * 100)], force=True)
    with pytest.raises(ConnectionClosed):
        socket.send_packets_nowait([Packet(PacketType.MESSAGE, "y")], force=True)
    assert socket.close_reason is CloseReason.SLOW_CONSUMER


async def test_a_session_over_its_bound_for_the_grace_period_is_closed(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def idle(socket: EngineSocket) -> None:
        await trio.sleep_forever()

    srv = EngineServer(idle, max_buffer_bytes=100, slow_consumer_grace=5)
    await nursery.start(srv.run)
    sid, _ = await handshake(srv)
    socket = srv.sessions[sid]
    start = trio.current_time()
    with pytest.raises(ConnectionClosed):
        await socket.send("x" * 200)  # queued (the queue was below its bound)
        await socket.send("y")  # waits for room, until the session is closed
    assert socket.close_reason is CloseReason.SLOW_CONSUMER
    assert trio.current_time() - start == pytest.approx(5)
    await socket.wait_closed()
    assert sid not in srv.sessions


async def test_a_session_that_drains_in_time_is_kept(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def idle(socket: EngineSocket) -> None:
        await trio.sleep_forever()

    srv = EngineServer(idle, max_buffer_bytes=100, slow_consumer_grace=5)
    await nursery.start(srv.run)
    sid, _ = await handshake(srv)
    socket = srv.sessions[sid]
    for _ in range(3):
        await socket.send("x" * 200)
        await trio.sleep(4)
        assert await get(srv, sid) == (200, "4" + "x" * 200)
    await trio.sleep(10)
    assert socket.state is SessionState.OPEN, socket.close_reason


async def test_closed_session_refuses_sends(
    autojump_clock: trio.testing.MockClock, server: EngineServer
) -> None:
    sid, _ = await handshake(server)
    socket = server.sessions[sid]
    await socket.aclose()
    with pytest.raises(ConnectionClosed):
        await socket.send("x")
    with pytest.raises(ConnectionClosed):
        await socket.receive()


# -- CORS and request hooks ---------------------------------------------------------------


async def _server_with(nursery: trio.Nursery, **options: Any) -> EngineServer:
    srv = EngineServer(echo, **options)
    await nursery.start(srv.run)
    return srv


async def test_same_origin_by_default(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    srv = await _server_with(nursery)
    ok = await http_request(srv, "GET", Q, headers={"Origin": "http://a.test", "Host": "a.test"})
    assert ok.status == 200
    assert ("Access-Control-Allow-Origin", "http://a.test") in ok.headers
    bad = await http_request(
        srv, "GET", Q, headers={"Origin": "http://evil.test", "Host": "a.test"}
    )
    assert bad.status == 403
    head = request_head(
        "GET",
        "/engine.io/?EIO=4&transport=websocket",
        {"Origin": "http://evil.test", "Host": "a.test", "upgrade": "websocket"},
    )
    refusal = await srv.check_websocket(head)
    assert refusal is not None and refusal.status == 403
    no_origin = await http_request(srv, "GET", Q)
    assert no_origin.status == 200


async def test_cors_list_and_wildcard(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    listed = await _server_with(nursery, cors_allowed_origins=["http://b.test"])
    ok = await http_request(listed, "GET", Q, headers={"Origin": "http://b.test"})
    assert ok.status == 200
    assert ("Access-Control-Allow-Credentials", "true") in ok.headers
    preflight = await http_request(
        listed,
        "OPTIONS",
        Q,
        headers={"Origin": "http://b.test", "Access-Control-Request-Headers": "x-token"},
    )
    assert preflight.status == 204
    assert ("Access-Control-Allow-Headers", "x-token") in preflight.headers
    anyone = await _server_with(nursery, cors_allowed_origins="*")
    star = await http_request(anyone, "GET", Q, headers={"Origin": "http://c.test"})
    assert star.status == 200
    assert ("Access-Control-Allow-Origin", "*") in star.headers
    assert not any(name == "Access-Control-Allow-Credentials" for name, _ in star.headers)


async def test_allow_request_hook_and_cookie(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def allow(head: Any) -> bool:
        return head.query.get("token") == "good"

    srv = await _server_with(nursery, allow_request=allow, cookie="io")
    refused = await http_request(srv, "GET", Q + "&token=bad")
    assert refused.status == 403 and json.loads(refused.body)["code"] == 4
    ok = await http_request(srv, "GET", Q + "&token=good")
    assert ok.status == 200
    sid = json.loads(ok.body[1:])["sid"]
    assert any(n == "Set-Cookie" and v.startswith(f"io={sid};") for n, v in ok.headers)
