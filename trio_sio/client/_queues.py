"""The two queues of a client namespace socket: packets to send, and events to handle.

Both are small deques with parking lots rather than memory channels, because the socket needs
what a channel does not offer: look at the next packet without taking it (it stays buffered
until the connection has accepted it), refuse new packets while the old ones drain, and bound
the server's events without ever dropping a lifecycle event behind them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import trio

from ..protocol.errors import ConnectionClosed
from ..protocol.socketio import Packet

__all__ = ["EventQueue", "Incoming", "Outgoing", "SendBuffer"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, eq=False)
class Outgoing:
    """One encoded packet waiting to be sent, with its ack id (None if it wants no ack) and
    whether it may be compressed."""

    frames: tuple[str | bytes, ...]
    ack_id: int | None
    compress: bool = True


@dataclass(frozen=True, slots=True, eq=False)
class Incoming(Generic[T]):
    """One thing to hand to the handlers: an EVENT packet, or a lifecycle event.

    Attributes:
        kind: ``"event"``, or the lifecycle name (``"connect"``, ``"disconnect"``, ...).
        packet: the EVENT packet (None for a lifecycle event).
        args: the lifecycle handlers' arguments.
        link: the namespace connection the event came on (where its ack goes).
    """

    kind: str
    packet: Packet | None
    args: tuple[Any, ...]
    link: T | None


class SendBuffer:
    """Packets of one namespace waiting to be sent, in order, at most ``size`` of them.

    The sending task looks at the first packet with :meth:`peek` and removes it with
    :meth:`remove` once the connection has taken it, so a packet whose sending was cut short
    by a disconnection is still here, first, for the next connection.
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._items: deque[Outgoing] = deque()
        self._refused: str | None = None
        self._space = trio.lowlevel.ParkingLot()
        self._arrived = trio.lowlevel.ParkingLot()
        self._emptied = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def refused(self) -> str | None:
        """Why new packets are refused (the ConnectionClosed reason), or None."""
        return self._refused

    async def put(self, item: Outgoing) -> None:
        """Append a packet, waiting while the buffer is full.

        Raises:
            ConnectionClosed: the buffer refuses packets (now, or while this waited).

        Cancellation: if cancelled, the packet was not queued.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._refused is not None:
                raise ConnectionClosed(self._refused)
            if len(self._items) < self.size:
                break
            await self._space.park()
        self._items.append(item)
        self._arrived.unpark_all()
        await trio.lowlevel.cancel_shielded_checkpoint()

    def peek(self) -> Outgoing | None:
        """The first packet, left in place (None if there is none)."""
        return self._items[0] if self._items else None

    def remove(self, item: Outgoing) -> None:
        """Remove ``item`` if it is still the first packet (it was sent)."""
        if self._items and self._items[0] is item:
            self._items.popleft()
            self._space.unpark_all()
            if not self._items:
                self._emptied.unpark_all()

    async def wait_item(self) -> None:
        """Block until the buffer holds a packet.

        Cancellation: safe; it only waits.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._items:
            await self._arrived.park()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_empty(self) -> None:
        """Block until every packet has been sent or discarded.

        Cancellation: safe; it only waits.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._items:
            await self._emptied.park()
        await trio.lowlevel.cancel_shielded_checkpoint()

    def seal(self, reason: str) -> None:
        """Refuse new packets with ConnectionClosed(reason); waiting puts raise it too. The
        packets already here stay, to be sent."""
        self._refused = reason
        self._space.unpark_all()

    def close(self, reason: str) -> list[Outgoing]:
        """Seal the buffer and empty it; returns the packets it held (never to be sent)."""
        self.seal(reason)
        items = list(self._items)
        self._items.clear()
        self._emptied.unpark_all()
        return items

    def reopen(self) -> None:
        """Accept packets again (after :meth:`seal` or :meth:`close`)."""
        self._refused = None


class EventQueue(Generic[T]):
    """What one namespace socket has received and not yet handed to its handlers, in order.

    At most ``size`` server events wait: :meth:`put_event` blocks beyond that, which stops
    the client reading from its connection (backpressure). Lifecycle events are never
    refused or delayed, so a ``"disconnect"`` handler always runs.
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._items: deque[Incoming[T]] = deque()
        self._events = 0
        self._closed = False
        self._space = trio.lowlevel.ParkingLot()
        self._arrived = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._items)

    async def put_event(self, item: Incoming[T]) -> None:
        """Queue a server event; blocks while ``size`` of them are waiting. Dropped if the
        queue is closed.

        Cancellation: if cancelled, the event was not queued.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._events >= self.size and not self._closed:
            await self._space.park()
        if not self._closed:
            self._items.append(item)
            self._events += 1
            self._arrived.unpark_all()
        await trio.lowlevel.cancel_shielded_checkpoint()

    def put_lifecycle(self, item: Incoming[T]) -> None:
        """Queue a lifecycle event (never blocks; dropped if the queue is closed)."""
        if not self._closed:
            self._items.append(item)
            self._arrived.unpark_all()

    async def get(self) -> Incoming[T] | None:
        """The next item, waiting for one; None once the queue is closed and empty.

        Cancellation: safe; a cancelled call takes nothing.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._items:
            if self._closed:
                return None
            await self._arrived.park()
        item = self._items.popleft()
        if item.kind == "event":
            self._events -= 1
            self._space.unpark_all()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return item

    def close(self) -> None:
        """Take nothing more; :meth:`get` returns what is queued, then None."""
        self._closed = True
        self._arrived.unpark_all()
        self._space.unpark_all()
