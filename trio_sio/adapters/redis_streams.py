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
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import coredis
import trio

from ._redis_adapter import ClusterTimeoutError, _AckRequest, _describe, _Pending, _selection
from ._redis_factory import RedisConnection, RedisStatistics, RedisUnavailable, _text
from ._redis_wire import (
    new_id,
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
from .base import AdapterSocket, BroadcastOptions, RemoteSocket, SocketRegistry
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
    client: str | coredis.Redis[bytes] = "redis://127.0.0.1:6379",
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
        client: str | coredis.Redis[bytes],
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

    def _session_tasks(self, nursery: trio.Nursery, client: coredis.Redis[bytes]) -> None:
        nursery.start_soon(self._reader, client)

    async def _write(self, client: coredis.Redis[bytes], message: tuple[str, Any]) -> None:
        target, data = message
        if isinstance(data, dict):
            await self._xadd(client, data)
        else:
            await client.publish(target, data)

    async def _xadd(self, client: coredis.Redis[bytes], fields: dict[str, str]) -> str:
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

    def client_now(self) -> coredis.Redis[bytes] | None:
        """The client of the current session (None during an outage)."""
        return self._client

    async def _reader(self, client: coredis.Redis[bytes]) -> None:
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


class StreamsAdapter(InMemoryAdapter):
    """One namespace's rooms, with broadcasts through the stream and requests through
    pub/sub; connection state recovery through Redis (any node can restore a session)."""

    def __init__(self, namespace: SocketRegistry, factory: StreamsAdapterFactory) -> None:
        super().__init__(namespace)
        self.factory = factory
        self.uid = factory.uid
        self.public_channel = f"{factory.key}#{namespace.name}#"
        self.private_channel = f"{factory.key}#{namespace.name}#{self.uid}#"
        self._recovery: ConnectionStateRecovery | None = None
        self._requests: dict[str, _Pending] = {}
        self._ack_requests: dict[str, _AckRequest] = {}

    # -- outgoing -------------------------------------------------------------------------------
    def _entry(self, kind: MessageType, data: Any) -> dict[str, str]:
        return encode_entry(self.uid, self.namespace.name, kind, data)

    def _append(self, kind: MessageType, data: Any) -> None:
        """Queue a stream entry for the other nodes."""
        self.factory.publish(self.factory.stream_name, self._entry(kind, data))

    def _request(self, kind: MessageType, data: Any) -> None:
        self.factory.publish(
            self.public_channel, encode_pubsub(self.uid, self.namespace.name, kind, data)
        )

    def _respond(self, requester: Any, kind: MessageType, data: Any) -> None:
        if not isinstance(requester, str):
            return
        channel = f"{self.factory.key}#{self.namespace.name}#{requester}#"
        self.factory.publish(channel, encode_pubsub(self.uid, self.namespace.name, kind, data))

    def _recordable(self, packet: Any, options: BroadcastOptions) -> bool:
        return (
            self._recovery is not None
            and packet.type == 2  # EVENT
            and packet.id is None
            and not options.volatile
        )

    async def _stamped(self, packet: Any, options: BroadcastOptions) -> Any:
        """Add the broadcast to the stream; the packet with its offset when it is kept for
        recovery and Redis took it at once (otherwise the entry is queued, no offset)."""
        data = {"packet": packet_to_wire(packet), "opts": options_to_wire(options)}
        if self._recordable(packet, options):
            offset = await self.factory.append_now(self._entry(MessageType.BROADCAST, data))
            if offset is not None:
                return replace(packet, data=[*packet.data, offset])
        self._append(MessageType.BROADCAST, data)
        return packet

    async def broadcast(self, packet: Any, options: BroadcastOptions) -> None:
        if not options.local:
            packet = await self._stamped(packet, options)
        await super().broadcast(packet, options)

    async def record_packet(self, packet: Any, options: BroadcastOptions) -> Any:
        """An emit to one socket with recovery on: a broadcast to its room through the
        stream (as the JS server does), so that any node can give it back."""
        if self._recovery is None:
            await trio.lowlevel.checkpoint()
            return packet
        return await self._stamped(packet, options)

    async def broadcast_with_ack(
        self, packet: Any, options: BroadcastOptions
    ) -> tuple[list[Any], bool]:
        if options.timeout is None:
            raise ValueError("a broadcast waiting for acks needs a timeout")
        if options.local:
            return await super().broadcast_with_ack(packet, options)
        count = await self.factory.server_count(self.public_channel)
        others = 0 if count is None else count - 1
        request_id = new_id()
        pending = _AckRequest(servers=others)
        self._ack_requests[request_id] = pending
        local: list[Any] = []
        local_complete = False

        async def here() -> None:
            nonlocal local_complete
            assert options.timeout is not None
            _, local_complete = await self.namespace.deliver_with_ack(
                self.sids(options), packet, options.timeout, local.append, compress=options.compress
            )

        try:
            if others:
                data = {
                    "packet": packet_to_wire(packet),
                    "requestId": request_id,
                    "opts": options_to_wire(options),
                }
                self._request(MessageType.BROADCAST, data)
            with trio.move_on_after(options.timeout):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(here)
                    while not pending.complete:
                        await pending.changed.wait()
        finally:
            del self._ack_requests[request_id]
        return local + pending.replies, local_complete and pending.complete and count is not None

    async def fetch_sockets(self, options: BroadcastOptions) -> list[AdapterSocket | RemoteSocket]:
        found = await super().fetch_sockets(options)
        if options.local:
            return found
        count = await self.factory.server_count(self.public_channel)
        if count is None:
            raise ClusterTimeoutError("Redis is unreachable: only this node's sockets", found)
        if count <= 1:
            return found
        request_id = new_id()
        pending = _Pending(expected=count - 1)
        self._requests[request_id] = pending
        try:
            data = {"opts": options_to_wire(options), "requestId": request_id}
            self._request(MessageType.FETCH_SOCKETS, data)
            with trio.move_on_after(self.factory.requests_timeout):
                await pending.done.wait()
        finally:
            del self._requests[request_id]
        remote = [self._remote(item) for item in pending.results]
        sockets = found + [socket for socket in remote if socket is not None]
        if not pending.done.is_set():
            raise ClusterTimeoutError(
                "timeout reached while waiting for fetchSockets response", sockets
            )
        return sockets

    def _remote(self, item: Any) -> RemoteSocket | None:
        from .._handshake import handshake_from_wire  # noqa: PLC0415

        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return None
        rooms = item.get("rooms")
        return RemoteSocket(
            adapter=self,
            id=item["id"],
            handshake=handshake_from_wire(item.get("handshake")),
            rooms=frozenset(str(r) for r in rooms) if isinstance(rooms, list) else frozenset(),
            data=item.get("data"),
        )

    def add_sockets_nowait(self, options: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        super().add_sockets_nowait(options, rooms)
        if not options.local:
            self._append(MessageType.SOCKETS_JOIN, {"opts": _selection(options), "rooms": rooms})

    def del_sockets_nowait(self, options: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        super().del_sockets_nowait(options, rooms)
        if not options.local:
            self._append(MessageType.SOCKETS_LEAVE, {"opts": _selection(options), "rooms": rooms})

    async def disconnect_sockets(self, options: BroadcastOptions, close: bool) -> None:
        if not options.local:
            self._append(
                MessageType.DISCONNECT_SOCKETS, {"opts": _selection(options), "close": close}
            )
        await super().disconnect_sockets(options, close)

    async def server_count(self) -> int:
        """The nodes of the namespace (1 while Redis cannot tell)."""
        return await self.factory.server_count(self.public_channel) or 1

    async def server_side_emit(self, data: list[Any]) -> None:
        self._request(MessageType.SERVER_SIDE_EMIT, {"packet": data})
        await trio.lowlevel.checkpoint()

    async def server_side_emit_with_ack(
        self, data: list[Any], timeout: float
    ) -> tuple[list[Any], bool]:
        count = await self.factory.server_count(self.public_channel)
        if count is None:
            return [], False
        if count <= 1:
            return [], True
        request_id = new_id()
        pending = _Pending(expected=count - 1)
        self._requests[request_id] = pending
        try:
            self._request(MessageType.SERVER_SIDE_EMIT, {"requestId": request_id, "packet": data})
            with trio.move_on_after(timeout):
                await pending.done.wait()
        finally:
            del self._requests[request_id]
        return pending.results, pending.done.is_set()

    # -- incoming -------------------------------------------------------------------------------
    async def on_message(self, message: dict[str, Any], offset: str | None) -> None:
        """A message of another node: a stream entry (with its id) or a pub/sub message.

        Raises:
            ValueError: malformed.
        """
        if message.get("uid") == self.uid or message.get("nsp") != self.namespace.name:
            return
        kind = message.get("type")
        data = message.get("data")
        if kind in _RESPONSES:
            self._on_response(kind, data)
            return
        if not isinstance(data, dict):
            if kind in (MessageType.HEARTBEAT, MessageType.INITIAL_HEARTBEAT):
                return
            raise ValueError("a message needs data")
        requester = message.get("uid")
        if kind == MessageType.BROADCAST:
            if data.get("requestId") is not None:
                self.factory.start_soon(self._on_broadcast_with_ack, requester, data)
                return
            packet = packet_from_wire(data.get("packet"), self.namespace.name)
            options = options_from_wire(data.get("opts"))
            if offset is not None and self._recordable(packet, options):
                packet = replace(packet, data=[*packet.data, offset])
            await InMemoryAdapter.broadcast(self, packet, options)
        elif kind in (MessageType.SOCKETS_JOIN, MessageType.SOCKETS_LEAVE):
            rooms = data.get("rooms")
            if not isinstance(rooms, list):
                raise ValueError("rooms must be a list")
            names = [str(room) for room in rooms]
            options = options_from_wire(data.get("opts"))
            if kind == MessageType.SOCKETS_JOIN:
                InMemoryAdapter.add_sockets_nowait(self, options, names)
            else:
                InMemoryAdapter.del_sockets_nowait(self, options, names)
        elif kind == MessageType.DISCONNECT_SOCKETS:
            options = options_from_wire(data.get("opts"))
            close = bool(data.get("close"))
            self.factory.start_soon(InMemoryAdapter.disconnect_sockets, self, options, close)
        elif kind == MessageType.FETCH_SOCKETS:
            options = options_from_wire(data.get("opts"))
            found = (self.namespace.get_socket(sid) for sid in self.sids(options))
            sockets = [_describe(socket) for socket in found if socket is not None]
            self._respond(
                requester,
                MessageType.FETCH_SOCKETS_RESPONSE,
                {"requestId": data.get("requestId"), "sockets": sockets},
            )
        elif kind == MessageType.SERVER_SIDE_EMIT:
            self._on_server_side_emit(requester, data)

    def _on_server_side_emit(self, requester: Any, data: dict[str, Any]) -> None:
        packet = data.get("packet")
        if not isinstance(packet, list) or not packet:
            raise ValueError("a server-side emit needs [event, ...args]")
        request_id = data.get("requestId")
        reply = None
        if request_id is not None:
            sent = False

            async def reply_once(value: Any) -> None:
                nonlocal sent
                if not sent:
                    sent = True
                    response = {"requestId": request_id, "packet": value}
                    self._respond(requester, MessageType.SERVER_SIDE_EMIT_RESPONSE, response)
                await trio.lowlevel.checkpoint()

            reply = reply_once
        self.factory.start_soon(self.namespace.on_server_side_emit, packet, reply)

    async def _on_broadcast_with_ack(self, requester: Any, data: dict[str, Any]) -> None:
        request_id = data.get("requestId")
        packet = packet_from_wire(data.get("packet"), self.namespace.name)
        options = options_from_wire(data.get("opts"))
        sids = [
            sid
            for sid in self.sids(options)
            if (s := self.namespace.get_socket(sid)) is not None and s.connected
        ]
        count = {"requestId": request_id, "clientCount": len(sids)}
        self._respond(requester, MessageType.BROADCAST_CLIENT_COUNT, count)
        if not sids:
            return

        def on_reply(reply: Any) -> None:
            value = reply[0] if isinstance(reply, tuple) else reply
            ack = {"requestId": request_id, "packet": value}
            self._respond(requester, MessageType.BROADCAST_ACK, ack)

        timeout = options.timeout if options.timeout is not None else self.factory.requests_timeout
        await self.namespace.deliver_with_ack(
            sids, packet, timeout, on_reply, compress=options.compress
        )

    def _on_response(self, kind: Any, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("requestId"), str):
            return
        request_id = data["requestId"]
        ack_request = self._ack_requests.get(request_id)
        if ack_request is not None:
            if kind == MessageType.BROADCAST_CLIENT_COUNT:
                count = data.get("clientCount")
                if isinstance(count, int) and count >= 0:
                    ack_request.counts += 1
                    ack_request.clients += count
            elif kind == MessageType.BROADCAST_ACK:
                ack_request.replies.append(data.get("packet"))
            ack_request.touch()
            return
        pending = self._requests.get(request_id)
        if pending is None:
            return
        if kind == MessageType.FETCH_SOCKETS_RESPONSE:
            sockets = data.get("sockets")
            pending.answer(sockets if isinstance(sockets, list) else ())
        elif kind == MessageType.SERVER_SIDE_EMIT_RESPONSE:
            pending.answer([data.get("packet")])

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


_RESPONSES = frozenset(
    {
        MessageType.FETCH_SOCKETS_RESPONSE,
        MessageType.SERVER_SIDE_EMIT_RESPONSE,
        MessageType.BROADCAST_CLIENT_COUNT,
        MessageType.BROADCAST_ACK,
    }
)
