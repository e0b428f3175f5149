"""Broadcast operators: ``sio.to("room").except_("muted").volatile.emit(...)``.

An operator is an immutable selection (rooms, excluded rooms, flags); every method that narrows
it returns a new one, so operators can be kept and reused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from .._emitter import event_data
from ..adapters.base import BroadcastOptions, RemoteSocket
from ..protocol.errors import AckTimeoutError
from ..protocol.socketio import Packet, PacketType

if TYPE_CHECKING:
    from .namespace import Namespace
    from .socket import Socket

__all__ = ["BroadcastOperator"]


def _rooms(rooms: tuple[str | Iterable[str], ...]) -> frozenset[str]:
    flat: set[str] = set()
    for room in rooms:
        if isinstance(room, str):
            flat.add(room)
        else:
            flat.update(room)
    return frozenset(flat)


@dataclass(frozen=True, slots=True)
class BroadcastOperator:
    """A selection of the sockets of one namespace, and what to do with them."""

    namespace: Namespace
    options: BroadcastOptions

    def to(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """Narrow to sockets in any of these rooms (adds to earlier ``to`` rooms)."""
        opts = self.options
        return replace(self, options=replace(opts, rooms=opts.rooms | _rooms(rooms)))

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """Leave out sockets in any of these rooms (a socket id is a room too)."""
        opts = self.options
        return replace(self, options=replace(opts, except_rooms=opts.except_rooms | _rooms(rooms)))

    @property
    def volatile(self) -> BroadcastOperator:
        """Drop the packet for sockets that cannot take it right away."""
        return replace(self, options=replace(self.options, volatile=True))

    @property
    def local(self) -> BroadcastOperator:
        """This node only (with a multi-node adapter)."""
        return replace(self, options=replace(self.options, local=True))

    def timeout(self, seconds: float) -> BroadcastOperator:
        """Wait at most ``seconds`` for acks (needed by :meth:`emit_with_ack`)."""
        return replace(self, options=replace(self.options, timeout=seconds))

    def compress(self, compress: bool) -> BroadcastOperator:
        """Allow compression (True, the default) or not (False: sent uncompressed)."""
        return replace(self, options=replace(self.options, compress=compress))

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event to every selected socket; it is encoded once for all of them.

        Raises:
            TypeError: an argument cannot be sent (nothing was sent).

        Blocks: only while a selected socket's send queue is full, and never for volatile
        broadcasts.
        """
        packet = self._packet(event, args)
        await self.namespace.adapter.broadcast(packet, self.options)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """Send an event to every selected socket and collect one ack from each.

        Returns:
            One reply per socket reached (each unpacked as in ``Socket.emit_with_ack``),
            in no particular order.

        Raises:
            ValueError: no :meth:`timeout` was set.
            AckTimeoutError: some sockets did not answer in time; ``replies`` holds the
                replies that came.
        """
        if self.options.timeout is None:
            raise ValueError("emit_with_ack on a broadcast needs a timeout: .timeout(seconds)")
        packet = self._packet(event, args)
        replies, complete = await self.namespace.adapter.broadcast_with_ack(packet, self.options)
        if not complete:
            raise AckTimeoutError(replies=replies)
        return replies

    def _packet(self, event: str, args: tuple[Any, ...]) -> Packet:
        return Packet(PacketType.EVENT, self.namespace.name, event_data(event, args))

    async def fetch_sockets(self) -> list[Socket | RemoteSocket]:
        """The selected sockets."""
        found = await self.namespace.adapter.fetch_sockets(self.options)
        return cast("list[Socket | RemoteSocket]", found)  # its local sockets are ours

    async def sockets_join(self, *rooms: str | Iterable[str]) -> None:
        """Make the selected sockets join these rooms."""
        await self.namespace.adapter.add_sockets(self.options, _rooms(rooms))

    async def sockets_leave(self, *rooms: str | Iterable[str]) -> None:
        """Make the selected sockets leave these rooms."""
        await self.namespace.adapter.del_sockets(self.options, _rooms(rooms))

    async def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect the selected sockets (and close their connections if ``close``)."""
        await self.namespace.adapter.disconnect_sockets(self.options, close)
