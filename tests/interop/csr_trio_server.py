"""Our server with connection state recovery, driven by the recovery interop tests
(``test_recovery_interop.py``); ``csr_node_server.mjs`` is the same app on the JS server.

    python csr_trio_server.py <max disconnection duration, ms> <ping interval, ms>

Listens on 127.0.0.1 (path ``/socket.io/``) on a free port, with pingTimeout equal to the
ping interval. The first line on stdout is the port; then one JSON object per line:

    {"ev": "connection", "sid", "recovered", "rooms", "data"}   rooms: sorted, without its id
    {"ev": "disconnect", "sid", "reason"}
    {"ev": "done", "id"}                                        a command was carried out

A new socket joins the rooms of ``auth.rooms`` and keeps ``auth.name`` in its data. Commands
come on stdin, one JSON object per line; the server exits when stdin closes:

    {"id", "op": "emit", "to": [rooms], "event", "args"}   ``sio.to(*rooms).emit`` (all if [])
    {"id", "op": "volatile", "event", "args"}              ``sio.volatile.emit``
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import trio

import trio_sio
from trio_sio.adapters.recovery import ConnectionStateRecovery


def log(**entry: Any) -> None:
    sys.stdout.write(json.dumps(entry) + "\n")
    sys.stdout.flush()


def make_server(duration_ms: int, ping_ms: int) -> trio_sio.Server:
    sio = trio_sio.Server(
        ping_interval=ping_ms / 1000,
        ping_timeout=ping_ms / 1000,
        connection_state_recovery=ConnectionStateRecovery(
            max_disconnection_duration=duration_ms / 1000
        ),
    )

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        if not socket.recovered:
            socket.join(auth.get("rooms") or [])
            socket.data["name"] = auth.get("name")
        rooms = sorted(socket.rooms - {socket.id})
        log(
            ev="connection",
            sid=socket.id,
            recovered=socket.recovered,
            rooms=rooms,
            data=socket.data,
        )

    @sio.on("disconnect")
    def disconnected(socket: trio_sio.Socket, reason: str) -> None:
        log(ev="disconnect", sid=socket.id, reason=reason)

    return sio


async def run_commands(sio: trio_sio.Server) -> None:
    """Carry out the commands of stdin until it closes."""
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    pending = b""
    async with stream:
        while chunk := await stream.receive_some():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    command = json.loads(line)
                    if command["op"] == "emit":
                        await sio.to(*command["to"]).emit(command["event"], *command["args"])
                    else:
                        await sio.volatile.emit(command["event"], *command["args"])
                    log(ev="done", id=command["id"])


async def main(duration_ms: int, ping_ms: int) -> None:
    sio = make_server(duration_ms, ping_ms)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        sys.stdout.write(f"{listeners[0].socket.getsockname()[1]}\n")
        sys.stdout.flush()
        await run_commands(sio)
        sio.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    trio.run(main, int(sys.argv[1]), int(sys.argv[2]))
