"""The adapter interface: room membership and broadcast delivery for one namespace.

An adapter only needs the narrow :class:`SocketRegistry` view of its namespace, so that a
multi-node adapter (Redis) can be added without touching the server API: it forwards the
same :class:`BroadcastOptions` to the other nodes and delivers locally through the registry.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .._emitter import event_data
from .._handshake import Handshake, handshake_from_wire
from ..protocol.errors import AckTimeoutError
from ..protocol.socketio import Packet, PacketType

if TYPE_CHECKING:
    from .recovery import ConnectionStateRecovery, RecoveredSession, Session

__all__ = ["Adapter", "AdapterSocket", "BroadcastOptions", "RemoteSocket", "SocketRegistry"]

#: Sends the reply of a server-side emit that asked for one.
ReplySender = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BroadcastOptions:
    """Which sockets a broadcast reaches, and how.

    Attributes:
        rooms: only sockets in at least one of these rooms (empty: every socket).
        except_rooms: never sockets in any of these rooms.
        volatile: drop the packet for sockets that cannot take it right away.
        local: this node only (matters for multi-node adapters).
        timeout: for broadcasts waiting for acks, how long to wait (seconds).
        compress: the packet may be compressed (False: ``.compress(False)``).
    """

    rooms: frozenset[str] = frozenset()
    except_rooms: frozenset[str] = frozenset()
    volatile: bool = False
    local: bool = False
    timeout: float | None = None
    compress: bool = True


class AdapterSocket(Protocol):
    """What an adapter may see and do of a socket of this node (``trio_sio.Socket`` is one).

    Adapters know sockets only through this view, so that they depend on no server module.
    """

    @property
    def id(self) -> str:
        """The socket's public id."""
        ...

    @property
    def handshake(self) -> Handshake:
        """What the client sent when it connected."""
        ...

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms it is in."""
        ...

    @property
    def data(self) -> Any:
        """The application's data of the socket."""
        ...

    @property
    def connected(self) -> bool:
        """True until it disconnects."""
        ...

    async def disconnect(self, close: bool = False) -> None:
        """Disconnect it (and its whole connection if ``close``)."""
        ...


class SocketRegistry(Protocol):
    """What an adapter may ask of its namespace."""

    name: str

    def get_socket(self, sid: str) -> AdapterSocket | None:
        """The connected socket with this id on this node, if any."""
        ...

    async def deliver(
        self, sids: Sequence[str], packet: Packet, *, volatile: bool, compress: bool = True
    ) -> None:
        """Encode ``packet`` once and queue it for each of ``sids`` (local sockets)."""
        ...

    async def deliver_with_ack(
        self,
        sids: Sequence[str],
        packet: Packet,
        timeout: float,
        on_reply: Callable[[Any], None] | None = None,
        *,
        compress: bool = True,
    ) -> tuple[list[Any], bool]:
        """Send to each socket with its own ack id; return (replies, all_arrived).
        ``on_reply`` is called with each reply as it comes."""
        ...

    async def on_server_side_emit(self, data: list[Any], reply: ReplySender | None) -> None:
        """Run this node's handlers of a server-side emit from another node."""
        ...


