"""The application the robustness tests serve, and the checks they share."""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import trio

import trio_sio
from trio_sio.protocol.errors import AckTimeoutError, ConnectionClosed
from trio_sio.testing import MemoryNetwork

PATH = "/socket.io/"


def make_server(**options: Any) -> trio_sio.Server:
    """A server with a few namespaces and handlers that do a bit of everything.

    ``/`` and ``/custom`` have the same events: ``echo`` (acks its argument), ``join``,
    ``broadcast`` (to every socket of the namespace), ``binary`` (replies with attachments),
    ``ask`` (an emit with ack to the client), ``kick`` and ``close-me`` (server-side
    disconnects). ``/admin`` refuses everyone in its middleware.
    """
    sio = trio_sio.Server(**options)
    admin = sio.of("/admin")

    @admin.use
    async def refuse(socket: trio_sio.Socket, auth: Any) -> None:
        raise trio_sio.ConnectionRefused("go away", {"retry": False})

    for namespace in (sio.main, sio.of("/custom")):
        _add_handlers(namespace)
    return sio


def _add_handlers(namespace: trio_sio.Namespace) -> None:
    @namespace.on("echo")
    async def echo(socket: trio_sio.Socket, data: Any = None) -> Any:
        return data

    @namespace.on("join")
    def join(socket: trio_sio.Socket, room: Any = None) -> None:
        socket.join(str(room))

    @namespace.on("broadcast")
    async def broadcast(socket: trio_sio.Socket, data: Any = None) -> None:
        await namespace.emit("news", data)

    @namespace.on("binary")
    async def binary(socket: trio_sio.Socket) -> None:
        await socket.emit("bin", b"\x00\xff", {"nested": [b"", b"x" * 300]})

    @namespace.on("ask")
    async def ask(socket: trio_sio.Socket) -> Any:
        try:
            return await socket.timeout(2).emit_with_ack("question", 1)
        except (AckTimeoutError, ConnectionClosed):
            return "no answer"

    @namespace.on("kick")
    async def kick(socket: trio_sio.Socket) -> None:
        await socket.disconnect()

    @namespace.on("close-me")
    async def close_me(socket: trio_sio.Socket) -> None:
        await socket.disconnect(close=True)


def if_supported(**options: Any) -> dict[str, Any]:
    """The Engine.IO settings among ``options`` that this version of the server has (for
    the newer ones: compression, the standalone server's HTTP timeouts)."""
    from trio_sio.engineio.config import EngineConfig

    fields = getattr(EngineConfig, "__dataclass_fields__", {})
    return {name: value for name, value in options.items() if name in fields}


def compression_options() -> dict[str, Any]:
    """Compression switched on at low thresholds (WebSocket permessage-deflate, gzip/deflate
    of polling responses), where the server has it."""
    return if_supported(per_message_deflate={"threshold": 8}, http_compression={"threshold": 16})


class ErrorRecords(logging.Handler):
    """Collects the records at ERROR or above."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def describe(self) -> str:
        return "\n".join(self.format(record) for record in self.records)


@contextmanager
def capture_errors() -> Iterator[ErrorRecords]:
    """Collect every ERROR (or worse) record of a ``trio_sio`` logger while the block runs."""
    logger = logging.getLogger("trio_sio")
    handler = ErrorRecords()
    level = logger.level
    if logger.getEffectiveLevel() > logging.ERROR:
        logger.setLevel(logging.ERROR)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def count_tasks() -> int:
    """Every task of this Trio run, found from the root task through child nurseries."""
    count = 0
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:
            continue
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def rss_bytes() -> int:
    """The resident set size now (Linux), or the peak so far elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak * 1024 if os.uname().sysname != "Darwin" else peak


@dataclass
class Served:
    """A running server reached over memory; ``crashes`` holds what escaped its nursery."""

    sio: trio_sio.Server
    network: MemoryNetwork
    crashes: list[BaseException]

    async def connect(self) -> trio.abc.Stream:
        """A new connection to the server's HTTP front end."""
        return await self.network.connect("testserver", 80, None)

    def client(self, **options: Any) -> trio_sio.Client:
        """A well-behaved client (no reconnection: a lost connection shows)."""
        options.setdefault("reconnection", False)
        return trio_sio.Client("http://testserver", connector=self.network.connect, **options)


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[Served]:
    """Run :func:`make_server` for the block; a crash of the server is recorded, not raised,
    so that the test can say what happened."""
    sio = make_server(**options)
    crashes: list[BaseException] = []
    async with trio.open_nursery() as nursery:

        async def run(*, task_status: trio.TaskStatus[None]) -> None:
            try:
                await sio.run(task_status=task_status)
            except Exception as exc:
                crashes.append(exc)

        await nursery.start(run)
        yield Served(sio, MemoryNetwork(nursery, sio), crashes)
        sio.shutdown()
        nursery.cancel_scope.cancel()
