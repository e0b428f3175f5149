"""A Redis Streams adapter that speaks the wire format of ``@socket.io/redis-streams-adapter``
0.3: trio_sio nodes and Node.js socket.io nodes with that adapter share one cluster.

::

    from trio_sio.adapters.redis_streams import create_adapter

    sio = trio_sio.Server(
        adapter=create_adapter("redis://127.0.0.1:6379"), connection_state_recovery=True
    )

Broadcasts, ``sockets_join``/``leave`` and ``disconnect_sockets`` are entries of one Redis
stream, read by every node: they survive an outage of a node's connection (read from where
the node left off once it is back) and the stream's ids are the offsets of connection state
recovery. Sessions are kept in Redis with an expiry, so a client that comes back to *another*
node is recovered there, with the packets it missed read back from the stream. Requests that
wait for answers (``fetch_sockets``, server-side emits, broadcasts with acks) and the answers
go through pub/sub (see :mod:`trio_sio.adapters._streams_wire`).

The connection, its renewal after an outage and the bounded queue of messages to other nodes
are the classic Redis adapter's (:class:`~trio_sio.adapters._redis_factory.RedisConnection`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import coredis
import trio

from ..protocol.socketio import Packet, PacketType
from ._cluster_adapter import ClusterMessageAdapter
from ._redis_adapter import ClusterTimeoutError
from ._redis_factory import Client, RedisConnection, RedisStatistics, RedisUnavailable, _text
from ._redis_wire import (
    options_from_wire,
    options_to_wire,
    packet_from_wire,
    packet_to_wire,
)
from ._streams_wire import (
    MessageType,
    decode_entry,
    decode_pubsub,
    decode_session,
    encode_entry,
    encode_pubsub,
    encode_session,
    is_offset,
    next_offset,
    reaches,
)
from .base import BroadcastOptions, SocketRegistry
from .memory import InMemoryAdapter
from .recovery import ConnectionStateRecovery, RecoveredSession, Session

__all__ = [
    "ClusterTimeoutError",
    "RedisStatistics",
    "RedisUnavailable",
    "StreamsAdapter",
    "StreamsAdapterFactory",
    "create_adapter",
]

log = logging.getLogger("trio_sio.adapters.redis_streams")

#: XRANGE calls at most when a session is restored (as the JS adapter).
_RESTORE_MAX_XRANGE_CALLS = 100


def create_adapter(
    client: str | Client = "redis://127.0.0.1:6379",
    *,
    stream_name: str = "socket.io",
    channel_prefix: str = "socket.io",
    max_len: int = 10_000,
    read_count: int = 100,
    block_time: float = 5.0,
    session_key_prefix: str = "sio:session:",
    requests_timeout: float = 5.0,
    publish_queue_size: int = 1000,
    connect_timeout: float = 5.0,
    max_reconnect_delay: float = 0.5,
) -> StreamsAdapterFactory:
    """The adapter factory to pass as ``Server(adapter=...)``.

    Args:
        client: the Redis server (a URL, or a ready ``coredis.Redis`` client; see
            :func:`trio_sio.adapters.redis.create_adapter`).
        stream_name: the stream (the JS ``streamName``); every node of a cluster the same.
        channel_prefix: the prefix of the pub/sub channels (the JS ``channelPrefix``).
        max_len: the stream is trimmed to about this many entries (``MAXLEN ~``).
        read_count: entries read per ``XREAD``.
        block_time: seconds one ``XREAD`` waits for entries.
        session_key_prefix: the prefix of the keys of kept sessions.
        requests_timeout: seconds to wait for other nodes' answers.
        publish_queue_size: messages to other nodes that may wait while Redis is slow or
            unreachable; beyond that they are dropped.
        connect_timeout: seconds ``serve()`` waits for Redis at start before failing.
        max_reconnect_delay: the longest pause between two reconnection attempts.
    """
    return StreamsAdapterFactory(
        client,
        key=channel_prefix,
        requests_timeout=requests_timeout,
        publish_queue_size=publish_queue_size,
        connect_timeout=connect_timeout,
        max_reconnect_delay=max_reconnect_delay,
        stream_name=stream_name,
        max_len=max_len,
        read_count=read_count,
        block_time=block_time,
        session_key_prefix=session_key_prefix,
    )


class StreamsAdapterFactory(RedisConnection["StreamsAdapter"]):
    """Creates one :class:`StreamsAdapter` per namespace and runs their Redis I/O: the
    subscriptions, the publisher, and a reader of the stream.

    Use :func:`create_adapter`. The server calls :meth:`run` while it serves.
    """

    def __init__(
        self,
        client: str | Client,
        *,
        stream_name: str,
        max_len: int,
        read_count: int,
        block_time: float,
        session_key_prefix: str,
        **options: Any,
    ) -> None:
        super().__init__(client, **options)
        self.stream_name = stream_name
        self.max_len = max_len
        self.read_count = read_count
        self.block_time = block_time
        self.session_key_prefix = session_key_prefix
        #: the id of the last entry read (None: not started; the reader then starts at the
        #: stream's end). Kept across outages: what was added meanwhile is read afterwards.
        self.read_offset: str | None = None

    def _make_adapter(self, namespace: SocketRegistry) -> StreamsAdapter:
        return StreamsAdapter(namespace, self)

    async def _subscribe(self, pubsub: Any, adapter: StreamsAdapter) -> None:
        await pubsub.subscribe(adapter.public_channel, adapter.private_channel)

    def _session_tasks(self, nursery: trio.Nursery, client: Client, pubsub: Any) -> None:
        nursery.start_soon(self._reader, client)

    async def _write(self, client: Client, message: tuple[str, Any]) -> None:
        target, data = message
        if isinstance(data, dict):
            await self._xadd(client, data)
        else:
            await client.publish(target, data)

    async def _xadd(self, client: Client, fields: dict[str, str]) -> str:
        identifier = await client.xadd(
            self.stream_name,
            fields,
            trim_strategy=coredis.PureToken.MAXLEN,
            threshold=self.max_len,
            trim_operator=coredis.PureToken.APPROXIMATELY,
        )
        return _text(identifier)

    async def append_now(self, fields: dict[str, str]) -> str | None:
        """Add an entry to the stream at once; its id, or None when Redis cannot take it
        now (the caller then queues it)."""
        client = self._client
        if client is None:
            await trio.lowlevel.checkpoint()
            return None
        try:
            with trio.fail_after(self.requests_timeout):
                return await self._xadd(client, fields)
        except (trio.TooSlowError, OSError, coredis.exceptions.RedisError, RuntimeError) as exc:
            log.debug("XADD failed: %r", exc)
            return None

    def client_now(self) -> Client | None:
        """The client of the current session (None during an outage)."""
        return self._client

    async def _reader(self, client: Client) -> None:
        """Read the stream from where this node left off; hand each entry to its namespace."""
        if self.read_offset is None:
            last = await client.xrevrange(self.stream_name, "+", "-", count=1)
            self.read_offset = _text(last[0].identifier) if last else "0-0"
        block = max(1, round(self.block_time * 1000))
        while True:
            found = await client.xread(
                {self.stream_name: self.read_offset}, count=self.read_count, block=block
            )
            for entries in (found or {}).values():
                for entry in entries:
                    self.read_offset = _text(entry.identifier)
                    await self._on_entry(self.read_offset, entry.field_values)

    async def _on_entry(self, entry_id: str, fields: Any) -> None:
        try:
            message = decode_entry(fields)
            adapter = self._adapters.get(message["nsp"])
            if adapter is not None:
                await adapter.on_message(message, entry_id)
        except ValueError as exc:
            log.debug("dropped a malformed stream entry %s: %s", entry_id, exc)
        except Exception:
            log.exception("a stream entry could not be handled")

    async def _dispatch(self, message: Any) -> None:
        try:
            data = message.get("data")
            if not isinstance(data, bytes):
                return
            channel = _text(message.get("channel"))
            for adapter in self._adapters.values():
                if channel in (adapter.public_channel, adapter.private_channel):
                    await adapter.on_message(decode_pubsub(data), None)
                    return
        except ValueError as exc:
            log.debug("dropped a malformed cluster message: %s", exc)
        except Exception:
            log.exception("a cluster message could not be handled")


class StreamsAdapter(ClusterMessageAdapter):
    """One namespace's rooms, with broadcasts through the stream and requests through
    pub/sub; connection state recovery through Redis (any node can restore a session)."""

    factory: StreamsAdapterFactory

    def __init__(self, namespace: SocketRegistry, factory: StreamsAdapterFactory) -> None:
        super().__init__(namespace, factory)
        self._recovery: ConnectionStateRecovery | None = None

    def _encode(self, kind: MessageType, data: Any) -> bytes:
        return encode_pubsub(self.uid, self.namespace.name, kind, data)

    def _entry(self, kind: MessageType, data: Any) -> dict[str, str]:
        return encode_entry(self.uid, self.namespace.name, kind, data)

    def _send(self, kind: MessageType, data: Any) -> None:
        if _ephemeral(kind, data):
            super()._send(kind, data)
        else:  # an entry of the stream
            self.factory.publish(self.factory.stream_name, self._entry(kind, data))

    def _recordable(self, packet: Packet, options: BroadcastOptions) -> bool:
        return (
            self._recovery is not None
            and packet.type is PacketType.EVENT
            and packet.id is None
            and not options.volatile
        )

    async def _stamped(self, packet: Packet, options: BroadcastOptions) -> Packet:
        """Add the broadcast to the stream; the packet with its offset when it is kept for
        recovery and Redis took it at once (otherwise the entry is queued, no offset)."""
        data = {"packet": packet_to_wire(packet), "opts": options_to_wire(options)}
        if self._recordable(packet, options):
            offset = await self.factory.append_now(self._entry(MessageType.BROADCAST, data))
            if offset is not None:
                return replace(packet, data=[*packet.data, offset])
        self._send(MessageType.BROADCAST, data)
        return packet

    async def broadcast(self, packet: Packet, options: BroadcastOptions) -> None:
        if not options.local:
            packet = await self._stamped(packet, options)
        await InMemoryAdapter.broadcast(self, packet, options)

    async def record_packet(self, packet: Packet, options: BroadcastOptions) -> Packet:
        """An emit to one socket with recovery on: a broadcast to its room through the
        stream (as the JS server does), so that any node can give it back."""
        if self._recovery is None:
            await trio.lowlevel.checkpoint()
            return packet
        return await self._stamped(packet, options)

    async def _deliver(self, packet: Packet, options: BroadcastOptions, offset: str | None) -> None:
        if offset is not None and self._recordable(packet, options):
            packet = replace(packet, data=[*packet.data, offset])
        await InMemoryAdapter.broadcast(self, packet, options)

    # -- connection state recovery ----------------------------------------------------------------
    def enable_recovery(self, options: ConnectionStateRecovery) -> None:
        self._recovery = options

    def last_offset(self) -> str | None:
        return self.factory.read_offset

    async def persist_session(self, session: Session) -> None:
        """Keep the session in Redis for the recovery's duration (any node can restore it).
        Lost (with a debug log) while Redis is unreachable."""
        client = self.factory.client_now()
        if self._recovery is None or client is None:
            await trio.lowlevel.checkpoint()
            return
        value = encode_session(session.sid, session.pid, session.rooms, session.data)
        key = self.factory.session_key_prefix + session.pid
        expiry = max(1, round(self._recovery.max_disconnection_duration * 1000))
        try:
            with trio.fail_after(self.factory.requests_timeout):
                await client.set(key, value, px=expiry)
        except (trio.TooSlowError, OSError, coredis.exceptions.RedisError, RuntimeError) as exc:
            log.debug("a session could not be kept: %r", exc)

    async def restore_session(self, pid: str, offset: str | None) -> RecoveredSession | None:
        """The session ``pid`` from Redis (taken: given back once), with the packets of this
        namespace it missed after ``offset``, read from the stream. None when the session
        or the offset is unknown (the offset is gone once the stream is trimmed past it).

        Raises:
            OSError, coredis.exceptions.RedisError, trio.TooSlowError: Redis failed (the
            server then connects the client as a new socket).
        """
        client = self.factory.client_now()
        if self._recovery is None or client is None or offset is None or not is_offset(offset):
            await trio.lowlevel.checkpoint()
            return None
        stream = self.factory.stream_name
        with trio.fail_after(self.factory.requests_timeout):
            raw = await client.getdel(self.factory.session_key_prefix + pid)
            if raw is None or not await client.xrange(stream, offset, offset):
                return None
            try:
                sid, rooms, data = decode_session(raw)
            except ValueError as exc:
                log.debug("a kept session is malformed: %s", exc)
                return None
            missed: list[list[Any]] = []
            last = offset
            for _ in range(_RESTORE_MAX_XRANGE_CALLS):
                entries = await client.xrange(stream, next_offset(last), "+")
                if not entries:
                    break
                for entry in entries:
                    last = _text(entry.identifier)
                    self._missed(entry.field_values, last, rooms, missed)
        return RecoveredSession(sid, pid, rooms, data, last, missed)

    def _missed(
        self, fields: Any, entry_id: str, rooms: frozenset[str], missed: list[list[Any]]
    ) -> None:
        try:
            message = decode_entry(fields)
            if message["nsp"] != self.namespace.name or message["type"] != MessageType.BROADCAST:
                return
            data = message.get("data")
            if not isinstance(data, dict):
                return
            packet = packet_from_wire(data.get("packet"), self.namespace.name)
            if reaches(options_from_wire(data.get("opts")), rooms):
                missed.append([*packet.data, entry_id])
        except ValueError as exc:
            log.debug("a stream entry could not be read back: %s", exc)


def _ephemeral(kind: MessageType, data: Any) -> bool:
    """Whether a message goes through pub/sub rather than the stream (as the JS adapter
    decides: a broadcast waiting for acks, a server-side emit, a fetch of sockets)."""
    if kind == MessageType.BROADCAST:
        return isinstance(data, dict) and data.get("requestId") is not None
    return kind in (MessageType.SERVER_SIDE_EMIT, MessageType.FETCH_SOCKETS)
