"""A sharded Redis adapter that speaks the wire format of ``createShardedAdapter`` of the
official ``@socket.io/redis-adapter`` 8.3: sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``,
Redis 7+) on a Redis Cluster, where each channel lives on the shard that owns its slot, so
that the cluster's pub/sub traffic scales with its shards.

::

    from trio_sio.adapters.redis_sharded import create_adapter

    sio = trio_sio.Server(adapter=create_adapter("redis://10.0.0.1:7000"))

The URL names one node of the cluster (the others are found from it); a ready
``coredis.RedisCluster`` client works too. The messages are those of ``socket.io-adapter``'s
``ClusterAdapter`` (JSON, or msgpack when they hold bytes) on ``prefix#nsp#`` (requests and
broadcasts), ``prefix#nsp#uid#`` (responses to node ``uid``) and, with the ``"dynamic"``
subscription mode (the default), ``prefix#nsp#room#`` for a broadcast to one public room: a
node subscribes to the channel of a room while one of its sockets is in it, so a room's
broadcasts reach only the nodes that have it. ``"dynamic-private"`` does that for every room
(a socket's own room too); ``"static"`` sends every broadcast on the namespace's channel.

The connection, its renewal after an outage and the bounded queue of messages to other nodes
are those of the classic adapter (:class:`~trio_sio.adapters._redis_factory.RedisConnection`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any, Literal

import coredis
import trio

from ..protocol.serialize import to_wire
from ._cluster_adapter import ClusterMessageAdapter
from ._redis_adapter import ClusterTimeoutError
from ._redis_factory import Client, RedisConnection, RedisStatistics, RedisUnavailable, _text
from ._redis_wire import MAX_MESSAGE_BYTES, encode_json, encode_msgpack
from ._redis_wire import _unpack as unpack_msgpack
from ._streams_wire import MAY_HOLD_BYTES, MessageType, has_bytes
from .base import SocketRegistry

__all__ = [
    "ClusterTimeoutError",
    "RedisStatistics",
    "RedisUnavailable",
    "ShardedAdapter",
    "ShardedAdapterFactory",
    "SubscriptionMode",
    "create_adapter",
]

log = logging.getLogger("trio_sio.adapters.redis_sharded")

SubscriptionMode = Literal["static", "dynamic", "dynamic-private"]

#: The length of a socket id: a broadcast to one such room goes on the namespace's channel in
#: the "dynamic" mode (as the JS adapter decides it, by the length).
_SOCKET_ID_LENGTH = 20


def create_adapter(
    client: str | coredis.RedisCluster[bytes] = "redis://127.0.0.1:7000",
    *,
    channel_prefix: str = "socket.io",
    subscription_mode: SubscriptionMode = "dynamic",
    requests_timeout: float = 5.0,
    publish_queue_size: int = 1000,
    connect_timeout: float = 5.0,
    max_reconnect_delay: float = 0.5,
) -> ShardedAdapterFactory:
    """The adapter factory to pass as ``Server(adapter=...)``.

    Args:
        client: one node of the Redis Cluster, as a URL (``redis://``, ``rediss://``, a
            password in it), or a ready ``coredis.RedisCluster`` client made with
            ``decode_responses=False``.
        channel_prefix: the prefix of the channels (the JS ``channelPrefix``).
        subscription_mode: ``"dynamic"`` (a channel per public room), ``"dynamic-private"``
            (per room) or ``"static"`` (one channel per namespace), as in JS.
        requests_timeout: seconds to wait for other nodes' answers.
        publish_queue_size: messages to other nodes that may wait while Redis is slow or
            unreachable; beyond that they are dropped.
        connect_timeout: seconds ``serve()`` waits for Redis at start before failing.
        max_reconnect_delay: the longest pause between two reconnection attempts.
    """
    if subscription_mode not in ("static", "dynamic", "dynamic-private"):
        raise ValueError(f"unknown subscription mode {subscription_mode!r}")
    return ShardedAdapterFactory(
        client,
        key=channel_prefix,
        requests_timeout=requests_timeout,
        publish_queue_size=publish_queue_size,
        connect_timeout=connect_timeout,
        max_reconnect_delay=max_reconnect_delay,
        subscription_mode=subscription_mode,
    )


class ShardedAdapterFactory(RedisConnection["ShardedAdapter"]):
    """Creates one :class:`ShardedAdapter` per namespace and runs their Redis I/O.

    Use :func:`create_adapter`. The server calls :meth:`run` while it serves.
    """

    def __init__(
        self, client: str | Client, *, subscription_mode: SubscriptionMode, **options: Any
    ) -> None:
        super().__init__(client, cluster=True, **options)
        self.subscription_mode = subscription_mode
        self._rooms_changed = trio.Event()

    def _make_adapter(self, namespace: SocketRegistry) -> ShardedAdapter:
        return ShardedAdapter(namespace, self)

    def _open_pubsub(self, client: Client) -> Any:
        if not isinstance(client, coredis.RedisCluster):
            raise TypeError("the sharded adapter needs a Redis Cluster (coredis.RedisCluster)")
        return client.sharded_pubsub(ignore_subscribe_messages=True, retry_policy=None)

    async def _numsub(self, client: Client, channel: str) -> int:
        assert isinstance(client, coredis.RedisCluster)
        counts = await client.pubsub_shardnumsub(channel)
        return sum(int(count) for count in counts.values())

    async def _write(self, client: Client, message: tuple[str, Any]) -> None:
        channel, data = message
        await client.spublish(channel, data)

    async def _subscribe(self, pubsub: Any, adapter: ShardedAdapter) -> None:
        await pubsub.subscribe(adapter.public_channel, adapter.private_channel)
        if adapter.dynamic:
            await pubsub.subscribe(*adapter.dynamic)

    def rooms_changed(self) -> None:
        """A room with a channel of its own was made or emptied (never blocks)."""
        self._rooms_changed.set()

    def _session_tasks(self, nursery: trio.Nursery, client: Client, pubsub: Any) -> None:
        nursery.start_soon(self._follow_rooms, pubsub)

    async def _follow_rooms(self, pubsub: Any) -> None:
        """Subscribe to the channels of the rooms made, unsubscribe from those emptied."""
        while True:
            await self._rooms_changed.wait()
            self._rooms_changed = trio.Event()
            wanted: set[str] = set()
            for adapter in self._adapters.values():
                wanted |= adapter.dynamic
                wanted |= {adapter.public_channel, adapter.private_channel}
            have = {_text(channel) for channel in pubsub.channels}
            if added := wanted - have:
                await pubsub.subscribe(*added)
            if gone := have - wanted:
                await pubsub.unsubscribe(*gone)

    async def _dispatch(self, message: Any) -> None:
        try:
            data = message.get("data")
            if not isinstance(data, bytes):
                return
            channel = _text(message.get("channel"))
            adapter = self._adapter_for(channel)
            if adapter is not None:
                await adapter.on_message(decode(data), None)
        except ValueError as exc:
            log.debug("dropped a malformed cluster message: %s", exc)
        except Exception:
            log.exception("a cluster message could not be handled")

    def _adapter_for(self, channel: str) -> ShardedAdapter | None:
        found: ShardedAdapter | None = None
        for adapter in self._adapters.values():  # the longest namespace that matches
            if channel.startswith(adapter.public_channel) and (
                found is None or len(adapter.public_channel) > len(found.public_channel)
            ):
                found = adapter
        return found


def encode(uid: str, nsp: str, kind: MessageType, data: Any) -> bytes:
    """A message as the JS sharded adapter writes it: JSON, msgpack when it holds bytes."""
    message = {"type": int(kind), "data": to_wire((data,))[0], "uid": uid, "nsp": nsp}
    if kind in MAY_HOLD_BYTES and has_bytes(data):
        return encode_msgpack(message)
    return encode_json(message)


def decode(raw: bytes) -> dict[str, Any]:
    """A message of another node: JSON when it starts with ``{``, msgpack otherwise.

    Raises:
        ValueError: malformed.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ValueError("message too large")
    try:
        value = json.loads(raw) if raw[:1] == b"{" else unpack_msgpack(raw)
    except Exception as exc:  # JSON's and msgpack's errors, RecursionError...
        raise ValueError(f"malformed message: {exc}") from None
    if not isinstance(value, dict) or not isinstance(value.get("type"), int):
        raise ValueError("a message must be an object with a type")
    return value


class ShardedAdapter(ClusterMessageAdapter):
    """One namespace's rooms, with the cluster's messages on sharded channels.

    Attributes:
        dynamic: the channels of this node's rooms that have one (per the mode).
    """

    factory: ShardedAdapterFactory

    def __init__(self, namespace: SocketRegistry, factory: ShardedAdapterFactory) -> None:
        super().__init__(namespace, factory)
        self.mode = factory.subscription_mode
        self.dynamic: set[str] = set()

    def _encode(self, kind: MessageType, data: Any) -> bytes:
        return encode(self.uid, self.namespace.name, kind, data)

    def _room_channel(self, room: str) -> str:
        return f"{self.public_channel}{room}#"

    def _send(self, kind: MessageType, data: Any) -> None:
        channel = self.public_channel
        if kind == MessageType.BROADCAST and data.get("requestId") is None:
            rooms = data["opts"]["rooms"]
            if len(rooms) == 1 and (
                self.mode == "dynamic-private"
                or (self.mode == "dynamic" and len(rooms[0]) != _SOCKET_ID_LENGTH)
            ):
                channel = self._room_channel(rooms[0])
        self.factory.publish(channel, self._encode(kind, data))

    # -- rooms with a channel of their own ------------------------------------------------------
    def _own_channel(self, room: str) -> bool:
        if self.mode == "dynamic-private":
            return True
        return self.mode == "dynamic" and room not in self._sids  # not a socket's own room

    def _follow(self, rooms: Iterable[str]) -> None:
        changed = False
        for room in rooms:
            channel = self._room_channel(room)
            if room in self._rooms and self._own_channel(room):
                if channel not in self.dynamic:
                    self.dynamic.add(channel)
                    changed = True
            elif channel in self.dynamic:
                self.dynamic.discard(channel)
                changed = True
        if changed:
            self.factory.rooms_changed()

    def add_all(self, sid: str, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        super().add_all(sid, rooms)
        if self.mode != "static":
            self._follow(rooms)

    def delete(self, sid: str, room: str) -> None:
        super().delete(sid, room)
        if self.mode != "static":
            self._follow((room,))

    def delete_all(self, sid: str) -> None:
        rooms = self.socket_rooms(sid)
        super().delete_all(sid)
        if self.mode != "static":
            self._follow(rooms)
