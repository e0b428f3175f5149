"""The benchmark app on python-socketio: ``AsyncServer`` + ``ASGIApp`` under uvicorn.

    python bench/servers/pysio_server.py [--port 0] [--loop auto|asyncio|uvloop]

Prints the listening port on the first line of stdout, then a JSON line describing the stack
(versions, event loop, uvicorn's HTTP and WebSocket implementations), then serves until stdin
closes or the process is terminated. Same events as ``trio_sio_server.py``:

    echo(data)   -> acks ``data``
    bin(data)    -> acks ``data``
    bcast(i)     -> ``await sio.emit("tick", i, "hello")`` to every socket of "/"
    burst(n)     -> the same for i = 0 .. n - 1, in a loop in that one handler
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import json
import os
import socket
import sys
from typing import Any

import socketio
import uvicorn


def make_app() -> Any:
    sio = socketio.AsyncServer(async_mode="asgi", logger=False, engineio_logger=False)

    @sio.on("echo")
    async def echo(sid: str, data: Any) -> Any:
        return data

    @sio.on("bin")
    async def binary(sid: str, data: Any) -> Any:
        return data

    @sio.on("bcast")
    async def bcast(sid: str, i: Any) -> None:
        await sio.emit("tick", (i, "hello"))

    @sio.on("burst")
    async def burst(sid: str, n: int) -> None:
        for i in range(n):
            await sio.emit("tick", (i, "hello"))

    return socketio.ASGIApp(sio)


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    parser.add_argument("--http", choices=["auto", "h11", "httptools"], default="auto")
    args = parser.parse_args()
    loop = args.loop
    if loop == "auto":
        loop = "uvloop" if _have("uvloop") else "asyncio"
    ws = "websockets-sansio" if _have("websockets") else "wsproto"
    http = args.http
    if http == "auto":
        http = "httptools" if _have("httptools") else "h11"

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(4096)
    port = sock.getsockname()[1]
    info = {
        "loop": loop,
        "http": http,
        "ws": ws,
        **{
            name: importlib.metadata.version(name)
            for name in ("python-socketio", "python-engineio", "uvicorn")
        },
    }
    if ws.startswith("websockets"):
        info["websockets"] = importlib.metadata.version("websockets")

    config = uvicorn.Config(
        make_app(),
        loop=loop,
        http=http,
        ws=ws,
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=4096,
    )

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            sys.stdout.write(f"{port}\n{json.dumps(info)}\n")
            sys.stdout.flush()
            asyncio.get_running_loop().add_reader(sys.stdin.fileno(), self._stdin_readable)

        def _stdin_readable(self) -> None:
            if not os.read(sys.stdin.fileno(), 4096):
                asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
                self.should_exit = True

    Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
