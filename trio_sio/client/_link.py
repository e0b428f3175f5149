"""The client's connections: one Engine.IO session, and a namespace's connection on it.

A send on either stops (raising ConnectionClosed) as soon as its connection ends, even if it
was waiting for room in the session's send queue: nothing meant for one namespace connection
can reach the server after that connection's DISCONNECT, or on a later one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from ..protocol.errors import ConnectionClosed

if TYPE_CHECKING:
    from ..engineio.client import EngineClient

__all__ = ["Link", "Session"]


class _Sender:
    """Sends on a session, each send cut short (ConnectionClosed) when :meth:`end` is called."""

    def __init__(self) -> None:
        self.closed = trio.Event()
        self._scopes: set[trio.CancelScope] = set()

    def end(self) -> None:
        self.closed.set()
        for scope in self._scopes:
            scope.cancel()

    async def _send(
        self, engine: EngineClient, frames: Sequence[str | bytes], compress: bool = True
    ) -> None:
        if self.closed.is_set():
            await trio.lowlevel.checkpoint()
            raise ConnectionClosed("transport close")
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                await engine.send_many(frames, compress=compress)
                return
            finally:
                self._scopes.discard(scope)
        raise ConnectionClosed("transport close")


class Session(_Sender):
    """One Engine.IO connection of the client; ``closed`` is set when it ends.

    Attributes:
        released: the client closed it because no namespace wanted it any more (not a
            lost connection: no reconnection follows).
    """

    def __init__(self, engine: EngineClient) -> None:
        super().__init__()
        self.engine = engine
        self.links: set[Link] = set()
        self.released = False

    async def send(self, frames: Sequence[str | bytes]) -> None:
        """Queue one packet's frames on the session.

        Raises:
            ConnectionClosed: the session ended (before, or while this waited for room).

        Cancellation: if cancelled, nothing was queued.
        """
        await self._send(self.engine, frames)

    def close(self) -> None:
        """The session ended: end every send on it and every namespace connection."""
        self.end()
        for link in list(self.links):
            link.close()


class Link(_Sender):
    """A namespace's connection on a session, from its CONNECT to its end.

    Attributes:
        session: the Engine.IO connection it runs on.
        sid: the socket id the server gave.
    """

    def __init__(self, session: Session, sid: str) -> None:
        super().__init__()
        self.session = session
        self.sid = sid
        session.links.add(self)

    async def send(self, frames: Sequence[str | bytes], compress: bool = True) -> None:
        """Queue one packet's frames for this namespace connection (``compress`` false: never
        compressed).

        Raises:
            ConnectionClosed: this connection (or its session) ended, before or while this
                waited for room.

        Cancellation: if cancelled, nothing was queued.
        """
        await self._send(self.session.engine, frames, compress)

    def send_nowait(self, frames: Sequence[str | bytes], compress: bool = True) -> None:
        """Queue one packet's frames if the session's send queue has room for them now.

        Raises:
            trio.WouldBlock: it has not.
            ConnectionClosed: this connection (or its session) ended.
        """
        if self.closed.is_set():
            raise ConnectionClosed("transport close")
        self.session.engine.send_many_nowait(frames, compress=compress)

    def close(self) -> None:
        """This namespace connection ended."""
        self.end()
        self.session.links.discard(self)
