"""Server for the public Socket.IO protocol test suite (port 3000, path /socket.io/).

Configured as the suite's Readme asks: ping interval 300 ms, ping timeout 200 ms,
max payload 1e6, connect timeout 1 s, CORS open to any origin; namespaces "/" and "/custom"
emit "auth" with the handshake's auth on connection; "/" echoes "message" as "message-back"
and acknowledges "message-with-ack" with its own arguments.

    python tests/conformance/sio_server.py [port]
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import trio

import trio_sio


def build() -> trio_sio.Server:
    sio = trio_sio.Server(
        ping_interval=0.3,
        ping_timeout=0.2,
        max_http_buffer_size=1_000_000,
        connect_timeout=1.0,
        cors_allowed_origins="*",
    )

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        await socket.emit("auth", socket.handshake.auth)

    @sio.on("message")
    async def message(socket: trio_sio.Socket, *args: Any) -> None:
        await socket.emit("message-back", *args)

    @sio.on("message-with-ack")
    async def message_with_ack(socket: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @sio.of("/custom").on("connection")
    async def custom(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        await socket.emit("auth", socket.handshake.auth)

    return sio


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(build().serve, "0.0.0.0", port)
        print(f"socket.io conformance server on port {port}", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
