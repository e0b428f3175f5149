"""Engine.IO v3 / Socket.IO v2 clients (``allow_eio3=True``) on the wire, driven in memory
through the real request handlers, in virtual time: the heartbeat's direction and timing,
payload forms, and the Socket.IO v2 connect rules. (The official client 2.x is run against
the server in tests/interop/test_eio3_interop.py.)"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import trio
import trio.testing

import trio_sio
from trio_sio.engineio.memory import http_request, memory_websocket_pair, request_head
from trio_sio.protocol.engineio import CloseReason

V3 = "/socket.io/?EIO=3&transport=polling"


def make_server(**options: Any) -> trio_sio.Server:
    options.setdefault("ping_interval", 25)
    options.setdefault("ping_timeout", 20)
    return trio_sio.Server(allow_eio3=True, **options)


def records(body: str) -> list[str]:
    """The packets of a v3 text payload (``<length>:<packet>``...)."""
    out = []
    while body:
        length, _, rest = body.partition(":")
        out.append(rest[: int(length)])
        body = rest[int(length) :]
    return out


class V3Polling:
    """A hand-driven Engine.IO v3 polling client."""

    def __init__(self, sio: trio_sio.Server, b64: bool = True) -> None:
        self.sio = sio
        self.b64 = b64
        self.sid = ""
        self.early: list[str] = []  # packets that came with the OPEN packet

    async def handshake(self) -> dict[str, Any]:
        query = V3 + ("&b64=1" if self.b64 else "")
        response = await http_request(self.sio.engine, "GET", query)
        assert response.status == 200, response.body
        open_packet, *self.early = records(response.body.decode())
        assert open_packet[0] == "0"
        info: dict[str, Any] = json.loads(open_packet[1:])
        self.sid = info["sid"]
        return info

    async def get(self) -> tuple[int, str | bytes, str]:
        response = await http_request(self.sio.engine, "GET", f"{V3}&sid={self.sid}")
        ctype = dict(response.headers).get("Content-Type", "")
        body: str | bytes = response.body
        if not ctype.startswith("application/octet-stream"):
            body = response.body.decode()
        return response.status, body, ctype

    async def get_packets(self) -> list[str]:
        if self.early:
            early, self.early = self.early, []
            return early
        status, body, _ = await self.get()
        assert status == 200 and isinstance(body, str), body
        return records(body)

    async def post(self, *packets: str) -> int:
        body = "".join(f"{len(p)}:{p}" for p in packets).encode()
        response = await http_request(self.sio.engine, "POST", f"{V3}&sid={self.sid}", body)
        return response.status


async def test_the_v3_handshake_and_the_implicit_main_namespace(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    connected: list[Any] = []
    sio.on("connection", lambda socket, auth: connected.append((socket.namespace.name, auth)))
    await nursery.start(sio.run)
    client = V3Polling(sio)
    info = await client.handshake()
    assert info["pingInterval"] == 25000 and info["pingTimeout"] == 20000
    assert info["upgrades"] == ["websocket"]
    # Socket.IO v2: the server puts the client in "/" at once, with a bare CONNECT.
    assert await client.get_packets() == ["40"]
    await trio.testing.wait_all_tasks_blocked()  # the connection handlers run after
    assert connected == [("/", {})]


async def test_the_server_does_not_ping_and_answers_the_clients_pings(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server(ping_interval=10, ping_timeout=5)
    await nursery.start(sio.run)
    client = V3Polling(sio)
    await client.handshake()
    assert await client.get_packets() == ["40"]
    for _ in range(5):
        await trio.sleep(10)  # the client pings every ping_interval
        assert await client.post("2") == 200
        assert await client.get_packets() == ["3"]  # only the pong: never a server ping
    assert len(sio.engine.sessions) == 1
    # A stray pong (v3 clients send none) is ignored.
    assert await client.post("3") == 200
    await trio.sleep(14)
    assert len(sio.engine.sessions) == 1


async def test_a_v3_client_that_stops_pinging_times_out(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server(ping_interval=10, ping_timeout=5)
    reasons: list[str] = []
    sio.on("disconnect", lambda socket, reason: reasons.append(reason))
    await nursery.start(sio.run)
    client = V3Polling(sio)
    await client.handshake()
    assert await client.get_packets() == ["40"]
    (session,) = sio.engine.sessions.values()
    start = trio.current_time()
    await session.wait_closed()
    assert trio.current_time() - start == pytest.approx(15)  # interval + timeout
    assert session.close_reason is CloseReason.PING_TIMEOUT
    assert reasons == ["ping timeout"]


async def test_binary_over_v3_polling_base64_and_binary_bodies(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    got: list[Any] = []

    @sio.on("file")
    async def file(socket: trio_sio.Socket, data: bytes) -> bytes:
        got.append(data)
        return data[::-1]

    await nursery.start(sio.run)
    # A client that asked for base64 (b64=1): text bodies, "b4" records.
    client = V3Polling(sio)
    await client.handshake()
    assert await client.get_packets() == ["40"]
    await client.post('451-1["file",{"_placeholder":true,"num":0}]', "b4AQID")
    assert got == [b"\x01\x02\x03"]
    assert await client.get_packets() == ['461-1[{"_placeholder":true,"num":0}]', "b4AwIB"]
    # A client that takes binary: the binary body form, for requests and responses.
    raw = V3Polling(sio, b64=False)
    await raw.handshake()
    assert await raw.get_packets() == ["40"]
    text = b'451-2["file",{"_placeholder":true,"num":0}]'
    digits = bytes(int(d) for d in str(len(text)))
    body = b"\x00" + digits + b"\xff" + text + b"\x01\x04\xff\x04\x07\x08\x09"
    response = await http_request(
        sio.engine,
        "POST",
        f"{V3}&sid={raw.sid}",
        body,
        {"content-type": "application/octet-stream"},
    )
    assert response.status == 200
    assert got[-1] == b"\x07\x08\x09"
    status, reply, ctype = await raw.get()
    assert status == 200 and ctype == "application/octet-stream"
    ack = b'461-2[{"_placeholder":true,"num":0}]'
    digits = bytes(int(d) for d in str(len(ack)))
    assert reply == b"\x00" + digits + b"\xff" + ack + b"\x01\x04\xff\x04\x09\x08\x07"


async def test_v2_namespaces_take_their_auth_from_the_query_and_refuse_in_v2_shape(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    auths: list[Any] = []
    admin = sio.of("/admin")

    @admin.use
    def check(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        auths.append(auth)
        if auth.get("token") == "data":
            raise trio_sio.ConnectionRefused("refused", {"code": 1})
        if auth.get("token") != "ok":
            raise trio_sio.ConnectionRefused("not authorized")

    await nursery.start(sio.run)
    client = V3Polling(sio)
    await client.handshake()
    assert await client.get_packets() == ["40"]
    await client.post("40/admin?token=ok&x=1,")
    assert await client.get_packets() == ["40/admin,"]
    await client.post("41/admin,", "40/admin?token=bad,")
    assert await client.get_packets() == ['44/admin,"not authorized"']
    await client.post("40/admin?token=data,")
    assert await client.get_packets() == ['44/admin,{"code":1}']
    await client.post("40/nowhere,")
    assert await client.get_packets() == ['44/nowhere,{"message":"Invalid namespace"}']
    assert auths == [{"token": "ok", "x": "1"}, {"token": "bad"}, {"token": "data"}]


async def test_v3_websocket_frames_and_the_upgrade(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sio = make_server(ping_interval=10, ping_timeout=5)
    sio.on("file", lambda socket, data: data[::-1])
    await nursery.start(sio.run)
    client = V3Polling(sio)
    await client.handshake()
    assert await client.get_packets() == ["40"]
    head = request_head(
        "GET",
        f"/socket.io/?EIO=3&transport=websocket&sid={client.sid}",
        {"upgrade": "websocket", "connection": "Upgrade"},
    )
    assert await sio.engine.check_websocket(head) is None
    ours, theirs = memory_websocket_pair()
    nursery.start_soon(sio.engine.serve_websocket, head, theirs)
    await ours.send_message("2probe")
    assert await ours.get_message() == "3probe"
    await ours.send_message("5")
    await ours.send_message('451-1["file",{"_placeholder":true,"num":0}]')
    await ours.send_message(b"\x04\x01\x02")  # v3: the type byte first
    assert await ours.get_message() == '461-1[{"_placeholder":true,"num":0}]'
    assert await ours.get_message() == b"\x04\x02\x01"
    await ours.send_message('451-2["file",{"_placeholder":true,"num":0}]')
    await ours.send_message("b4AwQ=")  # base64 in a text frame is taken too
    assert await ours.get_message() == '461-2[{"_placeholder":true,"num":0}]'
    assert await ours.get_message() == b"\x04\x04\x03"
    for _ in range(3):
        await trio.sleep(10)
        await ours.send_message("2")
        assert await ours.get_message() == "3"
    (session,) = sio.engine.sessions.values()
    assert str(session.transport) == "websocket"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_eio3_stays_off_by_default(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = trio_sio.Server()
    await nursery.start(sio.run)
    response = await http_request(sio.engine, "GET", V3)
    assert response.status == 400
    assert json.loads(response.body) == {"code": 5, "message": "Unsupported protocol version"}
