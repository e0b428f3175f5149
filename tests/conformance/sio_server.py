"""Server for the public Socket.IO protocol test suite (port 3000, path /socket.io/).

Configured as the suite's Readme asks: ping interval 300 ms, ping timeout 200 ms,
max payload 1e6, connect timeout 1 s, CORS open to any origin; namespaces "/" and "/custom"
emit "auth" with the handshake's auth on connection; "/" echoes "message" as "message-back"
and acknowledges "message-with-ack" with its own arguments.

    python tests/conformance/sio_server.py [port]           # the standalone server
    python tests/conformance/sio_server.py --asgi [port]    # through Hypercorn's trio worker

Hypercorn can also load it: ``hypercorn --worker-class trio "sio_server:asgi_app()"``.
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


def asgi_app() -> trio_sio.ASGIApp:
    """The conformance server as an ASGI application."""
    return trio_sio.ASGIApp(build())


async def main_asgi(port: int) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = [f"0.0.0.0:{port}"]
    print(f"socket.io conformance server (ASGI, Hypercorn) on port {port}", flush=True)
    await serve(asgi_app(), config)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    args = sys.argv[1:]
    asgi = "--asgi" in args
    args = [arg for arg in args if arg != "--asgi"]
    trio.run(main_asgi if asgi else main, int(args[0]) if args else 3000)
