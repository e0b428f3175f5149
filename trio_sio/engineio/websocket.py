"""A server-side WebSocket on a Trio stream, without a reader task of its own.

:class:`NativeWebSocket` implements the ``WebSocketChannel`` the Engine.IO session needs.
Frames are read only when the session's receive task asks for the next message, and written
by whoever sends, under a lock; pings from the client are answered by the reader. Compared
with running trio-websocket on the server, there is no task hop per message and no second
queue, which is what the session's own bounded queues already provide.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import trio

from .._streams import close_now, drain_input, read_socket, write_now
from .._sync import Slots
from ..protocol.deflate import DeflateParams, deflate_message
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
from ._inline import LOCAL

__all__ = ["NativeWebSocket"]

log = logging.getLogger("trio_sio.engineio.websocket")

READ_SIZE = 64 * 1024
#: bytes a socket may gather while corked before they are written anyway (see
#: ``engineio._inline``): a burst's frames share writes of about this size.
CORK_BYTES = 256 * 1024
#: seconds the closing handshake may take.
CLOSE_TIMEOUT = 1.0
#: read a plain TCP stream's socket directly (see _streams.read_socket): where sockets are files.
DIRECT_READS = os.name == "posix"


class NativeWebSocket:
    """An accepted WebSocket (the 101 response already sent) over ``stream``.

    Args:
        stream: the connection, positioned after the handshake.
        leftover: bytes already read past the handshake request.
        max_message_size: the largest message accepted; larger ones close with 1009.
        max_fragments: the most frames a message may be split into; more close with 1009.
        deflate: the permessage-deflate parameters agreed in the handshake, if any: the
            client's compressed messages are inflated (bounded by ``max_message_size``),
            and messages sent of at least ``deflate.threshold`` bytes are compressed.

    Closing (ours, or on a protocol error): the close frame, then a half-close, then what the
    client still sends is read and dropped until it closes its side (at most
    ``CLOSE_TIMEOUT`` seconds and about one message of bytes). Closing the socket with unread
    bytes in its receive buffer would make the kernel answer with a reset, and the client
    would lose the close frame (and its status, such as 1009) with it.
    """

    #: :meth:`aclose` is bounded in time and shielded from cancellation by itself.
    bounded_close = True

    __slots__ = (
        "_close_sent",
        "_closed_reason",
        "_corked",
        "_corked_bytes",
        "_decoder",
        "_drain_budget",
        "_drained",
        "_on_unsent",
        "_peer_done",
        "_receiving",
        "_send_lock",
        "_socket",
        "_stream",
        "_unsent",
        "deflate",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        leftover: bytes,
        max_message_size: int,
        max_fragments: int = MAX_FRAGMENTS,
        deflate: DeflateParams | None = None,
    ) -> None:
        self._stream = stream
        # A plain TCP stream is read from its socket by read_socket; others (TLS, memory)
        # through their receive_some().
        self._socket: trio.socket.SocketType | None = None
        if DIRECT_READS and isinstance(stream, trio.SocketStream):
            self._socket = stream.socket
        #: the agreed permessage-deflate parameters (the transport compresses with them).
        self.deflate = deflate
        inflater = None if deflate is None else deflate.inflater()
        self._decoder = FrameDecoder(max_message_size, max_fragments, inflater)
        self._decoder.feed(leftover)
        self._drain_budget = max_message_size + READ_SIZE
        # One writer at a time, in arrival order (a FIFO lock; its parking lot exists only
        # while writers wait).
        self._send_lock = Slots(1)
        self._close_sent = False
        self._closed_reason: str | None = None
        self._receiving = False
        # The client is done sending: its close frame or its end of stream was read.
        self._peer_done = False
        # The last read took less than it asked for: the socket had nothing more.
        self._drained = False
        # What a direct write (try_write) could not write at once: the next write sends it
        # first.
        self._unsent: bytes | None = None
        # Frames gathered while corked (see try_write), written by flush_cork; and who to
        # tell when that write leaves bytes behind.
        self._corked: list[bytes] | None = None
        self._corked_bytes = 0
        self._on_unsent: Callable[[int], None] | None = None

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
                data: bytes | bytearray
                try:
                    if self._socket is not None:
                        data = await read_socket(self._socket, self._drained)
                        self._drained = len(data) < READ_SIZE
                    else:
                        data = await self._stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                finally:
                    self._receiving = False
                if not data:
                    self._closed_reason = "transport close"
                    self._peer_done = True
                    raise ConnectionClosed("transport close")
                decoder.feed(data)
            elif type(event) is Message:
                return event.data
            elif type(event) is Ping:
                await self._write(encode_frame(OP_PONG, event.payload))
            elif type(event) is Close:
                code = 1000 if event.code == 1005 else event.code
                self._peer_done = True  # nothing may follow a close frame
                await self._send_close(code)
                self._closed_reason = "transport close"
                raise ConnectionClosed("transport close")
            # Pong: nothing to do

    async def send_message(self, message: str | bytes) -> None:
        """Send one message as one frame (compressed with permessage-deflate when it was
        agreed and the message reaches the threshold).

        Raises:
            ConnectionClosed: the WebSocket is closed.
        """
        opcode, payload = (
            (OP_TEXT, message.encode("utf-8")) if isinstance(message, str) else (OP_BINARY, message)
        )
        deflate = self.deflate
        if deflate is not None and len(payload) >= deflate.threshold:
            payload = deflate_message(payload, deflate.level, deflate.server_window_bits)
            await self._write(encode_frame(opcode, payload, rsv1=True))
        else:
            await self._write(encode_frame(opcode, payload))

    async def send_frames(self, frames: bytes) -> None:
        """Write already encoded frames (one or more), in one write.

        Raises:
            ConnectionClosed: the WebSocket is closed.
        """
        await self._write(frames)

    def frame_writer(self) -> NativeWebSocket:
        """This channel takes encoded frames."""
        return self

    def message_ready(self) -> bool:
        """Whether a whole frame of the client's is already read."""
        return self._decoder.frame_ready

    def try_write(
        self,
        frames: Sequence[bytes],
        on_unsent: Callable[[int], None] | None = None,
        *,
        cork: bool = True,
    ) -> int | None:
        """Write already encoded frames now, without waiting, if no other write is under
        way; inside a corked coroutine (see ``engineio._inline``), gather them instead: they
        go out, together, before the scheduler next polls for I/O.

        What the socket does not take at once is kept and written first by the next write
        (:meth:`send_frames` with ``b""`` writes just that); when a corked write leaves
        bytes behind, ``on_unsent`` is called with their number.

        Returns:
            How many bytes were kept (0: all written or gathered), or None when nothing was
            taken: another write is under way or waiting, the stream is not a plain TCP
            socket, or the socket failed (the caller then writes the ordinary way, which
            meets the error).

        Never blocks, never checkpoints.
        """
        sock = self._socket
        if sock is None or self._unsent is not None or self._close_sent:
            return None
        if not self._send_lock.value:  # a write is under way (or waits)
            return None
        if cork and (state := LOCAL.cork).depth:
            corked = self._corked
            if corked is None:
                self._corked = corked = []
                self._on_unsent = on_unsent
                state.add(self)
            corked.extend(frames)
            self._corked_bytes += sum(map(len, frames)) if len(frames) > 1 else len(frames[0])
            if self._corked_bytes >= CORK_BYTES:
                self.flush_cork()
            return 0
        if self._corked is not None:  # gathered frames go first (a close frame's case)
            frames = [*self._take_corked(), *frames]
        for index, frame in enumerate(frames):
            try:
                sent = write_now(sock, frame)
            except OSError:
                if index == 0:
                    return None
                sent = 0  # kept: the next write meets the error
            if sent < len(frame):
                rest = b"".join([frame[sent:], *frames[index + 1 :]])
                self._unsent = rest
                return len(rest)
        return 0

    def flush_cork(self) -> bool:
        """Write the frames gathered while corked, in one write. What the socket does not
        take is kept for the next write, and ``on_unsent`` (of :meth:`try_write`) is told.

        Returns: whether something was kept (``on_unsent`` then woke a task that writes it).

        Never blocks, never checkpoints, never raises."""
        if self._corked is None:
            return False
        data = self._take_corked()
        on_unsent, self._on_unsent = self._on_unsent, None
        data_bytes = data[0] if len(data) == 1 else b"".join(data)
        try:
            sent = write_now(self._socket, data_bytes) if self._socket is not None else 0
        except OSError:
            sent = 0  # kept: the next write meets the error
        if sent < len(data_bytes):
            self._unsent = data_bytes[sent:]
            if on_unsent is not None:
                on_unsent(len(data_bytes) - sent)
            return True
        return False

    def _take_corked(self) -> list[bytes]:
        corked = self._corked or []
        self._corked = None
        self._corked_bytes = 0
        return corked

    async def aclose(self) -> None:
        """Close: a close frame, then the connection once the client closed its side.

        Blocks for at most ``CLOSE_TIMEOUT`` seconds, even when cancelled (shielded).
        """
        if not (self._close_sent and self._peer_done):
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                try:
                    await self._send_close(1000)
                except ConnectionClosed:
                    pass
                # Unless the client is done sending (its close frame or its end of stream
                # came), or a reader (or a linger) owns the receiving side.
                if not self._receiving and not self._peer_done:
                    await self._linger()
        self._closed_reason = self._closed_reason or "forced close"
        await close_now(self._stream)

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
            if self._corked is not None:  # gathered by this task before this write
                data = b"".join([*self._take_corked(), data])
            unsent = self._unsent
            if unsent is not None:  # left by a direct write: it goes first
                self._unsent = None
                data = unsent + data
            if data:
                await self._stream.send_all(data)
            else:
                await trio.lowlevel.checkpoint()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._closed_reason = self._closed_reason or "transport close"
            raise ConnectionClosed("transport close") from None
        finally:
            lock.release()

    async def _send_close(self, code: int) -> None:
        if self._close_sent:
            return
        frame = encode_close(code)
        if self.try_write([frame], cork=False) == 0:  # written at once (the common case)
            self._close_sent = True
            return
        async with self._send_lock:
            self._close_sent = True
            unsent, self._unsent = self._unsent, None
            try:
                await self._stream.send_all(frame if unsent is None else unsent + frame)
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
            await drain_input(stream, self._drain_budget)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            pass
        finally:
            self._receiving = False

    async def _fail(self, code: int) -> None:
        self._closed_reason = "transport error"
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._send_close(code)
            await self._linger()
        await close_now(self._stream)
