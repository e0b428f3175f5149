"""Helpers shared by the client tests: a small server app on an in-memory network."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

import trio_sio
from trio_sio.testing import MemoryNetwork


def make_server(**options: Any) -> trio_sio.Server:
    """A server whose namespaces answer ``echo`` (the ack is the arguments)."""
    options.setdefault("ping_interval", 25)
    options.setdefault("ping_timeout", 20)
    sio = trio_sio.Server(**options)

    @sio.on("echo")
    async def echo(socket: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    return sio


async def serving(nursery: trio.Nursery, sio: trio_sio.Server) -> MemoryNetwork:
    """Run ``sio`` in ``nursery``; the network that reaches it."""
    await nursery.start(sio.run)
    return MemoryNetwork(nursery, sio)


async def until(condition: Callable[[], object], timeout: float = 30) -> None:
    """Wait (in virtual time) until ``condition()`` is true."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)
