"""Dead-peer detection for the Engine.IO client, as a Trio deadline."""

from __future__ import annotations

import trio

__all__ = ["HeartbeatWatchdog"]


class HeartbeatWatchdog:
    """A deadline that moves forward each time the peer shows a sign of life.

    The Engine.IO v4 server pings every ``pingInterval``; a client that hears nothing at
    all for ``pingInterval + pingTimeout`` considers the server gone. The receive path
    calls :meth:`reset` for every packet; :meth:`wait_expired` returns once the deadline
    passes. The deadline is a cancel scope's, so there is no periodic wake-up.

    Args:
        timeout: seconds of silence allowed; the first deadline is ``timeout`` from now.
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._scope = trio.CancelScope(deadline=trio.current_time() + timeout)

    @property
    def timeout(self) -> float:
        """The allowed silence, in seconds."""
        return self._timeout

    @property
    def deadline(self) -> float:
        """The current deadline, on Trio's clock."""
        return self._scope.deadline

    def reset(self) -> None:
        """Note a sign of life: the deadline becomes ``timeout`` from now."""
        self._scope.deadline = trio.current_time() + self._timeout

    async def wait_expired(self) -> None:
        """Block until the deadline passes without a :meth:`reset`; may be called once.

        Cancellation:
            Cancelling the caller simply stops the wait.
        """
        with self._scope:
            await trio.sleep_forever()
