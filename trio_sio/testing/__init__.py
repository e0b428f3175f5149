"""Helpers for testing Socket.IO applications (and trio_sio itself) without sockets.

Everything here goes through the production code paths of the server: only the bytes on the
wire are replaced by in-memory channels. Timing is then Trio's alone, so heartbeats, ack
timeouts and back-off run in virtual time under pytest-trio's ``autojump_clock``.

- :class:`MemoryNetwork` connects real clients (:class:`trio_sio.Client`, the Engine.IO
  client) to a server through in-memory byte streams: HTTP, WebSocket, polling, upgrade,
  heartbeats and reconnection all run the production code::

      async with trio.open_nursery() as nursery:
          await nursery.start(sio.run)
          network = MemoryNetwork(nursery, sio)
          client = trio_sio.Client("http://test", connector=network.connect)
          async with client:
              await client.emit("hello")

  Set ``network.server = None`` to refuse new connections and :meth:`MemoryNetwork.drop`
  to cut the open ones (a server restart), then point it at a new server.

- :func:`open_raw_client` speaks raw Engine.IO/Socket.IO frames, for exact wire assertions::

      async with open_raw_client(sio) as raw:
          await raw.send("40")
          assert (await raw.receive()).startswith("40{")
"""

from __future__ import annotations

import errno
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

import trio
import trio.testing

from ..engineio.memory import MemoryWebSocket, memory_websocket_pair, request_head
from ..frontends.standalone import handle_stream
from ..protocol.engineio import OpenInfo, decode_open, decode_packet
from ..protocol.errors import ConnectionClosed, SocketIOError
from ..server.server import Server

if TYPE_CHECKING:
    from ..client.client import Client

__all__ = ["MemoryNetwork", "RawClient", "SioClient", "SioServe", "open_raw_client"]


class SioServe(Protocol):
    """The type of the ``sio_serve`` fixture (:mod:`trio_sio.testing.pytest_plugin`), for
    typed tests: ``async def test_x(sio_serve: SioServe, sio_client: SioClient) -> None``."""

    async def __call__(self, server: Server, /) -> MemoryNetwork:
        """Start ``server`` in the test's nursery and return the network that reaches it.

        Blocks until the server runs; it stops when the test's nursery is cancelled (at the
        end of the test)."""
        ...


class SioClient(Protocol):
    """The type of the ``sio_client`` fixture (:mod:`trio_sio.testing.pytest_plugin`)."""

    def __call__(self, network: MemoryNetwork, /, **options: Any) -> Client:
        """A :class:`trio_sio.Client` for ``network``, not yet connected (``async with`` it,
        after registering its handlers); ``options`` go to the Client."""
        ...


class _Freezable(trio.abc.Stream):
    """A client-side stream that stalls while its network is frozen."""

    def __init__(self, stream: trio.abc.Stream, network: MemoryNetwork) -> None:
        self._stream = stream
        self._network = network

    async def _wait_thawed(self) -> None:
        while self._network.frozen:
            await self._network._thawed.wait()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._wait_thawed()
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self._stream.receive_some(max_bytes)
        await self._wait_thawed()
        return data

    async def aclose(self) -> None:
        await self._stream.aclose()


class MemoryNetwork:
    """A pretend network between clients and one server, made of in-memory streams.

    Args:
        nursery: where the server side of each connection runs (usually the test's).
        server: the server clients reach; ``None`` refuses connections.

    Use :meth:`connect` as the ``connector`` of a client.
    """

    def __init__(self, nursery: trio.Nursery, server: Server | None = None) -> None:
        self._nursery = nursery
        self.server = server
        self._open: list[trio.abc.Stream] = []
        self.connections = 0
        self.frozen = False
        self._thawed = trio.Event()

    async def connect(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None
    ) -> trio.abc.Stream:
        """Open a stream to the server (a client's ``connector``).

        Raises:
            OSError: no server is listening (``server`` is None).
        """
        await trio.lowlevel.checkpoint()
        server = self.server
        if server is None:
            raise OSError(errno.ECONNREFUSED, "connection refused (no server)")
        client_side, server_side = trio.testing.memory_stream_pair()
        self._open.append(server_side)
        self.connections += 1
        self._nursery.start_soon(handle_stream, server.engine, server_side)
        return _Freezable(client_side, self)

    def freeze(self) -> None:
        """Stop every byte in both directions on the open connections (a hung server or a
        dead link): nothing is closed, so only heartbeats can notice."""
        self.frozen = True

    def thaw(self) -> None:
        """Let bytes flow again (see :meth:`freeze`)."""
        self.frozen = False
        self._thawed.set()
        self._thawed = trio.Event()

    async def drop(self) -> None:
        """Cut every open connection, as a crashing server would."""
        streams, self._open = self._open, []
        for stream in streams:
            await trio.aclose_forcefully(stream)


