"""How the handlers of one socket take turns, the same on the server and on the client.

- **A bound.** At most ``limit`` handlers of a socket are in flight at once
  (``max_concurrent_handlers``). Once it is reached, the socket's reading waits for one to
  finish: backpressure on the peer, instead of a queue without end.
- **An ordered lane.** Handlers registered as ordered (``ordered_handlers=True``, or
  ``on(event, ordered=True)``) run one at a time, in arrival order: each takes a
  :class:`Turn` when its event arrives and waits for the previous turn to end. Waiting for
  its turn, an ordered event counts as in flight.
"""

from __future__ import annotations

import trio

from ._sync import Slots

__all__ = ["Lanes", "Turn"]


class Turn:
    """A place in the ordered lane: wait for :meth:`wait` (the previous turn ended), run,
    then :meth:`end`."""

    __slots__ = ("_mine", "_previous")

    def __init__(self, previous: trio.Event | None) -> None:
        self._previous = previous
        self._mine = trio.Event()

    async def wait(self) -> None:
        """Block until the previous turn has ended. Cancellation: safe; it only waits."""
        if self._previous is not None:
            await self._previous.wait()
            self._previous = None

    def end(self) -> None:
        """Let the next turn go (call it however the handler ended)."""
        self._mine.set()


class Lanes(Slots):
    """The bound and the ordered lane of one socket's handlers: a FIFO counting semaphore
    of ``limit`` places in flight (:meth:`acquire`, :meth:`acquire_nowait`,
    :meth:`release`: see :class:`~trio_sio._sync.Slots`), and the lane's :meth:`turn`.

    Args:
        limit: handlers in flight at once (at least 1).
    """

    __slots__ = ("_tail",)

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self._tail: trio.Event | None = None  # set when the last ordered turn ends

    @property
    def in_flight(self) -> int:
        """Handlers in flight (running, or waiting for their turn)."""
        return self._total - self._free

    def turn(self) -> Turn:
        """The next place in the ordered lane (take it in arrival order). Never blocks."""
        turn = Turn(self._tail)
        self._tail = turn._mine
        return turn

    def reset(self) -> None:
        """Forget the ordered lane (after the socket's handlers were all cancelled)."""
        self._tail = None
