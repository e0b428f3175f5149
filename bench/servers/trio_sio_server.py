"""The benchmark app on trio_sio's standalone server (h11 + trio-websocket front end).

    python bench/servers/trio_sio_server.py [--port 0] [--redis URL]

Prints the listening port on the first line of stdout, then serves until stdin closes or the
process is terminated. Events (the same on every benchmark server):

    echo(data)   -> acks ``data``
    bin(data)    -> acks ``data`` (a binary attachment comes back as one)
    bcast(i)     -> ``await sio.emit("tick", i, "hello")`` to every socket of "/"
    burst(n)     -> the same for i = 0 .. n - 1, in a loop in that one handler

With ``--redis URL`` it is one node of a cluster (the Redis adapter): ``bcast`` reaches the
sockets of every node.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import trio

import trio_sio


def make_server(redis: str | None = None) -> trio_sio.Server:
    if redis is None:
        sio = trio_sio.Server()
    else:
        # only here: the Redis adapter needs the `redis` extra (coredis, msgpack)
        from trio_sio.adapters.redis import create_adapter  # noqa: PLC0415

        sio = trio_sio.Server(adapter=create_adapter(redis))

    @sio.on("echo")
    async def echo(socket: trio_sio.Socket, data: Any) -> Any:
        return data

    @sio.on("bin")
    async def binary(socket: trio_sio.Socket, data: Any) -> Any:
        return data

    @sio.on("bcast")
    async def bcast(socket: trio_sio.Socket, i: Any) -> None:
        await sio.emit("tick", i, "hello")

    @sio.on("burst")
    async def burst(socket: trio_sio.Socket, n: int) -> None:
        for i in range(n):
            await sio.emit("tick", i, "hello")

    return sio


async def wait_stdin_closed() -> None:
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stream:
        while await stream.receive_some():
            pass


async def main(port: int, redis: str | None) -> None:
    sio = make_server(redis)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sio.serve, "127.0.0.1", port)
        sys.stdout.write(f"{listeners[0].socket.getsockname()[1]}\n")
        sys.stdout.flush()
        await wait_stdin_closed()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--redis", metavar="URL", help="a cluster node, with the Redis adapter")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args = parser.parse_args()
    trio.run(main, args.port, args.redis)
