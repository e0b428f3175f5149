"""Emit to a cluster from a process that runs no server, as ``@socket.io/redis-emitter`` 5.x does.

A worker, a cron job or a web request handler publishes straight to the cluster's Redis; every
node (trio_sio or Node.js with ``@socket.io/redis-adapter``) delivers to its own sockets::

    async with open_emitter("redis://127.0.0.1:6379") as emitter:
        await emitter.emit("news", {"id": 1})
        await emitter.of("/chat").to("room-1").except_("muted").emit("message", "hi")
        await emitter.in_("room-1").sockets_join("room-2")
        await emitter.server_side_emit("reload")
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from .._emitter import event_data
from ..protocol.socketio import Packet, PacketType
from ._redis_wire import Channels, RequestType, encode_broadcast, encode_json
from .base import BroadcastOptions
from .redis import coredis  # the import that names the extra when coredis is missing

__all__ = ["Emitter", "open_emitter"]

#: The uid an emitter's messages carry (as the JS emitter's).
EMITTER_UID = "emitter"


@asynccontextmanager
async def open_emitter(
    url: str = "redis://127.0.0.1:6379", *, key: str = "socket.io"
) -> AsyncIterator[Emitter]:
    """Connect to the cluster's Redis and yield an :class:`Emitter` for ``"/"``.

    Args:
        url: the cluster's Redis.
        key: the channel prefix of the cluster (``"socket.io"`` unless the nodes set another).
    """
    client: coredis.Redis[bytes] = coredis.Redis.from_url(url, decode_responses=False)
    async with client:
        yield Emitter(client, key)


def _flatten(rooms: tuple[str | Iterable[str], ...]) -> frozenset[str]:
    flat: set[str] = set()
    for room in rooms:
        flat.update((room,) if isinstance(room, str) else room)
    return frozenset(flat)


@dataclass(frozen=True, slots=True)
class Emitter:
    """Broadcasts to a cluster through Redis. Immutable: each narrowing returns a new one.

    Every method that sends waits until Redis took the message (one ``PUBLISH``).
    """

    client: coredis.Redis[bytes] = field(repr=False)
    key: str = "socket.io"
    namespace: str = "/"
    options: BroadcastOptions = field(default_factory=BroadcastOptions)

    @property
    def _channels(self) -> Channels:
        return Channels.of(self.key, self.namespace, EMITTER_UID)

    def of(self, namespace: str) -> Emitter:
        """The same cluster, another namespace (``"/chat"``)."""
        name = namespace if namespace.startswith("/") else "/" + namespace
        return replace(self, namespace=name, options=BroadcastOptions())

    def to(self, *rooms: str | Iterable[str]) -> Emitter:
        """Only sockets in any of these rooms."""
        return replace(
            self, options=replace(self.options, rooms=self.options.rooms | _flatten(rooms))
        )

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> Emitter:
        """Not the sockets in any of these rooms."""
        excluded = self.options.except_rooms | _flatten(rooms)
        return replace(self, options=replace(self.options, except_rooms=excluded))

    @property
    def volatile(self) -> Emitter:
        """Dropped for sockets that cannot take it right away."""
        return replace(self, options=replace(self.options, volatile=True))

    def compress(self, compress: bool) -> Emitter:
        """Compression allowed (True, the default) or not, as the JS emitter's flag."""
        return replace(self, options=replace(self.options, compress=compress))

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event to the selected sockets of every node.

        Raises:
            TypeError: an argument cannot be sent (nothing was sent).
        """
        packet = Packet(PacketType.EVENT, self.namespace, event_data(event, args))
        channel = self._channels.for_rooms(self.options.rooms)
        await self.client.publish(channel, encode_broadcast(EMITTER_UID, packet, self.options))

    async def _request(self, body: dict[str, Any]) -> None:
        await self.client.publish(self._channels.request, encode_json(body))

    def _selection(self) -> dict[str, list[str]]:
        return {"rooms": sorted(self.options.rooms), "except": sorted(self.options.except_rooms)}

    async def sockets_join(self, *rooms: str | Iterable[str]) -> None:
        """Make the selected sockets join these rooms."""
        names = sorted(_flatten(rooms))
        await self._request(
            {"type": int(RequestType.REMOTE_JOIN), "opts": self._selection(), "rooms": names}
        )

    async def sockets_leave(self, *rooms: str | Iterable[str]) -> None:
        """Make the selected sockets leave these rooms."""
        names = sorted(_flatten(rooms))
        await self._request(
            {"type": int(RequestType.REMOTE_LEAVE), "opts": self._selection(), "rooms": names}
        )

    async def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect the selected sockets (and their connections if ``close``)."""
        await self._request(
            {"type": int(RequestType.REMOTE_DISCONNECT), "opts": self._selection(), "close": close}
        )

    async def server_side_emit(self, event: str, *args: Any) -> None:
        """Send an event to every node's server-side handlers (no replies)."""
        data = event_data(event, args)
        await self._request(
            {"uid": EMITTER_UID, "type": int(RequestType.SERVER_SIDE_EMIT), "data": data}
        )
        await trio.lowlevel.checkpoint()
