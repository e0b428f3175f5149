"""Echo server for the public Engine.IO protocol test suite (port 3000, path /engine.io/).

Configured as the suite's README asks: ping interval 300 ms, ping timeout 200 ms,
max payload 1e6, CORS open to any origin; every message is sent back.

    python tests/conformance/eio_server.py [port]           # the standalone server
    python tests/conformance/eio_server.py --asgi [port]    # through Hypercorn's trio worker
"""

from __future__ import annotations

import logging
import sys

import trio

from trio_sio.engineio import EngineServer, EngineSocket
from trio_sio.frontends.standalone import serve


async def echo(socket: EngineSocket) -> None:
    async for message in socket:
        await socket.send(message)


def build() -> EngineServer:
    return EngineServer(
        echo,
        ping_interval=0.3,
        ping_timeout=0.2,
        max_http_buffer_size=1_000_000,
        cors_allowed_origins="*",
    )


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(serve, build(), "0.0.0.0", port)
        print(f"engine.io conformance server on port {port}", flush=True)


async def main_asgi(port: int) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve

    from trio_sio import ASGIApp

    config = Config()
    config.bind = [f"0.0.0.0:{port}"]
    print(f"engine.io conformance server (ASGI, Hypercorn) on port {port}", flush=True)
    await hypercorn_serve(ASGIApp(build()), config)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    args = sys.argv[1:]
    asgi = "--asgi" in args
    args = [arg for arg in args if arg != "--asgi"]
    trio.run(main_asgi if asgi else main, int(args[0]) if args else 3000)