class Adapter(abc.ABC):
    """Rooms and broadcasts of one namespace.

    Attributes:
        room_listener: if set (by the Admin UI's instrumentation), called as
            ``room_listener(room, sid, joined)`` each time a socket joins a room it was not
            in (``joined`` True) or leaves one it was in. It must not block.
    """

    room_listener: Callable[[str, str, bool], None] | None = None

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
        await self.namespace.deliver(
            self.sids(options), packet, volatile=options.volatile, compress=options.compress
        )

    async def broadcast_with_ack(
        self, packet: Packet, options: BroadcastOptions
    ) -> tuple[list[Any], bool]:
        """Deliver with one ack id per socket; return the replies and whether all came."""
        if options.timeout is None:
            raise ValueError("a broadcast waiting for acks needs a timeout")
        return await self.namespace.deliver_with_ack(
            self.sids(options), packet, options.timeout, compress=options.compress
        )

    async def fetch_sockets(self, options: BroadcastOptions) -> list[AdapterSocket | RemoteSocket]:
        """The selected sockets (on this node, for this adapter)."""
        await trio.lowlevel.checkpoint()
        found = (self.namespace.get_socket(sid) for sid in self.sids(options))
        return [socket for socket in found if socket is not None]

    async def add_sockets(self, options: BroadcastOptions, rooms: Iterable[str]) -> None:
        """Make the selected sockets join ``rooms``."""
        self.add_sockets_nowait(options, rooms)
        await trio.lowlevel.checkpoint()

    async def del_sockets(self, options: BroadcastOptions, rooms: Iterable[str]) -> None:
        """Make the selected sockets leave ``rooms``."""
        self.del_sockets_nowait(options, rooms)
        await trio.lowlevel.checkpoint()

    def add_sockets_nowait(self, options: BroadcastOptions, rooms: Iterable[str]) -> None:
        """:meth:`add_sockets` without blocking (other nodes are told in the background)."""
        rooms = list(rooms)
        for sid in self.sids(options):
            self.add_all(sid, rooms)

    def del_sockets_nowait(self, options: BroadcastOptions, rooms: Iterable[str]) -> None:
        """:meth:`del_sockets` without blocking (other nodes are told in the background)."""
        rooms = list(rooms)
        for sid in self.sids(options):
            for room in rooms:
                self.delete(sid, room)

    async def disconnect_sockets(self, options: BroadcastOptions, close: bool) -> None:
        """Disconnect the selected sockets (and their whole connection if ``close``)."""
        found = (self.namespace.get_socket(sid) for sid in self.sids(options))
        for socket in [socket for socket in found if socket is not None]:
            await socket.disconnect(close)

    # -- the cluster --------------------------------------------------------------------------
    async def server_count(self) -> int:
        """How many nodes serve this namespace (1 for a single-node adapter)."""
        await trio.lowlevel.checkpoint()
        return 1

    async def all_rooms(self) -> frozenset[str]:
        """The rooms of every node."""
        await trio.lowlevel.checkpoint()
        return frozenset(self.rooms())

    async def server_side_emit(self, data: list[Any]) -> None:
        """Send ``[event, *args]`` to the other nodes' server-side handlers (none here)."""
        await trio.lowlevel.checkpoint()

    async def server_side_emit_with_ack(
        self, data: list[Any], timeout: float
    ) -> tuple[list[Any], bool]:
        """Like :meth:`server_side_emit`, collecting one reply per other node until
        ``timeout``; returns the replies and whether every node answered."""
        await trio.lowlevel.checkpoint()
        return [], True

    # -- connection state recovery (see trio_sio.adapters.recovery) -----------------------
    def enable_recovery(self, options: ConnectionStateRecovery) -> None:
        """Keep sessions and packets for connection state recovery from now on (called by
        the server once, before any socket connects, when the option is on).

        An adapter that supports recovery stamps the packets it keeps in :meth:`broadcast`
        (an EVENT without ack id, not volatile) with :meth:`record_packet`.

        Raises:
            NotImplementedError: this adapter cannot (the default).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot recover connection states")

    async def record_packet(self, packet: Packet, options: BroadcastOptions) -> Packet:
        """Keep ``packet`` (an EVENT for the sockets ``options`` selects) for recovery;
        returns it with its offset appended, to be sent. Unchanged by default."""
        await trio.lowlevel.checkpoint()
        return packet

    def last_offset(self) -> str | None:
        """The offset of the newest kept packet: where a socket connecting now starts."""
        return None

    async def persist_session(self, session: Session) -> None:
        """Keep the session of a socket whose connection dropped (nothing by default)."""
        await trio.lowlevel.checkpoint()

    async def restore_session(self, pid: str, offset: str | None) -> RecoveredSession | None:
        """Give back the session ``pid`` with the packets it missed after ``offset`` (None
        when the client got none since it connected), or None if it cannot be recovered.
        May raise: the server then connects the client as a new socket."""
        await trio.lowlevel.checkpoint()
        return None


@dataclass(frozen=True, slots=True)
class RemoteSocket:
    """A socket of another node, as :meth:`Adapter.fetch_sockets` finds it.

    Its methods act through the adapter, like a broadcast to the room named by its id.

    Attributes:
        id: the socket id.
        handshake: the handshake as the other node described it: the same
            :class:`~trio_sio.Handshake` as a local socket's.
        rooms: its rooms when it was fetched.
        data: its ``data`` when it was fetched.
    """

    adapter: Adapter = field(repr=False)
    id: str
    handshake: Handshake
    rooms: frozenset[str]
    data: Any

    @classmethod
    def from_wire(cls, adapter: Adapter, item: Any) -> RemoteSocket | None:
        """The socket another node described (``fetchSockets``' wire form, JavaScript field
        names); None when ``item`` is not such a description."""
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return None
        rooms = item.get("rooms")
        return cls(
            adapter=adapter,
            id=item["id"],
            handshake=handshake_from_wire(item.get("handshake")),
            rooms=frozenset(str(r) for r in rooms) if isinstance(rooms, list) else frozenset(),
            data=item.get("data"),
        )

    def _only_me(self) -> BroadcastOptions:
        return BroadcastOptions(rooms=frozenset({self.id}))

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event to this socket (through its node)."""
        packet = Packet(PacketType.EVENT, self.adapter.namespace.name, event_data(event, args))
        await self.adapter.broadcast(packet, self._only_me())

    async def emit_with_ack(self, event: str, *args: Any, timeout: float) -> Any:
        """Send an event and wait for this socket's ack.

        Raises:
            AckTimeoutError: no ack came within ``timeout`` seconds.
        """
        packet = Packet(PacketType.EVENT, self.adapter.namespace.name, event_data(event, args))
        options = replace(self._only_me(), timeout=timeout)
        replies, _ = await self.adapter.broadcast_with_ack(packet, options)
        if not replies:
            raise AckTimeoutError()
        return replies[0]

    def join(self, *rooms: str) -> None:
        """Make this socket join these rooms. Does not block (like ``Socket.join``)."""
        self.adapter.add_sockets_nowait(self._only_me(), rooms)

    def leave(self, *rooms: str) -> None:
        """Make this socket leave these rooms. Does not block (like ``Socket.leave``)."""
        self.adapter.del_sockets_nowait(self._only_me(), rooms)

    async def disconnect(self, close: bool = False) -> None:
        """Disconnect this socket (and its whole connection if ``close``)."""
        await self.adapter.disconnect_sockets(self._only_me(), close)
