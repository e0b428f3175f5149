"""A small synchronization primitive that idle connections can afford."""

from __future__ import annotations

import trio

__all__ = ["Slots"]


class Slots:
    """A FIFO counting semaphore: ``trio.Semaphore``'s behaviour at a fraction of its memory
    (three slots instead of a semaphore, a parking lot and its ordered dict, about 300 bytes
    in every socket). The parking lot exists only while tasks wait. ``Slots(1)`` is a strict
    FIFO lock (``async with``): a newcomer never overtakes a waiting task.

    Args:
        total: how many may be held at once (at least 1).
    """

    __slots__ = ("_free", "_total", "_waiting")

    def __init__(self, total: int) -> None:
        self._total = total
        self._free = total
        self._waiting: trio.lowlevel.ParkingLot | None = None

    @property
    def value(self) -> int:
        """How many are free now."""
        return self._free

    def acquire_nowait(self) -> None:
        """Take one if one is free and nobody waits.

        Raises:
            trio.WouldBlock: none is free (or others wait for one).
        """
        if self._free <= 0 or self._waiting:
            raise trio.WouldBlock
        self._free -= 1

    async def acquire(self) -> None:
        """Take one, after the tasks already waiting.

        Blocks while none is free. Cancellation: if cancelled, nothing was taken.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self.acquire_nowait()
        except trio.WouldBlock:
            if self._waiting is None:
                self._waiting = trio.lowlevel.ParkingLot()
            await self._waiting.park()  # release() hands its slot over to us
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        """Give one back: to the first waiting task if any.

        Raises:
            ValueError: more were released than taken.
        """
        waiting = self._waiting
        if waiting:
            waiting.unpark()  # the slot goes straight to that task
            if not waiting:
                self._waiting = None
            return
        if self._free >= self._total:
            raise ValueError("released more than acquired")
        self._free += 1
        self._waiting = None
