"""The client's queue of packets to send, and how it is cut into polling payloads."""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from ..protocol.engineio import RECORD_SEPARATOR, Packet, PacketType, encode_payload

__all__ = ["Outbox", "take_batch"]


class Outbox:
    """Packets to send, in order, for one session.

    The application's MESSAGEs take one of ``size`` slots each, given back once the
    transport has written them: that is the send queue's bound. Control packets (PONG,
    CLOSE) take no slot, so answering a ping never waits behind the application.

    Args:
        size: how many MESSAGEs may wait (or be in flight) at once; at least 1.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._drained: trio.Event | None = None
        self._send, self._receive = trio.open_memory_channel[Packet](math.inf)
        self._slots = trio.Semaphore(size)
        self._carry: Packet | None = None
        #: packets queued and not yet given back with :meth:`sent` (0: the writer is idle
        #: and nothing waits, so a packet may be written at once, ahead of nothing).
        self.queued = 0

    async def reserve(self) -> None:
        """Wait for a free slot; follow with :meth:`put_reserved` or :meth:`unreserve`.

        Cancellation:
            If cancelled, no slot was taken.
        """
        await self._slots.acquire()

    def reserve_nowait(self) -> None:
        """Take a free slot.

        Raises:
            trio.WouldBlock: none is free.
        """
        self._slots.acquire_nowait()

    def unreserve(self) -> None:
        """Give back a slot taken by :meth:`reserve` without queuing anything."""
        self._slots.release()
        self._check_drained()

    def _check_drained(self) -> None:
        if self._drained is not None and self._slots.value == self.size:
            self._drained.set()

    async def wait_drained(self) -> None:
        """Block until every MESSAGE queued so far has been written."""
        while self._slots.value < self.size:
            self._drained = trio.Event()
            await self._drained.wait()
        await trio.lowlevel.checkpoint()

    def put_reserved(self, packet: Packet) -> None:
        """Queue a MESSAGE for which a slot was reserved."""
        self.queued += 1
        self._send.send_nowait(packet)

    def put_control(self, packet: Packet) -> None:
        """Queue a control packet (no slot needed; never blocks)."""
        self.queued += 1
        self._send.send_nowait(packet)

    async def get(self) -> Packet:
        """The next packet to send.

        Cancellation:
            Safe: a cancelled call takes nothing.
        """
        if self._carry is not None:
            packet, self._carry = self._carry, None
            await trio.lowlevel.checkpoint()
            return packet
        return await self._receive.receive()

    def get_batch(self, first: Packet, max_payload: int) -> tuple[list[Packet], str]:
        """``first`` and the queued packets that fit with it in one polling payload.

        Returns:
            The packets and their encoded payload (see :func:`take_batch`).
        """
        batch, body, self._carry = take_batch(first, self._receive.receive_nowait, max_payload)
        return batch, body

    def sent(self, batch: list[Packet]) -> None:
        """Give back the slots of a batch the transport has written."""
        self.queued -= len(batch)
        for packet in batch:
            if packet.type is PacketType.MESSAGE:
                self._slots.release()
        self._check_drained()


def take_batch(
    first: Packet, receive_nowait: Callable[[], Packet], max_payload: int
) -> tuple[list[Packet], str, Packet | None]:
    """Gather queued packets into one polling payload of at most ``max_payload`` bytes.

    ``first`` is always included, even if alone it is larger. A CLOSE packet ends the
    batch (nothing is sent after it).

    Args:
        first: the packet that starts the batch.
        receive_nowait: takes the next queued packet, raising ``trio.WouldBlock`` if none.
        max_payload: the server's ``maxPayload``.

    Returns:
        The packets, the encoded payload, and a packet taken from the queue that did not
        fit (it starts the next batch), or None.
    """
    batch = [first]
    pieces = [encode_payload((first,))]
    size = len(pieces[0].encode())
    carry: Packet | None = None
    while batch[-1].type is not PacketType.CLOSE:
        try:
            packet = receive_nowait()
        except trio.WouldBlock:
            break
        piece = encode_payload((packet,))
        piece_size = len(piece.encode())
        if size + 1 + piece_size > max_payload:
            carry = packet
            break
        batch.append(packet)
        pieces.append(piece)
        size += 1 + piece_size
    return batch, RECORD_SEPARATOR.join(pieces), carry
