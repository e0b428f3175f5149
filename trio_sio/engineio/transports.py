"""Server-side Engine.IO transports: HTTP long-polling and WebSocket.

A transport moves packet batches; it knows nothing of heartbeats or sessions. The session
(:class:`~trio_sio.engineio.socket.EngineSocket`) owns exactly one current transport and runs
the tasks that use it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Protocol

import trio
import trio_websocket

from ..protocol.deflate import DeflateParams, deflate_message
from ..protocol.engineio import Packet, Transport, decode_packet, encode_packet, may_compress
from ..protocol.errors import ConnectionClosed
from ..protocol.websocket import OP_BINARY, OP_TEXT, encode_frame

__all__ = ["Batch", "FrameWriter", "PollingTransport", "WebSocketChannel", "WebSocketTransport"]

log = logging.getLogger("trio_sio.engineio")

#: From this many packets waiting for one WebSocket, they are written in a single write.
COALESCE_FROM = 4
#: seconds a poll's answer waits for the POST being dispatched to be answered first.
POST_ANSWER_FIRST = 0.1


class FrameWriter(Protocol):
    """A WebSocket that takes frames already encoded (see :mod:`trio_sio.protocol.websocket`):
    what lets a broadcast encode each frame once for all its recipients, and write it from
    the emitting task."""

    #: the permessage-deflate parameters agreed with the client (None: not compressed).
    deflate: DeflateParams | None

    def try_write(self, frames: Sequence[bytes], on_unsent: Callable[[int], None]) -> int | None:
        """Write (or, inside a corked coroutine, gather: see ``engineio._inline``) frames
        without waiting, if no other write is under way.

        Returns:
            None if nothing was taken (the caller queues the frames); else how many bytes
            the socket did not take at once: the writer keeps them, and the next
            :meth:`send_frames` (even of ``b""``) writes them first. When a corked write
            later leaves bytes behind, ``on_unsent`` is called with their number.

        Never blocks, never checkpoints.
        """
        ...

    async def send_frames(self, frames: bytes) -> None:
        """Write encoded frames (and first what a direct write left), in one write."""
        ...


class WebSocketChannel(Protocol):
    """The little an Engine.IO session needs of an accepted WebSocket.

    Implementations raise :class:`~trio_sio.protocol.errors.ConnectionClosed` from
    ``get_message``/``send_message`` once the WebSocket is closed.
    """

    #: whether :meth:`aclose` bounds its closing handshake in time and shields it by itself.
    bounded_close: bool

    async def get_message(self) -> str | bytes:
        """Wait for the next whole message (text or binary)."""
        ...

    async def send_message(self, message: str | bytes) -> None:
        """Send one message as one frame."""
        ...

    async def aclose(self) -> None:
        """Close the WebSocket (with a bounded closing handshake)."""
        ...

    def frame_writer(self) -> FrameWriter | None:
        """The channel as a :class:`FrameWriter`, if it takes encoded frames (None: each
        message goes through :meth:`send_message`)."""
        ...

    def message_ready(self) -> bool:
        """Whether more of the client's data is already read, so that ``get_message`` most
        likely returns without waiting (False when the channel cannot tell)."""
        ...


_Slot = trio.MemorySendChannel[Sequence[Packet]]


class Batch(tuple[Packet, ...]):
    """A group of packets with an event set once they were handled (dispatched or written)."""

    done: trio.Event
    #: set when the batch was given up without being handled (the session stopped reading).
    dropped: bool

    def __new__(cls, packets: Sequence[Packet]) -> Batch:
        self = super().__new__(cls, packets)
        self.done = trio.Event()
        self.dropped = False
        return self


class PollingTransport:
    """HTTP long-polling, server side.

    Each GET offers the session a one-shot reply slot and waits on it; the session's send
    loop takes the slot when it has packets and puts the whole batch in it. A GET that went
    away leaves a dead slot, which the sender notices and skips: a batch is either answered
    in full or still held by the sender, never half-sent. POST handlers feed decoded packets
    into a bounded channel that the session's receive loop drains, so a fast client is slowed
    down rather than buffered without bound.
    """

    name = Transport.POLLING

    def __init__(self, incoming_batches: int = 16) -> None:
        self._slots_send, self._slots_recv = trio.open_memory_channel[_Slot](1)
        self._slot: _Slot | None = None
        self._in_send, self._in_recv = trio.open_memory_channel[Sequence[Packet]](incoming_batches)
        self.get_active = False
        self.post_active = False
        self._post_over: trio.Event | None = None  # while a send waits for a POST's answer
        self.closed = False

    @property
    def writable(self) -> bool:
        """True while a GET is parked, waiting for data."""
        return self._slot is not None or self._slots_recv.statistics().current_buffer_used > 0

    # -- used by the session --------------------------------------------------------------
    async def wait_writable(self) -> None:
        """Block until a GET is parked and waiting for data (or the transport closed)."""
        if self._slot is None:
            try:
                self._slot = await self._slots_recv.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                await trio.lowlevel.checkpoint()

    async def send(self, packets: Sequence[Packet]) -> None:
        """Answer the parked GET with ``packets`` (waits for a GET if none is parked).

        A POST being dispatched is answered first (waited for at most
        ``POST_ANSWER_FIRST`` seconds): the replies its packets caused go out after its
        ``ok``, as with the JS server, which answers a POST before its handlers run. (Some
        clients drop what they queued when a reply comes before the ``ok``: python-engineio's
        polling client loses its CLOSE packet when it disconnects meanwhile.)

        Raises:
            trio.ClosedResourceError: the transport is closed.

        Cancellation: atomic; if cancelled, no GET received the batch.
        """
        if self.post_active:
            with trio.move_on_after(POST_ANSWER_FIRST):
                while self.post_active:
                    if self._post_over is None:
                        self._post_over = trio.Event()
                    await self._post_over.wait()
        while True:
            slot = self._slot
            if slot is None:
                try:
                    slot = await self._slots_recv.receive()
                except trio.EndOfChannel:
                    raise trio.ClosedResourceError("polling transport closed") from None
            self._slot = None
            try:
                slot.send_nowait(packets)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                continue  # that GET went away; wait for the next one
            return

    def post_answered(self) -> None:
        """The POST being served is over (its answer is written next, without waiting)."""
        self.post_active = False
        if self._post_over is not None:
            self._post_over.set()
            self._post_over = None

    def message_ready(self) -> bool:
        """A POST's packets come as one batch: never more after it."""
        return False

    async def receive(self) -> Sequence[Packet]:
        """Next batch from a POST. Raises ``trio.EndOfChannel`` once the transport is closed."""
        return await self._in_recv.receive()

    def stop_receiving(self) -> None:
        """The session reads no more: release the POSTs waiting on it, and refuse new ones."""
        while True:
            try:
                batch = self._in_recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            if isinstance(batch, Batch):
                batch.dropped = True
                batch.done.set()
        self._in_recv.close()

    def release(self, packet: Packet) -> None:
        """Answer a parked GET (if any) with ``packet`` at once."""
        while True:
            slot = self._slot
            self._slot = None
            if slot is None:
                try:
                    slot = self._slots_recv.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    return
            try:
                slot.send_nowait([packet])
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                continue
            return

    def close(self, final: Packet | None) -> None:
        """Stop accepting requests; give a parked GET ``final`` (if given) as its last answer."""
        if self.closed:
            return
        self.closed = True
        if final is not None:
            self.release(final)
        self._slots_send.close()
        self._in_send.close()
        if self._slot is not None:
            self._slot.close()
            self._slot = None
        while True:
            try:
                self._slots_recv.receive_nowait().close()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break

    # -- used by the HTTP handlers --------------------------------------------------------
    async def poll(self) -> Sequence[Packet]:
        """Serve one GET: wait for the next batch.

        Raises:
            trio.EndOfChannel: the transport was closed without a final packet.

        Cancellation: if cancelled (the client went away), no batch was taken.
        """
        reply_send, reply_recv = trio.open_memory_channel[Sequence[Packet]](1)
        with reply_recv:
            try:
                await self._slots_send.send(reply_send)
            except trio.ClosedResourceError:
                raise trio.EndOfChannel from None
            return await reply_recv.receive()

    async def feed(self, packets: Sequence[Packet]) -> None:
        """Pass the packets of one POST to the session and wait until it has dispatched them.

        Waiting for the dispatch (not just the queueing) means that the answer ``ok`` is sent
        once the application holds the messages, and that whatever the application sends in
        reply right away rides on the next poll, as with the JS server.

        Raises:
            trio.ClosedResourceError: the transport is closed, or the session stopped reading.
        """
        batch = Batch(packets)
        try:
            await self._in_send.send(batch)
        except trio.BrokenResourceError:
            raise trio.ClosedResourceError("the session reads no more") from None
        await batch.done.wait()
        if batch.dropped:
            raise trio.ClosedResourceError("the session reads no more")

    async def aclose(self) -> None:
        """Nothing to release beyond :meth:`close`."""


