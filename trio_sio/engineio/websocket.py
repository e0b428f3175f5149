"""A server-side WebSocket on a Trio stream, without a reader task of its own.

:class:`NativeWebSocket` implements the ``WebSocketChannel`` the Engine.IO session needs.
Frames are read only when the session's receive task asks for the next message, and written
by whoever sends, under a lock; pings from the client are answered by the reader. Compared
with running trio-websocket on the server, there is no task hop per message and no second
queue, which is what the session's own bounded queues already provide.
"""

from __future__ import annotations

import logging

import trio

from ..protocol.errors import ConnectionClosed
from ..protocol.websocket import (
    MAX_FRAGMENTS,
    OP_BINARY,
    OP_PONG,
    OP_TEXT,
    Close,
    FrameDecoder,
    Message,
    Ping,
    WebSocketError,
    encode_close,
    encode_frame,
)

__all__ = ["NativeWebSocket"]

log = logging.getLogger("trio_sio.engineio.websocket")

READ_SIZE = 64 * 1024
#: seconds the closing handshake may take.
CLOSE_TIMEOUT = 1.0


class NativeWebSocket:
    """An accepted WebSocket (the 101 response already sent) over ``stream``.

    Args:
        stream: the connection, positioned after the handshake.
        leftover: bytes already read past the handshake request.
        max_message_size: the largest message accepted; larger ones close with 1009.
        max_fragments: the most frames a message may be split into; more close with 1009.

    Closing (ours, or on a protocol error): the close frame, then a half-close, then what the
    client still sends is read and dropped until it closes its side (at most
    ``CLOSE_TIMEOUT`` seconds and about one message of bytes). Closing the socket with unread
    bytes in its receive buffer would make the kernel answer with a reset, and the client
    would lose the close frame (and its status, such as 1009) with it.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        leftover: bytes,
        max_message_size: int,
        max_fragments: int = MAX_FRAGMENTS,
    ) -> None:
        self._stream = stream
        self._decoder = FrameDecoder(max_message_size, max_fragments)
        self._decoder.feed(leftover)
        self._drain_budget = max_message_size + READ_SIZE
        self._send_lock = trio.StrictFIFOLock()
        self._close_sent = False
        self._closed_reason: str | None = None
        self._receiving = False

    async def get_message(self) -> str | bytes:
        """The next text or binary message.

        Raises:
            ConnectionClosed: the client closed the WebSocket, the connection dropped, or
                the client broke the protocol (then the WebSocket is closed with the status
                the protocol asks for).
        """
        decoder = self._decoder
        while True:
            if self._closed_reason is not None:
                raise ConnectionClosed(self._closed_reason)
            try:
                event = decoder.next_event()
            except WebSocketError as exc:
                log.info("websocket protocol error: %s", exc)
                await self._fail(exc.close_code)
                raise ConnectionClosed("transport error") from None
            if event is None:
                self._receiving = True
                try:
                    data = await self._stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                finally:
                    self._receiving = False
                if not data:
                    self._closed_reason = "transport close"
                    raise ConnectionClosed("transport close")
                decoder.feed(data)
            elif type(event) is Message:
                return event.data
            elif type(event) is Ping:
                await self._write(encode_frame(OP_PONG, event.payload))
            elif type(event) is Close:
                code = 1000 if event.code == 1005 else event.code
                await self._send_close(code)
                self._closed_reason = "transport close"
                raise ConnectionClosed("transport close")
            # Pong: nothing to do

    async def send_message(self, message: str | bytes) -> None:
        """Send one message as one frame.

        Raises:
            ConnectionClosed: the WebSocket is closed.
        """
        if isinstance(message, str):
            frame = encode_frame(OP_TEXT, message.encode("utf-8"))
        else:
            frame = encode_frame(OP_BINARY, message)
        await self._write(frame)

    async def send_frames(self, frames: bytes) -> None:
        """Write already encoded frames (one or more), in one write.

        Raises:
            ConnectionClosed: the WebSocket is closed.
        """
        await self._write(frames)

    async def aclose(self) -> None:
        """Close: a close frame, then the connection once the client closed its side.

        Blocks for at most ``CLOSE_TIMEOUT`` seconds, even when cancelled (shielded).
        """
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
            try:
                await self._send_close(1000)
            except ConnectionClosed:
                pass
            if not self._receiving:  # else a reader (or a linger) owns the receiving side
                await self._linger()
        self._closed_reason = self._closed_reason or "forced close"
        await trio.aclose_forcefully(self._stream)

    async def _write(self, data: bytes) -> None:
        if self._close_sent:
            raise ConnectionClosed(self._closed_reason or "transport close")
        lock = self._send_lock
        try:
            lock.acquire_nowait()  # the common, uncontended case costs no extra coroutine
        except trio.WouldBlock:
            await lock.acquire()
        try:
            if self._close_sent:  # closed while this write waited for the lock
                raise ConnectionClosed(self._closed_reason or "transport close")
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._closed_reason = self._closed_reason or "transport close"
            raise ConnectionClosed("transport close") from None
        finally:
            lock.release()

    async def _send_close(self, code: int) -> None:
        if self._close_sent:
            return
        frame = encode_close(code)
        async with self._send_lock:
            self._close_sent = True
            try:
                await self._stream.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _linger(self) -> None:
        """After our close frame: half-close, then read and drop what the client still sends
        until it closes its side or ``_drain_budget`` bytes went by. Bound it in time."""
        stream = self._stream
        self._receiving = True
        try:
            if isinstance(stream, trio.abc.HalfCloseableStream):
                async with self._send_lock:
                    await stream.send_eof()
            budget = self._drain_budget
            while budget > 0:
                data = await stream.receive_some(READ_SIZE)
                if not data:
                    return
                budget -= len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            pass
        finally:
            self._receiving = False

    async def _fail(self, code: int) -> None:
        self._closed_reason = "transport error"
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._send_close(code)
            await self._linger()
        await trio.aclose_forcefully(self._stream)
