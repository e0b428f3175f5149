"""In-memory WebSockets and HTTP requests, for tests that go through the real server code.

Nothing here opens a socket: a :class:`MemoryWebSocket` pair is two bounded memory channels,
and :func:`http_request` calls :meth:`EngineServer.handle_http` directly. Timing is then all
Trio's, so tests can run heartbeats and timeouts under the autojump clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import trio

from ..protocol.errors import ConnectionClosed
from .config import HttpResponse, RequestHead
from .server import EngineServer

__all__ = ["MemoryWebSocket", "http_request", "memory_websocket_pair", "request_head"]


@dataclass(eq=False)
class MemoryWebSocket:
    """One end of an in-memory WebSocket; implements ``WebSocketChannel``."""

    _send: trio.MemorySendChannel[str | bytes]
    _recv: trio.MemoryReceiveChannel[str | bytes]
    closed: bool = False
    bounded_close = False

    def frame_writer(self) -> None:
        """Messages, not frames, cross an in-memory WebSocket."""
        return None

    def message_ready(self) -> bool:
        """Whether a message waits in the channel."""
        return self._recv.statistics().current_buffer_used > 0

    async def get_message(self) -> str | bytes:
        """Wait for the next message. Raises ConnectionClosed once either end closed."""
        try:
            return await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ConnectionClosed("transport close") from None

    async def send_message(self, message: str | bytes) -> None:
        """Send one message. Raises ConnectionClosed once either end closed."""
        try:
            await self._send.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionClosed("transport close") from None

    async def aclose(self) -> None:
        """Close both directions."""
        self.closed = True
        await self._send.aclose()
        await self._recv.aclose()


def memory_websocket_pair(buffer: int = 64) -> tuple[MemoryWebSocket, MemoryWebSocket]:
    """Two connected ends: what one sends, the other gets."""
    a_send, b_recv = trio.open_memory_channel[str | bytes](buffer)
    b_send, a_recv = trio.open_memory_channel[str | bytes](buffer)
    return MemoryWebSocket(a_send, a_recv), MemoryWebSocket(b_send, b_recv)


def request_head(
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    client: tuple[str, int] | None = ("127.0.0.1", 40000),
) -> RequestHead:
    """Build a :class:`RequestHead` from a method and a path-with-query."""
    parts = urlsplit(url)
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(name, value)
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    return RequestHead(method, parts.path, query, lowered, client)


async def http_request(
    server: EngineServer,
    method: str,
    url: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> HttpResponse:
    """Send one HTTP request straight to ``server.handle_http`` and return its response."""

    async def chunks() -> AsyncIterator[bytes]:
        if body:
            yield body

    return await server.handle_http(request_head(method, url, headers), chunks(), len(body))
