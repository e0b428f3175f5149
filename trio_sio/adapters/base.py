"""The adapter interface: room membership and broadcast delivery for one namespace.

An adapter only needs the narrow :class:`SocketRegistry` view of its namespace, so that a
multi-node adapter (Redis) can be added without touching the server API: it forwards the
same :class:`BroadcastOptions` to the other nodes and delivers locally through the registry.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol.socketio import Packet

if TYPE_CHECKING:
    from ..server.socket import Socket

__all__ = ["Adapter", "BroadcastOptions", "SocketRegistry"]


@dataclass(frozen=True, slots=True)
class BroadcastOptions:
    """Which sockets a broadcast reaches, and how.

    Attributes:
        rooms: only sockets in at least one of these rooms (empty: every socket).
        except_rooms: never sockets in any of these rooms.
        volatile: drop the packet for sockets that cannot take it right away.
        local: this node only (matters for multi-node adapters).
        timeout: for broadcasts waiting for acks, how long to wait (seconds).
    """

    rooms: frozenset[str] = frozenset()
    except_rooms: frozenset[str] = frozenset()
    volatile: bool = False
    local: bool = False
    timeout: float | None = None


class SocketRegistry(Protocol):
    """What an adapter may ask of its namespace."""

    name: str

    def get_socket(self, sid: str) -> Socket | None:
        """The connected socket with this id on this node, if any."""
        ...

    async def deliver(self, sids: Sequence[str], packet: Packet, *, volatile: bool) -> None:
        """Encode ``packet`` once and queue it for each of ``sids`` (local sockets)."""
        ...

    async def deliver_with_ack(
        self, sids: Sequence[str], packet: Packet, timeout: float
    ) -> tuple[list[Any], bool]:
        """Send to each socket with its own ack id; return (replies, all_arrived)."""
        ...


class Adapter(abc.ABC):
    """Rooms and broadcasts of one namespace."""

    def __init__(self, namespace: SocketRegistry) -> None:
        self.namespace = namespace

    # -- rooms ----------------------------------------------------------------------------
    @abc.abstractmethod
    def add_all(self, sid: str, rooms: Iterable[str]) -> None:
        """Put socket ``sid`` in every one of ``rooms``."""

    @abc.abstractmethod
    def delete(self, sid: str, room: str) -> None:
        """Take socket ``sid`` out of ``room``."""

    @abc.abstractmethod
    def delete_all(self, sid: str) -> None:
        """Take socket ``sid`` out of every room (it is leaving)."""

    @abc.abstractmethod
    def socket_rooms(self, sid: str) -> frozenset[str]:
        """The rooms socket ``sid`` is in."""

    @abc.abstractmethod
    def rooms(self) -> dict[str, frozenset[str]]:
        """Every room of this node and its socket ids."""

    @abc.abstractmethod
    def sids(self, options: BroadcastOptions) -> list[str]:
        """The ids of the local sockets ``options`` selects."""

    # -- delivery -------------------------------------------------------------------------
    async def broadcast(self, packet: Packet, options: BroadcastOptions) -> None:
        """Deliver ``packet`` to every selected socket.

        Blocks only while a selected socket's send queue is full (never for volatile
        broadcasts, which drop the packet for such a socket instead).
        """
        await self.namespace.deliver(self.sids(options), packet, volatile=options.volatile)

    async def broadcast_with_ack(
        self, packet: Packet, options: BroadcastOptions
    ) -> tuple[list[Any], bool]:
        """Deliver with one ack id per socket; return the replies and whether all came."""
        if options.timeout is None:
            raise ValueError("a broadcast waiting for acks needs a timeout")
        return await self.namespace.deliver_with_ack(self.sids(options), packet, options.timeout)

    async def fetch_sockets(self, options: BroadcastOptions) -> list[Socket]:
        """The selected sockets (on this node, for this adapter)."""
        found = (self.namespace.get_socket(sid) for sid in self.sids(options))
        return [socket for socket in found if socket is not None]

    async def add_sockets(self, options: BroadcastOptions, rooms: Iterable[str]) -> None:
        """Make the selected sockets join ``rooms``."""
        rooms = list(rooms)
        for sid in self.sids(options):
            self.add_all(sid, rooms)

    async def del_sockets(self, options: BroadcastOptions, rooms: Iterable[str]) -> None:
        """Make the selected sockets leave ``rooms``."""
        rooms = list(rooms)
        for sid in self.sids(options):
            for room in rooms:
                self.delete(sid, room)

    async def disconnect_sockets(self, options: BroadcastOptions, close: bool) -> None:
        """Disconnect the selected sockets (and their whole connection if ``close``)."""
        for socket in await self.fetch_sockets(options):
            await socket.disconnect(close)
