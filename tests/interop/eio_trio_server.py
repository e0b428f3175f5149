"""Echo server on trio_sio's ``EngineServer``, for the interop tests with other clients.

    python eio_trio_server.py [ping_interval s] [ping_timeout s]

Listens on 127.0.0.1, path ``/engine.io/``, on a free port. The first line on stdout is
the port; then one line per session event:

    open <sid> <transport>
    closed <sid> <reason>

The server shuts down when its stdin closes, so it never outlives the test run.

Every message (text or binary) is sent back, except these text commands:
    "close-me"   the server closes this session (``socket.close()``).
    "transport"  answered with "transport:<name>" (the server's view).
    "burst:<n>"  answered with n messages "burst <i>", queued at once (one polling payload).
"""

from __future__ import annotations

import logging
import os
import sys

import trio

from trio_sio.engineio import EngineServer, EngineSocket
from trio_sio.frontends.standalone import serve


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def echo(socket: EngineSocket) -> None:
    emit(f"open {socket.sid} {socket.transport.value}")
    try:
        async for message in socket:
            if message == "close-me":
                socket.close()
            elif message == "transport":
                await socket.send(f"transport:{socket.transport.value}")
            elif isinstance(message, str) and message.startswith("burst:"):
                for i in range(int(message.removeprefix("burst:"))):
                    socket.send_nowait(f"burst {i}")
            else:
                await socket.send(message)
    finally:
        # The reason is set before the handler is cancelled; without one the handler
        # simply ran out of messages and the session is about to close as forced close.
        reason = socket.close_reason.value if socket.close_reason else "forced close"
        emit(f"closed {socket.sid} {reason}")


async def wait_stdin_closed() -> None:
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stream:
        while await stream.receive_some():
            pass


async def main(ping_interval: float, ping_timeout: float) -> None:
    server = EngineServer(echo, ping_interval=ping_interval, ping_timeout=ping_timeout)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve, server, "127.0.0.1", 0)
        emit(str(listeners[0].socket.getsockname()[1]))
        await wait_stdin_closed()
        server.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args = [float(a) for a in sys.argv[1:3]]
    trio.run(main, *args, *(25.0, 20.0)[len(args) :])
