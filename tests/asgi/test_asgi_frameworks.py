"""trio_sio beside the routes of a Trio web framework, under Hypercorn's trio worker:
Quart-Trio (trio_sio wraps its ASGI app) and Starlette on anyio's Trio backend (trio_sio
mounted at /socket.io). The framework's route and Socket.IO answer on the same port, over
every transport, with our client and the official Node client.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
from asgi_support import (
    INTEROP,
    TRANSPORTS,
    HypercornProcess,
    check,
    env_with_root,
    node,
    parse,
    start_embedded,
)
from hypercorn_apps import quart_app, starlette_app

import trio_sio
from trio_sio.engineio._http_client import HTTPConnection

APPS = {"quart": quart_app, "starlette": starlette_app}
GREETING = {"quart": b"hello from quart", "starlette": b"hello from starlette"}


async def get(url: str, target: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    connection = HTTPConnection(parts.hostname, parts.port)
    try:
        response = await connection.request("GET", target)
    finally:
        await connection.aclose()
    return response.status, response.body


async def use(url: str, transports: tuple[str, ...]) -> None:
    client = trio_sio.Client(url, transports=transports, reconnection=False)
    async with client:
        assert await client.emit_with_ack("echo", "hi", b"\x00\x01", timeout=5) == (
            "hi",
            b"\x00\x01",
        )
        if len(transports) > 1:
            while client.transport != "websocket":
                await trio.sleep(0.01)
        assert await client.emit_with_ack("transport", timeout=5) == transports[-1]


@pytest.fixture(params=list(APPS))
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_route_and_socketio_embedded(nursery: trio.Nursery, framework: str) -> None:
    url = await start_embedded(nursery, APPS[framework]())
    with trio.fail_after(20):
        assert await get(url, "/") == (200, GREETING[framework])
        for transports in (("polling",), ("websocket",), ("polling", "websocket")):
            await use(url, transports)
        status, _ = await get(url, "/nothing-here")
        assert status == 404


@pytest.fixture(scope="module", params=list(APPS))
def framework_process(request: pytest.FixtureRequest) -> Iterator[tuple[str, HypercornProcess]]:
    server = HypercornProcess(f"hypercorn_apps:{request.param}_app()")
    yield str(request.param), server
    server.kill()
    assert not server.errors(), "\n".join(server.stderr)


async def test_route_and_socketio_process(framework_process: tuple[str, HypercornProcess]) -> None:
    framework, server = framework_process
    with trio.fail_after(20):
        assert await get(server.url, "/") == (200, GREETING[framework])
        for transports in (("polling",), ("websocket",), ("polling", "websocket")):
            await use(server.url, transports)


@pytest.mark.interop
@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_official_client(framework: str, transport: str) -> None:
    server = HypercornProcess(f"hypercorn_apps:{framework}_app('scenario')")
    try:
        proc = subprocess.run(
            [node(), "sio_node_client.mjs", server.url, TRANSPORTS[transport]],
            cwd=INTEROP,
            capture_output=True,
            timeout=40,
            env=env_with_root(),
            check=False,
        )
        output: dict[str, Any] = parse(proc)
        check(output, transport)
    finally:
        server.kill()
    assert not server.errors(), "\n".join(server.stderr)
