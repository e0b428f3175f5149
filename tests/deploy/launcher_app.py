"""The app the launcher tests serve: ``python -m trio_sio serve tests.deploy.launcher_app:sio``.

Made with the in-memory adapter: the launcher's ``--redis`` gives it the cluster's. Events:

    whoami()        -> ack {"pid": <the worker's process id>, "transport": ..., "nodes": n}
    shout(payload)  -> the worker broadcasts news(payload, <pid>) to every socket of the
                       cluster; ack <pid>
"""

from __future__ import annotations

import os
from typing import Any

import trio_sio

sio = trio_sio.Server()


@sio.on("whoami")
async def whoami(socket: trio_sio.Socket) -> dict[str, Any]:
    return {"pid": os.getpid(), "transport": socket.transport, "nodes": await sio.server_count()}


@sio.on("shout")
async def shout(socket: trio_sio.Socket, payload: Any) -> int:
    await sio.emit("news", payload, os.getpid())
    return os.getpid()
