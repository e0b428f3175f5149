"""The client's WebSocket opening handshake, over trio-websocket and wsproto.

Two things trio-websocket's ``wrap_client_stream`` does not do:

- fail at once when the server ends the connection before answering the upgrade request
  (it would wait for an answer forever, that is until the caller's connect timeout);
- offer permessage-deflate (RFC 7692), as socket.io-client's ``ws`` does by default. The
  inflater is bounded: a compressed message that inflates beyond the message size limit
  closes the WebSocket (1009) instead of filling the memory.

The connection is built as ``wrap_client_stream`` builds it, with the opening request
replaced by one that carries the extension offer: the only place that depends on
trio-websocket's internals (its version is pinned).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import trio
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol

__all__ = ["BoundedDeflate", "WatchedStream", "handshake"]


class WatchedStream(trio.abc.Stream):
    """A stream that notes when the server ends it (EOF or reset)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self.ended = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.ended.set()
            raise
        if not data:
            self.ended.set()
        return data

    async def aclose(self) -> None:
        await self._stream.aclose()


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate whose inflater stops at ``limit`` bytes per message."""

    def __init__(self, limit: int) -> None:
        super().__init__(client_max_window_bits=15)
        self._limit = limit
        self._inflated = 0

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None
        room = self._limit - self._inflated
        try:
            out = self._decompressor.decompress(bytes(data), room + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self._limit:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if fin:
            self._inflated = 0
        return super().frame_inbound_complete(proto, fin)


async def handshake(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    host: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    *,
    deflate: bool,
    message_queue_size: int,
    max_message_size: int,
) -> tuple[trio_websocket.WebSocketConnection, bool]:
    """Open a client WebSocket on ``stream``; its reader task runs in ``nursery``.

    Returns:
        The connection, and whether permessage-deflate was agreed.

    Raises:
        trio.BrokenResourceError: the server ended the connection before answering.
        trio_websocket.HandshakeError: the server refused the upgrade.

    Cancellation: safe; the caller closes the stream.
    """
    watched = WatchedStream(stream)
    extra = [(k.encode(), v.encode()) for k, v in headers]
    connection = trio_websocket.WebSocketConnection(
        watched,
        WSConnection(ConnectionType.CLIENT),
        host=host,
        path=target,
        client_extra_headers=extra,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
    )
    extension = BoundedDeflate(max_message_size) if deflate else None
    if extension is not None:
        connection._initial_request = Request(
            host=host, target=target, extra_headers=extra, extensions=[extension]
        )
    opened = False
    async with trio.open_nursery() as race:

        async def watch() -> None:
            await watched.ended.wait()
            race.cancel_scope.cancel()

        race.start_soon(watch)
        nursery.start_soon(connection._reader_task)
        await connection._open_handshake.wait()
        opened = True
        race.cancel_scope.cancel()
    if not opened:
        raise trio.BrokenResourceError("the server closed the connection during the handshake")
    return connection, extension is not None and extension.enabled()
