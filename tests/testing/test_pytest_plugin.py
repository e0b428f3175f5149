"""The pytest plugin, used the way an application's tests would use it."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
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


TYPED_TEST = """
import trio
import trio.testing

import trio_sio
from trio_sio.testing import MemoryNetwork, SioClient, SioServe


async def test_hello(
    sio_serve: SioServe, sio_client: SioClient, autojump_clock: trio.testing.MockClock
) -> None:
    sio = trio_sio.Server()
    network: MemoryNetwork = await sio_serve(sio)
    client: trio_sio.Client = sio_client(network, reconnection=False)
    async with client:
        args: tuple[object, ...] = await client.wait_for("hello")
        assert args == ()
"""


def test_the_fixture_types_let_a_typed_test_pass_mypy_strict(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    test = tmp_path / "test_typed.py"
    test.write_text(textwrap.dedent(TYPED_TEST))
    command = ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache")]
    stdout, stderr, status = api.run([*command, "--config-file", "", str(test)])
    assert status == 0, stdout + stderr
    # and a call the fixture does not accept is caught
    test.write_text(textwrap.dedent(TYPED_TEST).replace("sio_serve(sio)", "sio_serve(1)"))
    stdout, _, status = api.run([*command, "--config-file", "", str(test)])
    assert status == 1 and 'incompatible type "int"; expected "Server"' in stdout, stdout
