"""How a namespace socket's packets reach the connection: written at once when nothing waits
before them and the connection takes them without waiting, else through the namespace's
send buffer and one flush task.

:class:`Outbox` is composed into a namespace socket. It works on the socket's
:class:`~trio_sio.client._namespace.NamespaceState` (its current namespace connection, its
send buffer and its ack bookkeeping), given explicitly, and encodes with ``encode``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from ..protocol.errors import ConnectionClosed
from ..protocol.socketio import Packet
from ._link import Link
from ._namespace import NamespaceState
from ._queues import Outgoing

__all__ = ["Outbox"]

log = logging.getLogger("trio_sio.client")


class Outbox:
    """Sends the packets of one namespace socket, in order.

    Args:
        state: the socket's connection state.
        encode: encodes a packet with the client's parser.
        name: how log messages name the socket (its ``repr``).
    """

    __slots__ = ("_encode", "_flush_blocked", "_name", "_state")

    def __init__(
        self,
        state: NamespaceState,
        encode: Callable[[Packet], list[str | bytes]],
        name: Callable[[], str],
    ) -> None:
        self._state = state
        self._encode = encode
        self._name = name
        self._flush_blocked = False  # the flush task waits for room to send the first packet

    def send_volatile(self, packet: Packet, compress: bool = True) -> bool:
        """Write a volatile packet now, behind what this socket has buffered, if the
        connection takes all of it without waiting; else drop it (as the JS client drops a
        volatile packet when the transport is not writable). Returns whether it went."""
        state = self._state
        link = state.link
        if link is None or link.closed.is_set() or self._flush_blocked:
            return False
        try:
            if not self._flush_now(link):
                return False
            link.send_nowait(self._encode(packet), compress)
        except (trio.WouldBlock, ConnectionClosed):
            return False
        if packet.id is not None:
            state.sent_acks.add(packet.id)
        return True

    def _flush_now(self, link: Link) -> bool:
        """Hand buffered packets to ``link`` while it takes them without waiting; returns
        whether the buffer is empty. Only while the flush task is not blocked on a send.

        Raises:
            ConnectionClosed: the link ended.
        """
        buffer = self._state.buffer
        while (item := buffer.peek()) is not None:
            try:
                link.send_nowait(item.frames, item.compress)
            except trio.WouldBlock:
                return False
            self._sent(item)
        return True

    def _sent(self, item: Outgoing) -> None:
        state = self._state
        state.buffer.remove(item)
        if item.ack_id is not None and item.ack_id in state.pending:
            state.sent_acks.add(item.ack_id)

    async def put(self, packet: Packet, compress: bool = True, *, schedule: bool = True) -> None:
        """Send ``packet`` at once when nothing is buffered before it and the connection
        takes it without waiting (no task switch); else buffer it for the flush task.

        With ``schedule=False`` a packet written at once costs no schedule point either: for
        a caller that waits right after (for the packet's ack), so the wait is the one.

        Raises:
            ConnectionClosed: the buffer refuses packets (the namespace is closed).

        Blocks: while the buffer is full. Cancellation: if cancelled, the packet was not
        queued.
        """
        frames = tuple(self._encode(packet))
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._send_now(frames, packet.id, compress):
            if schedule:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return
        await self._state.buffer.put(Outgoing(frames, packet.id, compress))

    def _send_now(
        self, frames: tuple[str | bytes, ...], ack_id: int | None, compress: bool
    ) -> bool:
        """Write ``frames`` now if nothing is buffered before them and the link takes them
        without waiting; returns whether they went. Never blocks."""
        state = self._state
        link = state.link
        if link is None or self._flush_blocked or len(state.buffer) or link.closed.is_set():
            return False
        try:
            link.send_nowait(frames, compress)
        except (trio.WouldBlock, ConnectionClosed):
            return False
        if ack_id is not None:
            state.sent_acks.add(ack_id)
        return True

    async def run(self) -> None:
        """Move buffered packets to the connection, in order, whenever connected (the
        flush task).

        A packet leaves the buffer only once the connection has taken it, so the buffer
        holds exactly ``buffer_size`` packets while disconnected, and a packet whose send a
        disconnection cut short is sent first on the next connection.

        Cancellation: stops; a packet whose send was cut short stays first in the buffer.
        """
        state = self._state
        while True:
            changed = state.changed
            link = state.link
            if link is None or link.closed.is_set():
                await changed.wait()
                continue
            try:
                if self._flush_now(link):
                    await state.buffer.wait_item()
                    continue
            except ConnectionClosed:
                await link.closed.wait()  # the session is ending: wait for the next one
                continue
            item = state.buffer.peek()
            assert item is not None
            self._flush_blocked = True
            try:
                await link.send(item.frames, item.compress)
            except ConnectionClosed:
                await link.closed.wait()
                continue
            except ValueError:  # more binary attachments than the send queue holds
                log.exception("%s: a packet cannot be sent; dropped", self._name())
                state.buffer.remove(item)
                if item.ack_id is not None:
                    state.fail_acks({item.ack_id}, "packet too large")
                continue
            finally:
                self._flush_blocked = False
            self._sent(item)
