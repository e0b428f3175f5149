"""The pytest plugin, used the way an application's tests would use it."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

import trio_sio
from trio_sio.testing import SioClient, SioServe


def make_app() -> trio_sio.Server:
    sio = trio_sio.Server()  # default 25 s / 20 s heartbeat

    @sio.on("hello")
    def hello(socket: trio_sio.Socket) -> str:
        return "world"

    return sio


async def test_hello_and_a_long_idle_period(
    sio_serve: SioServe,
    sio_client: SioClient,
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = await sio_serve(make_app())
    disconnects: list[Any] = []
    client = sio_client(network)
    client.on("disconnect", disconnects.append)
    async with client:
        assert await client.emit_with_ack("hello", timeout=5) == "world"
        t0 = trio.current_time()
        await trio.sleep(3600)  # an hour of heartbeats, in no real time
        assert trio.current_time() - t0 == 3600
        assert await client.emit_with_ack("hello", timeout=5) == "world"
    assert disconnects == ["io client disconnect"]
