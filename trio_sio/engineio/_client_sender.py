"""The sending half of the Engine.IO client: the bounded send queue, the write at once from
the sending task when the WebSocket is idle, and the send loop that writes everything else
(POST batches on polling, frames on WebSocket).

:class:`Sender` is composed into :class:`~trio_sio.engineio.client.EngineClient`, which
gives it the functions it needs (the current transport, whether the session is open, how to
end it); it reaches nothing else of the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Final

import trio

from ..protocol.engineio import CloseReason, Packet, PacketType
from ..protocol.errors import ConnectionClosed
from ._client_transports import TRANSPORT_ERRORS, ClientWebSocket, PollingTransport
from ._outbox import Outbox

__all__ = ["Sender"]

logger = logging.getLogger("trio_sio.engineio.client")

#: Queued (by identity) when a WebSocket kept bytes of a frame written at once: the send
#: loop then writes them. Never sent itself.
FLUSH: Final = Packet(PacketType.NOOP, "flush")


class Sender:
    """What one session sends, in order.

    Args:
        size: MESSAGEs that may be queued (or in flight) at once.
        transport: the session's current transport (None before the handshake).
        check_open: raises ConnectionClosed unless the session accepts packets.
        reason: why the session ended (for the ConnectionClosed of a waiting send).
        finish: ends the session, for a write that failed.
        max_payload: the server's ``maxPayload`` (the largest POST body).

    Attributes:
        lock: held while a batch is written; the upgrade takes it to switch transports.
        close_sent: set once the CLOSE packet was written (or the session ended).
    """

    def __init__(
        self,
        size: int,
        *,
        transport: Callable[[], PollingTransport | ClientWebSocket | None],
        check_open: Callable[[], None],
        reason: Callable[[], str],
        finish: Callable[[CloseReason], None],
        max_payload: Callable[[], int],
    ) -> None:
        self.outbox = Outbox(size)
        self.lock = trio.Lock()
        self.close_sent = trio.Event()
        self._transport = transport
        self._check_open = check_open
        self._reason = reason
        self._finish = finish
        self._max_payload = max_payload
        self._group_lock = trio.Lock()  # one multi-message reservation at a time
        self._reserving: set[trio.CancelScope] = set()  # senders waiting for a slot
        self._ended = False

    def end(self) -> None:
        """The session ended: waiting sends raise ConnectionClosed, nothing is written at
        once any more."""
        self._ended = True
        for scope in self._reserving:  # a finished session frees no more slots
            scope.cancel()
        self.close_sent.set()

    async def send(self, packets: Sequence[Packet]) -> None:
        """Queue ``packets`` as one unit (nothing lands between them), or write them at
        once when the WebSocket is idle.

        Raises:
            ConnectionClosed: the session is closed or closing.
            ValueError: more packets than the send queue holds.

        Cancellation: if cancelled, none of them was queued.
        """
        outbox = self.outbox
        if len(packets) > outbox.size:
            raise ValueError(f"{len(packets)} messages exceed the send queue ({outbox.size})")
        self._check_open()
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.write_now(packets):
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        async with self._group_lock:
            taken = 0
            try:
                for _ in packets:
                    await self._reserve()
                    taken += 1
                self._check_open()
            except BaseException:
                for _ in range(taken):
                    outbox.unreserve()
                raise
        for packet in packets:
            outbox.put_reserved(packet)

    def send_nowait(self, packets: Sequence[Packet]) -> None:
        """Like :meth:`send`, raising ``trio.WouldBlock`` unless all fit right now."""
        self._check_open()
        if self.write_now(packets):
            return
        outbox = self.outbox
        taken = 0
        try:
            for _ in packets:
                outbox.reserve_nowait()
                taken += 1
        except trio.WouldBlock:
            for _ in range(taken):
                outbox.unreserve()
            raise
        for packet in packets:
            outbox.put_reserved(packet)

    async def _reserve(self) -> None:
        """Take a slot of the send queue; raise ConnectionClosed if the session ends first.

        Cancellation: if cancelled, no slot was taken.
        """
        with trio.CancelScope() as scope:
            self._reserving.add(scope)
            try:
                await self.outbox.reserve()
            finally:
                self._reserving.discard(scope)
        if scope.cancelled_caught:
            raise ConnectionClosed(self._reason())

    def write_now(self, packets: Sequence[Packet]) -> bool:
        """Write ``packets`` at once from the calling task, when the session is on a
        WebSocket and nothing is queued or being written (else False: queue them). Never
        blocks, never checkpoints."""
        transport = self._transport()
        if (
            type(transport) is not ClientWebSocket
            or self.outbox.queued
            or self.lock.locked()
            or self._ended
        ):
            return False
        kept = transport.try_write([transport.frame(packet) for packet in packets])
        if kept is None:
            return False
        if kept:
            self.flush_soon()
        return True

    def flush_soon(self) -> None:
        """Have the send loop write what the WebSocket kept."""
        self.outbox.put_control(FLUSH)

    async def run(self) -> None:
        """The send loop: write what is queued, in order, until the CLOSE packet went out or
        the session ended (a failed write ends it)."""
        outbox = self.outbox
        try:
            while True:
                first = await outbox.get()
                async with self.lock:
                    transport = self._transport()
                    if isinstance(transport, PollingTransport):
                        batch, body = outbox.get_batch(first, self._max_payload())
                        await transport.post(body)
                    else:
                        assert transport is not None
                        batch = [first]
                        if first is FLUSH:
                            await transport.flush()
                        else:
                            await transport.send(first)
                outbox.sent(batch)
                if batch[-1].type is PacketType.CLOSE:
                    self.close_sent.set()
                    return
        except ConnectionClosed:
            self._finish(CloseReason.TRANSPORT_CLOSE)
        except TRANSPORT_ERRORS as exc:
            logger.info("sending failed: %r", exc)
            self._finish(CloseReason.TRANSPORT_ERROR)
