"""Engine.IO v3 clients: socket.io-client 2.x (``eio3_node_client.mjs``) against a trio_sio
server with ``allow_eio3=True``, over polling, WebSocket and the upgrade, on a real socket."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_sio
from trio_sio.protocol.engineio import Packet, PacketType, decode_payload_v3, encode_payload_v3

HERE = Path(__file__).resolve().parent


def make_app() -> trio_sio.Server:
    # A short ping interval: the heartbeat scenario lasts several intervals.
    sio = trio_sio.Server(allow_eio3=True, ping_interval=0.3, ping_timeout=2)

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: Any) -> None:
        await socket.emit("hello", socket.handshake.query.get("user"))

    sio.on("transport", lambda socket: socket.transport)

    @sio.on("echo")
    async def echo(socket: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        await socket.emit("echoed", *args)
        return args

    @sio.on("reverse")
    async def reverse(socket: trio_sio.Socket, data: bytes, label: str) -> Any:
        await socket.emit("bytes-back", {"data": data[::-1], "label": label}, b"\x00")
        return [data[::-1], label]

    @sio.on("ask")
    async def ask(socket: trio_sio.Socket, x: int) -> Any:
        return await socket.emit_with_ack("question", x, timeout=3)

    @sio.on("join")
    def join(socket: trio_sio.Socket, room: str) -> list[str]:
        socket.join(room)
        return sorted(socket.rooms - {socket.id})

    @sio.on("to-room")
    async def to_room(socket: trio_sio.Socket, room: str, text: str) -> None:
        await socket.to(room).emit("room-news", text)

    @sio.on("drop")
    def drop(socket: trio_sio.Socket) -> None:
        socket._engine.close()  # the connection is lost, as far as the client can tell

    chat = sio.of("/chat")

    @chat.use
    def check(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        token = auth.get("token")
        if token is None:
            raise trio_sio.ConnectionRefused("no token")
        if token != "secret":
            raise trio_sio.ConnectionRefused("not authorized", {"code": 403})

    chat.on("whoami", lambda socket: {"nsp": socket.namespace.name, "auth": socket.handshake.auth})
    return sio


@pytest.mark.parametrize(
    "transports",
    [["polling"], ["websocket"], ["polling", "websocket"]],
    ids=["polling", "websocket", "upgrade"],
)
async def test_socket_io_client_v2(
    node_sio_client_v2: str, transports: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    sio = make_app()
    with caplog.at_level(logging.INFO, "trio_sio"), trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            done = await trio.run_process(
                [
                    node_sio_client_v2,
                    "eio3_node_client.mjs",
                    f"http://127.0.0.1:{port}",
                    json.dumps(transports),
                ],
                cwd=HERE,
                capture_stdout=True,
                check=False,
            )
            nursery.cancel_scope.cancel()
    output = json.loads(done.stdout.decode().strip().splitlines()[-1])
    results = output["results"]
    failed = {name: r["error"] for name, r in results.items() if not r["ok"]}
    assert not failed and done.returncode == 0, output
    expected_transport = "websocket" if "websocket" in transports else "polling"
    assert results["connect"]["greeting"] == "alice"
    check = results["upgrade" if len(transports) > 1 else "transport"]
    assert check["client"] == check["server"] == expected_transport
    assert results["event_and_ack"]["reply"] == [1, "two", {"three": [3]}]
    assert results["event_and_ack"]["echoed"] == [1, "two", {"three": [3]}]
    assert results["unicode"]["same"] is True
    assert results["binary"]["reply"] == [[{"$bytes": "fffefd020100"}, "label"]]
    assert results["binary"]["event"] == [
        {"data": {"$bytes": "fffefd020100"}, "label": "label"},
        {"$bytes": "00"},
    ]
    assert results["server_asks"]["reply"] == {"answer": 42}
    assert results["rooms"]["news"] == ["hi blue"]
    assert results["rooms"]["mainGot"] is False
    assert results["namespace"]["reply"] == {"nsp": "/chat", "auth": {"token": "secret"}}
    refused = results["namespace_refused"]
    assert refused["withData"] == {"code": 403}
    assert refused["message"] == "no token"
    assert refused["invalid"] == {"message": "Invalid namespace"}
    assert results["heartbeat"] == {"ok": True, "pongs": True, "lost": None}
    assert results["reconnection"]["reason"] == "transport close"
    assert results["reconnection"]["reply"] == "again"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_eio3_is_refused_unless_allowed(nursery: trio.Nursery) -> None:
    from trio_sio.engineio.config import RequestHead

    for allowed, status in ((False, 400), (True, 200)):
        sio = trio_sio.Server(allow_eio3=allowed)
        await nursery.start(sio.run)
        head = RequestHead(
            "GET", "/socket.io/", {"EIO": "3", "transport": "polling", "b64": "1"}, {}
        )

        async def no_body() -> Any:
            return
            yield

        response = await sio.engine.handle_http(head, no_body())
        assert response.status == status, response
        if allowed:
            # v3 OPEN packet in a length-prefixed payload, then the implicit "/" CONNECT.
            body = response.body.decode()
            length, _, rest = body.partition(":")
            assert rest[: int(length)].startswith('0{"sid":')
        else:
            assert json.loads(response.body) == {
                "code": 5,
                "message": "Unsupported protocol version",
            }
        sio.shutdown()


# The payload codec against engine.io-parser 2.x, the one socket.io-client 2.x ships (its
# binary body form is what browsers send and take; the Node client uses base64 text).
PEER_PACKETS = [
    Packet(PacketType.MESSAGE, "hello"),
    Packet(PacketType.MESSAGE, "héllo wörld 😀"),
    Packet(PacketType.MESSAGE, b"\x00\x01\x02\xff"),
    Packet(PacketType.PING),
    Packet(PacketType.MESSAGE, "x" * 300),
]


def _described(packets: list[Packet]) -> list[dict[str, Any]]:
    return [
        {
            "type": p.type.name.lower(),
            "data": {"hex": p.data.hex()} if isinstance(p.data, bytes) else p.data,
        }
        for p in packets
    ]


def test_payloads_match_the_js_v3_parser(node_sio_client_v2: str) -> None:
    encoded = subprocess.run(
        [node_sio_client_v2, "eio3_parser_peer.mjs", "encode"],
        cwd=HERE,
        capture_output=True,
        check=True,
        timeout=30,
    )
    theirs = json.loads(encoded.stdout)
    binary = base64.b64decode(theirs["binary"])
    # Byte for byte the same encoding, and each side decodes the other's.
    assert encode_payload_v3(PEER_PACKETS) == theirs["text"]
    assert encode_payload_v3(PEER_PACKETS, binary=True) == binary
    assert decode_payload_v3(theirs["text"]) == PEER_PACKETS
    assert decode_payload_v3(binary) == PEER_PACKETS
    ours = encode_payload_v3(PEER_PACKETS, binary=True)
    assert isinstance(ours, bytes)
    request = {
        "text": encode_payload_v3(PEER_PACKETS),
        "binary": base64.b64encode(ours).decode(),
    }
    decoded = subprocess.run(
        [node_sio_client_v2, "eio3_parser_peer.mjs", "decode"],
        cwd=HERE,
        input=json.dumps(request).encode(),
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert json.loads(decoded.stdout) == {
        "text": _described(PEER_PACKETS),
        "binary": _described(PEER_PACKETS),
    }
