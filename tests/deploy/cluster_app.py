"""One node of the cluster the deploy tests put behind nginx: trio_sio with the Redis adapter.

    python tests/deploy/cluster_app.py --redis redis://127.0.0.1:6379 --name a [--port 0]

Prints ``listening on <port>`` once it serves; runs until killed. Events:

    whoami()        -> ack {"node": <name>, "transport": <the socket's transport>}
    shout(payload)  -> this node broadcasts news(payload, <name>) to every socket of the
                       cluster; ack <name>
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import trio

import trio_sio
from trio_sio.adapters.redis import create_adapter


def make_server(name: str, redis_url: str) -> trio_sio.Server:
    sio = trio_sio.Server(adapter=create_adapter(redis_url, requests_timeout=2.0))

    @sio.on("whoami")
    async def whoami(socket: trio_sio.Socket) -> dict[str, Any]:
        return {"node": name, "transport": socket.transport}

    @sio.on("shout")
    async def shout(socket: trio_sio.Socket, payload: Any) -> str:
        await sio.emit("news", payload, name)
        return name

    return sio


async def serve(name: str, redis_url: str, port: int) -> None:
    sio = make_server(name, redis_url)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sio.serve, "127.0.0.1", port)
        print(f"listening on {listeners[0].socket.getsockname()[1]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True, help="the cluster's Redis URL")
    parser.add_argument("--name", required=True, help="this node's name, in the acks")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    trio.run(serve, args.name, args.redis, args.port)


if __name__ == "__main__":
    main()
