"""Under Hypercorn, a client that stops reading is disconnected by the slow-consumer rule
(the handlers run), but its connection stays: Hypercorn shields its socket writes from
cancellation, so the write to that client (its task, its buffers, the TCP connection) lasts
until the kernel gives up. The documented workaround is a listening socket with
``TCP_USER_TIMEOUT``, which accepted connections inherit: the kernel then aborts a connection
whose data stays unacknowledged (a zero window included) that long, the write fails and
Hypercorn closes the connection. Real loopback TCP, real time, a few seconds.
"""

from __future__ import annotations

import socket as stdlib_socket
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from robustness_wire import GOOD_KEY, OP_TEXT, client_frame

import trio_sio
from trio_sio.protocol.errors import ConnectionClosed

pytestmark = pytest.mark.skipif(
    not hasattr(stdlib_socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux's"
)


def server_side_open(server_port: int, client_port: int) -> bool:
    """Whether the kernel still has the server's end of the connection (any state but
    closed), from /proc/net/tcp."""
    wanted = (f"{server_port:04X}", f"{client_port:04X}")
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
            if (local, remote) == wanted:
                return True
    return False


@pytest.mark.parametrize("user_timeout", [True, False])
async def test_tcp_user_timeout_cuts_a_stalled_client_under_hypercorn(
    nursery: trio.Nursery, user_timeout: bool
) -> None:
    """The session ends as a slow consumer either way; the connection itself (Hypercorn's
    task, its buffers, the kernel's) goes only with TCP_USER_TIMEOUT."""
    events: list[tuple[str, Any]] = []
    sio = trio_sio.Server(max_buffer_bytes=100_000, slow_consumer_grace=0.5)
    stop = trio.Event()

    @sio.on("connection")
    async def flood(socket: trio_sio.Socket, auth: Any) -> None:
        events.append(("connection", socket.id))
        nursery.start_soon(push, socket)

    async def push(socket: trio_sio.Socket) -> None:
        chunk = "x" * 50_000
        try:
            while socket.connected and not stop.is_set():
                await socket.emit("data", chunk)
        except ConnectionClosed:
            events.append(("emit refused", trio.current_time()))

    sio.on("disconnect", lambda socket, reason: events.append(("disconnect", reason)))
    listener = stdlib_socket.socket()
    if user_timeout:
        listener.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_USER_TIMEOUT, 1000)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{listener.fileno()}"]
    config.graceful_timeout = 1.0
    await nursery.start(serve, trio_sio.ASGIApp(sio), config)
    listener.detach()  # Hypercorn's socket owns the descriptor now

    client = stdlib_socket.socket()
    client.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 4096)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(client))
    await stream.socket.connect(("127.0.0.1", port))
    await stream.send_all(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: " + GOOD_KEY.encode() + b"\r\n\r\n"
    )
    head = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(1)
    assert b" 101 " in head
    await stream.send_all(client_frame(OP_TEXT, b"40"))  # then never read again
    started = trio.current_time()
    client_port = client.getsockname()[1]
    try:
        with trio.fail_after(10):
            while not any(name == "disconnect" for name, _ in events):
                await trio.sleep(0.05)
        assert ("disconnect", "slow consumer") in events
        with trio.move_on_after(5):
            while server_side_open(port, client_port):
                await trio.sleep(0.1)
        assert server_side_open(port, client_port) is not user_timeout
    finally:
        stop.set()
        await stream.aclose()
    if user_timeout:  # the timeout plus the time to fill the buffers, not the heartbeat
        assert trio.current_time() - started < 8