class RawClient:
    """A client that sends and receives raw Engine.IO frames over an in-memory WebSocket.

    Attributes:
        open_info: the server's OPEN packet.
        auto_pong: answer pings by itself and hide them from :meth:`receive`.
    """

    def __init__(self, ws: MemoryWebSocket, auto_pong: bool) -> None:
        self._ws = ws
        self.auto_pong = auto_pong
        self.open_info: OpenInfo
        self._frames_send, self._frames_recv = trio.open_memory_channel[str | bytes](1000)
        self.closed = trio.Event()

    async def _reader(self) -> None:
        try:
            while True:
                frame = await self._ws.get_message()
                if self.auto_pong and frame == "2":
                    await self._ws.send_message("3")
                    continue
                await self._frames_send.send(frame)
        except ConnectionClosed:
            pass
        finally:
            self._frames_send.close()
            self.closed.set()

    async def send(self, frame: str | bytes) -> None:
        """Send one raw frame, e.g. ``"42[\\"hello\\"]"`` or binary attachment bytes."""
        await self._ws.send_message(frame)

    async def receive(self) -> str | bytes:
        """The next frame from the server.

        Raises:
            ConnectionClosed: the server closed the connection and every frame was read.
        """
        try:
            return await self._frames_recv.receive()
        except trio.EndOfChannel:
            raise ConnectionClosed("transport close") from None

    def receive_nowait(self) -> str | bytes:
        """The next frame if one is already there; raises ``trio.WouldBlock`` otherwise."""
        return self._frames_recv.receive_nowait()

    async def expect(self, frame: str | bytes) -> None:
        """Receive the next frame and check that it equals ``frame``."""
        got = await self.receive()
        if got != frame:
            raise AssertionError(f"expected {frame!r}, got {got!r}")

    async def connect(self, namespace: str = "/", auth: Mapping[str, Any] | None = None) -> str:
        """Connect to a namespace; return the socket id the server gave.

        Raises:
            SocketIOError: the server answered with a CONNECT_ERROR.
        """
        prefix = "" if namespace == "/" else f"{namespace},"
        payload = json.dumps(dict(auth), separators=(",", ":")) if auth is not None else ""
        await self.send(f"40{prefix}{payload}")
        frame = await self.receive()
        if not isinstance(frame, str):
            raise AssertionError(f"expected a CONNECT reply, got {frame!r}")
        if frame.startswith(f"44{prefix}"):
            raise SocketIOError(json.loads(frame[2 + len(prefix) :]).get("message", "refused"))
        if not frame.startswith(f"40{prefix}"):
            raise AssertionError(f"expected a CONNECT reply, got {frame!r}")
        sid: str = json.loads(frame[2 + len(prefix) :])["sid"]
        return sid

    async def aclose(self) -> None:
        """Close the WebSocket (the server sees a transport close)."""
        await self._ws.aclose()


@asynccontextmanager
async def open_raw_client(
    server: Server,
    *,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    auto_pong: bool = True,
) -> AsyncIterator[RawClient]:
    """Open an Engine.IO session on ``server`` (which must be running) over memory.

    The OPEN packet is read before the block starts (``client.open_info``).

    Raises:
        SocketIOError: the server refused the WebSocket.
    """
    params = {"EIO": "4", "transport": "websocket", **(query or {})}
    head = request_head(
        "GET",
        f"{server.engine.config.path}?{urlencode(params)}",
        {"upgrade": "websocket", "connection": "Upgrade", **(headers or {})},
    )
    refusal = await server.engine.check_websocket(head)
    if refusal is not None:
        raise SocketIOError(f"refused with {refusal.status}: {refusal.body.decode()}")
    ours, theirs = memory_websocket_pair(1000)

    async def serve() -> None:
        try:
            await server.engine.serve_websocket(head, theirs)
        finally:
            await theirs.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        client = RawClient(ours, auto_pong)
        nursery.start_soon(client._reader)
        opening = await client.receive()
        client.open_info = decode_open(decode_packet(opening))
        try:
            yield client
        finally:
            await ours.aclose()
            nursery.cancel_scope.cancel()
