"""At-least-once delivery (the client's ``retries``): emits go one at a time, each sent again
until the server acknowledges it or the tries run out, as socket.io-client's ``retries``.

:class:`RetryLane` is composed into a namespace socket, which gives it three functions:
take an ack id, forget one, and send a packet (buffered while disconnected). Its task runs
only when ``retries`` is set: no idle task for a feature not in use.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._acks import AckSlot, unpack_ack
from .._emitter import Callback
from .._handlers import Handler
from ..protocol.errors import AckTimeoutError, ConnectionClosed
from ..protocol.socketio import Packet, PacketType

__all__ = ["RetryLane"]

log = logging.getLogger("trio_sio.client")

_Item = tuple[tuple[Any, ...], Callback | None, trio.MemorySendChannel[Any] | None]


class RetryLane:
    """The queue of emits sent with retries, for one namespace socket.

    Args:
        namespace: the namespace the packets go to.
        retries: how many times an emit is sent again (at most ``retries + 1`` tries).
        ack_timeout: seconds each try waits for the ack.
        size: emits that may wait for their turn (then :meth:`put` blocks).
        new_ack: takes an ack id and its slot (raises ConnectionClosed once closed).
        ack_done: forgets an ack id.
        put: sends a packet, buffered while disconnected.
    """

    def __init__(
        self,
        namespace: str,
        *,
        retries: int,
        ack_timeout: float,
        size: int,
        new_ack: Callable[[], tuple[int, AckSlot]],
        ack_done: Callable[[int], None],
        put: Callable[[Packet], Awaitable[None]],
    ) -> None:
        self._namespace = namespace
        self._retries = retries
        self._ack_timeout = ack_timeout
        self._size = size
        self._new_ack = new_ack
        self._ack_done = ack_done
        self._put = put
        self.reopen()

    def reopen(self) -> None:
        """A fresh queue (for a client entered again)."""
        self._send, self._recv = trio.open_memory_channel[_Item](self._size)

    def close(self) -> None:
        """Take no more emits; the waiting ones are dropped with the task."""
        self._send.close()

    async def put(
        self, data: list[Any], callback: Callback | None, result: trio.MemorySendChannel[Any] | None
    ) -> None:
        """Queue an emit: ``callback(err, *args)`` and/or ``result`` get its outcome.

        Raises:
            ConnectionClosed: the lane is closed.

        Blocks: while ``size`` emits wait. Cancellation: if cancelled, nothing was queued.
        """
        try:
            await self._send.send((tuple(data), callback, result))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ConnectionClosed("client is closed") from None

    async def run(self) -> None:
        """Send the queued emits one at a time, each until acked or out of tries.

        Cancellation: stops; the emit under way gets no outcome.
        """
        async for data, callback, result in self._recv:
            outcome = await self._deliver(data)
            if isinstance(outcome, list):
                value: Any = unpack_ack(outcome)
                args: tuple[Any, ...] = tuple(outcome)
                error = None
            else:
                value, args, error = outcome, (), outcome
            if result is not None:
                result.send_nowait(value)
            if callback is not None:
                try:
                    await Handler(callback)(error, *args)
                except Exception:
                    log.exception("%s: ack callback failed", self._namespace)

    async def _deliver(self, data: tuple[Any, ...]) -> Any:
        """The ack's arguments (a list), or the exception that ended the tries."""
        outcome: Any = AckTimeoutError(f"no ack after {self._retries + 1} attempts")
        for _ in range(self._retries + 1):
            try:
                ack_id, slot = self._new_ack()
            except ConnectionClosed as exc:
                return exc
            try:
                with trio.move_on_after(self._ack_timeout):
                    await self._put(Packet(PacketType.EVENT, self._namespace, list(data), ack_id))
                    return await slot.wait()
            except ConnectionClosed as exc:
                return exc
            finally:
                self._ack_done(ack_id)
        return outcome