def _frame(packet: Packet) -> bytes:
    """The WebSocket frame of ``packet``, encoded once and kept on the (immutable) packet."""
    frame = packet.frame_cache
    if frame is None:
        data = encode_packet(packet)
        if isinstance(data, str):
            frame = encode_frame(OP_TEXT, data.encode("utf-8"))
        else:
            frame = encode_frame(OP_BINARY, data)
        object.__setattr__(packet, "frame_cache", frame)
    return frame


def _deflated_frame(packet: Packet, deflate: DeflateParams) -> bytes:
    """The frame of ``packet`` on a WebSocket with permessage-deflate agreed: compressed when
    the packet allows it and its payload reaches the threshold. With the full window (every
    client but those asking for less), the result is kept on the packet: a broadcast is
    compressed once, whatever the number of recipients."""
    if not may_compress(packet):
        return _frame(packet)
    cacheable = deflate.cacheable
    if cacheable:
        frame: bytes | None = getattr(packet, "deflate_cache", None)
        if frame is not None:
            return frame
    data = encode_packet(packet)
    opcode, payload = (
        (OP_TEXT, data.encode("utf-8")) if isinstance(data, str) else (OP_BINARY, data)
    )
    if len(payload) < deflate.threshold:
        frame = _frame(packet)
    else:
        compressed = deflate_message(payload, deflate.level, deflate.server_window_bits)
        frame = encode_frame(opcode, compressed, rsv1=True)
    if cacheable:
        object.__setattr__(packet, "deflate_cache", frame)
    return frame


