"""Echo server for the public Engine.IO protocol test suite (port 3000, path /engine.io/).

Configured as the suite's README asks: ping interval 300 ms, ping timeout 200 ms,
max payload 1e6, CORS open to any origin; every message is sent back.

    python tests/conformance/eio_server.py [port]
"""

from __future__ import annotations

import logging
import sys

import trio

from trio_sio.engineio import EngineServer, EngineSocket


async def echo(socket: EngineSocket) -> None:
    async for message in socket:
        await socket.send(message)


async def main(port: int) -> None:
    server = EngineServer(
        echo,
        ping_interval=0.3,
        ping_timeout=0.2,
        max_http_buffer_size=1_000_000,
        cors_allowed_origins="*",
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, "0.0.0.0", port)
        print(f"engine.io conformance server on port {port}", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
