"""What the Engine.IO client received and not yet handed out, and who reads the WebSocket.

On polling, the client's GET loop fills the inbox, waiting while it is full. On WebSocket,
either a task of the client reads (the same way), or, with ``read_in_receive``, the task
that receives reads the WebSocket itself whenever the inbox is empty: one read's packets,
then they are handed out without a task switch (see :meth:`Inbox.take`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import trio

from ..protocol.errors import ConnectionClosed

__all__ = ["Inbox"]


class Inbox:
    """Received MESSAGE data of one session, in order.

    Args:
        size: how many messages the GET loop (or the client's reading task) may leave
            here before it waits; a read adds at most what it brought.

    Attributes:
        direct: the WebSocket is read by the task that receives (see :meth:`take`).
        wakes_on_close: a read under way ends when the WebSocket's stream is closed.
        read_ended: the WebSocket will bring nothing more.
    """

    def __init__(self, size: int) -> None:
        self._items: deque[str | bytes] = deque()
        self._size = max(1, size)
        self._arrived = trio.lowlevel.ParkingLot()
        self._parked = 0  # tasks parked in _arrived (checked before waking them: hot path)
        self._space = trio.lowlevel.ParkingLot()
        self._ended = False
        self._reading = False
        self._read_scope: trio.CancelScope | None = None
        self.direct = False
        self.wakes_on_close = False
        self.read_ended = False

    def put(self, data: str | bytes) -> None:
        """Add a received message. Never blocks (the readers bound what they add)."""
        self._items.append(data)
        if self._parked:
            self._arrived.unpark_all()

    def go_direct(self, wakes_on_close: bool) -> None:
        """From now on the task that receives reads the WebSocket; ``wakes_on_close``: a
        read under way ends when the session closes the WebSocket's stream (see
        :meth:`read`)."""
        self.direct = True
        self.wakes_on_close = wakes_on_close
        self._arrived.unpark_all()

    def end(self) -> None:
        """The session ended: stop a read under way; receivers get what is left, then
        ConnectionClosed."""
        self._ended = True
        if self._read_scope is not None:
            self._read_scope.cancel()
        self._arrived.unpark_all()
        self._space.unpark_all()

    async def wait_room(self) -> None:
        """Block while the inbox is full (and the session not ended).

        Cancellation: safe; it only waits.
        """
        while len(self._items) >= self._size and not self._ended:
            await self._space.park()

    def take_nowait(self, reason: Callable[[], str]) -> str | bytes:
        """The next message if one is here.

        Raises:
            trio.WouldBlock: none is here.
            ConnectionClosed: none is here and the session ended (``reason()``).
        """
        if self._items:
            data = self._items.popleft()
            if not self.direct:
                self._space.unpark_all()
            return data
        if self._ended:
            raise ConnectionClosed(reason())
        raise trio.WouldBlock

    async def take(
        self, reason: Callable[[], str], read: Callable[[], Awaitable[None]]
    ) -> str | bytes:
        """The next message; when none is here and the WebSocket is read directly, call
        ``read`` (one read, see :meth:`read`) in this task, else wait.

        Raises:
            ConnectionClosed: the session ended and every message was taken.

        Cancellation: safe: a message is either returned or stays here.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            if self._items:
                data = self._items.popleft()
                if not self.direct:
                    self._space.unpark_all()
                if not waited:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return data
            if self._ended:
                raise ConnectionClosed(reason())
            if self.direct and not self._reading and not self.read_ended:
                await read()  # a checkpoint, or a wait
            else:
                self._parked += 1
                try:
                    await self._arrived.park()
                finally:
                    self._parked -= 1
            waited = True

    async def read(self, read_once: Callable[[], Awaitable[None]]) -> None:
        """Run ``read_once`` (one read of the WebSocket, its packets handled) as the only
        reader. Unless :attr:`wakes_on_close` (closing the stream wakes a read under way),
        the read runs in a cancel scope that :meth:`end` cancels: it stops when the session
        ends even on a stream that does not notice being closed by another task.

        Raises:
            what ``read_once`` raises; after an ``Exception`` nothing more is read.

        Cancellation: safe; nothing read is lost.
        """
        self._reading = True
        try:
            if self.wakes_on_close:  # no cancel scope to make (the hot path)
                await read_once()
            else:
                with trio.CancelScope() as self._read_scope:
                    await read_once()
        except Exception:
            self.read_ended = True
            raise
        finally:
            self._reading = False
            self._read_scope = None
            if self._parked:
                self._arrived.unpark_all()
