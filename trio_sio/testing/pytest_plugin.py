"""pytest fixtures for testing Socket.IO applications with pytest-trio.

Enable them in a ``conftest.py``::

    pytest_plugins = ["trio_sio.testing.pytest_plugin"]

Then, with the autojump clock, a test runs heartbeats, ack timeouts and reconnection
back-off in virtual time::

    async def test_hello(sio_serve, sio_client, autojump_clock):
        network = await sio_serve(make_app())        # your trio_sio.Server
        async with sio_client(network) as client:    # a trio_sio.Client, connected
            assert await client.emit_with_ack("hello", timeout=5) == "world"

The fixtures are function-scoped, as pytest-trio requires. Their types, for annotated
tests, are :class:`trio_sio.testing.SioServe` and :class:`trio_sio.testing.SioClient`.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from ..client.client import Client
from ..server.server import Server
from . import MemoryNetwork, SioClient, SioServe

__all__ = ["sio_client", "sio_serve"]


@pytest.fixture
def sio_serve(nursery: trio.Nursery) -> SioServe:
    """``await sio_serve(server)``: run ``server`` in the test's nursery and return the
    in-memory network that reaches it."""

    async def serve(server: Server) -> MemoryNetwork:
        await nursery.start(server.run)
        return MemoryNetwork(nursery, server)

    return serve


@pytest.fixture
def sio_client() -> SioClient:
    """``sio_client(network, **options)``: a :class:`trio_sio.Client` that connects through
    ``network``; use it with ``async with`` (register handlers first if needed)."""

    def make(network: MemoryNetwork, /, **options: Any) -> Client:
        return Client("http://testserver", connector=network.connect, **options)

    return make
