"""What the parts of a client know of each other, as protocols.

A namespace socket (``socket.py``, with its state in ``_namespace.py``) needs a few things
of the connection manager (``_manager.py``) and keeps a reference to the client that made
it (``client.py``); the manager and the client, in turn, import the socket. Declaring the
socket's side here, in a module that imports none of them, keeps the client's modules free
of import circles, type-only imports included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import trio

    from ..protocol.socketio import Packet
    from ._link import Session
    from ._options import ClientOptions

__all__ = ["ClientLike", "ManagerPort"]


class ManagerPort(Protocol):
    """What a namespace socket needs of the client's connection manager
    (:class:`~trio_sio.client.Manager` is one)."""

    @property
    def options(self) -> ClientOptions:
        """The client's options."""
        ...

    @property
    def is_running(self) -> bool:
        """Whether the client was entered (and not closed since)."""
        ...

    @property
    def session(self) -> Session | None:
        """The current Engine.IO connection, if any."""
        ...

    def encode(self, packet: Packet) -> list[str | bytes]:
        """Encode a packet with the client's parser."""
        ...

    async def auth(self) -> dict[str, Any] | None:
        """The CONNECT payload, evaluated now."""
        ...

    def wake(self) -> None:
        """A namespace wants connecting: wake an idle manager."""
        ...

    def release_if_unused(self) -> None:
        """Close the connection if no namespace wants it."""
        ...

    def running_nursery(self) -> trio.Nursery:
        """The client's nursery, for tasks of a running client."""
        ...


class ClientLike(Protocol):
    """The client a namespace socket belongs to, as the socket declares it
    (:class:`~trio_sio.Client` is one)."""

    @property
    def connected(self) -> bool:
        """Whether the main namespace is connected."""
        ...

    @property
    def transport(self) -> str | None:
        """The current transport, while connected."""
        ...

    async def aclose(self) -> None:
        """Disconnect every namespace and stop reconnecting."""
        ...