class WebSocketTransport:
    """WebSocket, server side: one packet per frame, binary messages as binary frames
    (compressed with permessage-deflate when the channel agreed it: see ``deflate``)."""

    name = Transport.WEBSOCKET

    def __init__(self, channel: WebSocketChannel) -> None:
        self.channel = channel
        self.closed = False
        self._final: Packet | None = None
        self._frames = writer = channel.frame_writer()
        self._deflate = None if writer is None else writer.deflate

    async def wait_writable(self) -> None:
        """A WebSocket is always writable (backpressure comes from ``send``)."""
        await trio.lowlevel.checkpoint()

    def frame(self, packet: Packet) -> bytes:
        """The frame of ``packet`` on this WebSocket (compressed when agreed and allowed),
        encoded once per packet and kept on it."""
        if self._deflate is None:
            frame = packet.frame_cache
            return _frame(packet) if frame is None else frame
        return _deflated_frame(packet, self._deflate)

    def try_send(self, packets: Sequence[Packet], on_unsent: Callable[[int], None]) -> int | None:
        """Write the packets now, from the calling task, if the channel can (see
        :meth:`FrameWriter.try_write`): each its own frame.

        Returns:
            None if nothing was written (the caller queues the packets for :meth:`send`);
            else how many bytes the socket did not take: the channel keeps them and the next
            :meth:`send` (even of no packets) writes them first.

        Never blocks, never checkpoints.
        """
        writer = self._frames
        if writer is None or self.closed:
            return None
        if len(packets) == 1:
            return writer.try_write((self.frame(packets[0]),), on_unsent)
        return writer.try_write([self.frame(packet) for packet in packets], on_unsent)

    async def send(self, packets: Sequence[Packet]) -> None:
        """Write each packet as its own frame, in its own write (many at once: in one).
        With no packets, write what :meth:`try_send` left.

        Cancellation: a cancelled send may have written some of the packets.
        """
        writer = self._frames
        if writer is None:
            for packet in packets:
                await self.channel.send_message(encode_packet(packet))
            return
        if not packets:
            await writer.send_frames(b"")
            return
        # A few packets: one write each, which naive clients that read one frame per
        # network read (the public protocol test suite's) cannot lose. A backlog: one
        # write for all, which is what keeps a busy connection cheap.
        if len(packets) < COALESCE_FROM:
            for packet in packets:
                await writer.send_frames(self.frame(packet))
        else:
            await writer.send_frames(b"".join([self.frame(packet) for packet in packets]))

    def message_ready(self) -> bool:
        """Whether the next message is already read (see ``WebSocketChannel``)."""
        return self.channel.message_ready()

    async def receive(self) -> Sequence[Packet]:
        """Next packet, as a one-element batch.

        Raises:
            ConnectionClosed: the WebSocket is closed.
            RemoteProtocolError: the frame is not a valid packet.
        """
        return (decode_packet(await self.channel.get_message()),)

    def stop_receiving(self) -> None:
        """Nothing to do: the WebSocket is read only by the session's receive task."""

    def close(self, final: Packet | None) -> None:
        """Mark closed; the frames (if any) are written by :meth:`aclose`."""
        self.closed = True
        self._final = final

    async def aclose(self) -> None:
        """Send the final packet if one was given, then close the WebSocket.

        Bounded: gives up after one second each; shielded so that closing always happens.
        """
        if self._final is None and self.channel.bounded_close:
            await self.channel.aclose()  # bounded and shielded by itself
            return
        with trio.CancelScope(shield=True):
            final = self._final
            if final is not None:
                with trio.move_on_after(1.0), suppress(ConnectionClosed):
                    await self.channel.send_message(encode_packet(final))
            with trio.move_on_after(1.0):
                await self.channel.aclose()


class TrioWebSocketChannel:
    """:class:`WebSocketChannel` over a ``trio_websocket.WebSocketConnection``."""

    bounded_close = False

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws
        self._closed_exc = trio_websocket.ConnectionClosed

    async def get_message(self) -> str | bytes:
        try:
            message: str | bytes = await self._ws.get_message()
        except self._closed_exc as exc:
            raise ConnectionClosed("transport close") from exc
        return message

    async def send_message(self, message: str | bytes) -> None:
        try:
            await self._ws.send_message(message)
        except self._closed_exc as exc:
            raise ConnectionClosed("transport close") from exc

    async def aclose(self) -> None:
        await self._ws.aclose()

    def frame_writer(self) -> None:
        """trio-websocket frames each message itself."""
        return None

    def message_ready(self) -> bool:
        """trio-websocket's reader task queues messages: not told here."""
        return False
