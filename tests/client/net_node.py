"""One trio_sio server node for the client's real-network tests.

    python tests/client/net_node.py --name a --port 0

Prints ``listening on <port>`` once it serves; runs until killed (or its stdin closes).
``whoami()`` is acknowledged with ``{"node": <name>, "transport": <the socket's transport>}``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import trio

import trio_sio


async def serve(name: str, port: int) -> None:
    sio = trio_sio.Server(ping_interval=2, ping_timeout=5)

    @sio.on("whoami")
    async def whoami(socket: trio_sio.Socket) -> dict[str, Any]:
        return {"node": name, "transport": socket.transport}

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sio.serve, "127.0.0.1", port)
        print(f"listening on {listeners[0].socket.getsockname()[1]}", flush=True)
        # Exit when the test's end of stdin closes: never outlive the test run.
        stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
        while await stdin.receive_some():
            pass
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    trio.run(serve, args.name, args.port)


if __name__ == "__main__":
    main()
