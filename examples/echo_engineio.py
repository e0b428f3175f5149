"""A bare Engine.IO echo server: every message comes straight back.

    python examples/echo_engineio.py [port]

Any Engine.IO v4 client can talk to it (path /engine.io/), for instance the official
`engine.io-client` or `trio_sio.engineio.client.open_engine_client`.
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


async def main(port: int) -> None:
    server = EngineServer(echo, cors_allowed_origins="*")
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve, server, "127.0.0.1", port)
        print(
            f"Engine.IO echo server on http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/engine.io/"
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    try:
        trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
    except* KeyboardInterrupt:
        pass  # Ctrl+C: stop quietly
