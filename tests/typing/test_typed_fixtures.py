"""A test written as a strictly typed user writes one: the fixtures annotated with
:class:`trio_sio.testing.SioServe` and :class:`trio_sio.testing.SioClient`. pytest runs it;
``nox -s typecheck`` checks it with ``mypy --strict``, so that the exported types keep
matching the fixtures without ``Any`` in the user's code."""

from __future__ import annotations

import trio
import trio.testing

import trio_sio
from trio_sio.testing import MemoryNetwork, SioClient, SioServe


def make_app() -> trio_sio.Server:
    sio = trio_sio.Server()

    @sio.on("join")
    async def join(socket: trio_sio.Socket, room: str) -> None:
        socket.join(room)
        await socket.emit("joined", room)

    return sio


async def test_typed_fixtures_and_wait_for(
    sio_serve: SioServe, sio_client: SioClient, autojump_clock: trio.testing.MockClock
) -> None:
    network: MemoryNetwork = await sio_serve(make_app())
    client: trio_sio.Client = sio_client(network, reconnection=False)
    async with client:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.emit, "join", "lobby")
                joined: tuple[object, ...] = await client.wait_for("joined")
    assert joined == ("lobby",)
