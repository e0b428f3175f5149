"""Helpers for testing Socket.IO applications (and trio_sio itself) without sockets.

Everything here goes through the production code paths of the server: only the bytes on the
wire are replaced by in-memory channels. Timing is then Trio's alone, so heartbeats, ack
timeouts and back-off run in virtual time under pytest-trio's ``autojump_clock``.

- :func:`open_raw_client` speaks raw Engine.IO/Socket.IO frames, for exact wire assertions::

      async with open_raw_client(sio) as raw:
          await raw.send("40")
          assert (await raw.receive()).startswith("40{")
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import trio

from ..engineio.memory import MemoryWebSocket, memory_websocket_pair, request_head
from ..protocol.engineio import OpenInfo, decode_open, decode_packet
from ..protocol.errors import ConnectionClosed, SocketIOError
from ..server.server import Server

__all__ = ["RawClient", "open_raw_client"]


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
