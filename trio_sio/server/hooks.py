"""What a server tells an observer attached to it: the one way the server reaches the Admin
UI's instrumentation (which implements :class:`ServerHook`), without depending on it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..protocol.engineio import Packet as EnginePacket
    from .namespace import Namespace
    from .socket import Socket

__all__ = ["ServerHook", "TrafficObserver"]


class TrafficObserver(Protocol):
    """Counts a server's Engine.IO traffic. Its methods must not block."""

    def opened(self) -> None:
        """A connection opened."""

    def closed(self, reason: str) -> None:
        """A connection closed, for ``reason``."""

    def received(self, message: str | bytes) -> None:
        """A message came from a client."""

    def sent(self, group: Sequence[EnginePacket]) -> None:
        """Packets were queued for a client."""


class ServerHook(Protocol):
    """An observer of a server, attached with :meth:`trio_sio.Server.add_hook` before it
    serves. The server calls the sync methods from the code that triggers them: they must
    not block. It runs :meth:`run` while it serves."""

    @property
    def traffic(self) -> TrafficObserver | None:
        """The traffic counters, if the hook wants them."""
        ...

    def watch(self, namespace: Namespace) -> None:
        """A namespace was created (also called for those that existed when attached)."""

    def socket_connected(self, socket: Socket) -> None:
        """A socket connected, before the application's connection handlers run."""

    def socket_leaving(self, socket: Socket, reason: str) -> None:
        """A socket is disconnecting, after the application's ``disconnecting`` handlers."""

    async def run(self) -> None:
        """The hook's background work, while the server serves; cancelled at the end."""
