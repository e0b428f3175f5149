"""Dead-peer detection for the Engine.IO client, as a Trio deadline."""

from __future__ import annotations

import trio

__all__ = ["HeartbeatWatchdog"]


class HeartbeatWatchdog:
    """A deadline that moves forward each time the peer shows a sign of life.

    The Engine.IO v4 server pings every ``pingInterval``; a client that hears nothing at
    all for ``pingInterval + pingTimeout`` considers the server gone. The receive path
    calls :meth:`reset` for every packet, which only notes the time (a packet costs no
    deadline update); :meth:`wait_expired` sleeps until the deadline the last sign of life
    gives, and sleeps again if one came meanwhile: at most one wake-up per ``timeout``.

    Args:
        timeout: seconds of silence allowed; the first deadline is ``timeout`` from now.
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._last = trio.current_time()

    @property
    def timeout(self) -> float:
        """The allowed silence, in seconds."""
        return self._timeout

    @property
    def deadline(self) -> float:
        """The current deadline, on Trio's clock."""
        return self._last + self._timeout

    def reset(self) -> None:
        """Note a sign of life: the deadline becomes ``timeout`` from now."""
        self._last = trio.current_time()

    async def wait_expired(self) -> None:
        """Block until the deadline passes without a :meth:`reset`; may be called once.

        Cancellation:
            Cancelling the caller simply stops the wait.
        """
        # Not polling: one wake-up per deadline, sleeping again only if it moved.
        while trio.current_time() < self.deadline:  # noqa: ASYNC110
            await trio.sleep_until(self.deadline)
