"""A Redis adapter that speaks the wire format of the official ``@socket.io/redis-adapter``.

trio_sio nodes and Node.js socket.io nodes (with ``@socket.io/redis-adapter`` 8.x, classic
pub/sub) can share one cluster: broadcasts, ``fetch_sockets``, ``sockets_join``/``leave``,
``disconnect_sockets``, server-side emits and broadcasts with acks cross between them::

    from trio_sio.adapters.redis import create_adapter

    sio = trio_sio.Server(adapter=create_adapter("redis://127.0.0.1:6379"))

The server runs the adapter's background work (:meth:`RedisAdapterFactory.run`) while it
serves: one Redis connection for publishing and commands, one for the subscriptions.

Local delivery never waits on Redis: a broadcast is delivered to this node's sockets at once,
and what goes to the other nodes waits in a bounded queue (``publish_queue_size`` messages)
for a publisher task. While Redis is unreachable, messages beyond that queue are dropped (with
one warning per outage); the subscriptions are made again when Redis is back. Operations that
wait for other nodes (``fetch_sockets``, server-side emits with acks, broadcasts with acks)
end at their timeout with what came, as an error that carries it (:class:`ClusterTimeoutError`,
or ``AckTimeoutError.replies``); while Redis is unreachable they end at once the same way,
with this node's part only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

try:
    import anyio
    import coredis
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the Redis adapter needs: pip install 'trio-sio[redis]'") from exc

from ..protocol.errors import SocketIOError
from ..protocol.socketio import Packet
from ._redis_wire import (
    Channels,
    RequestType,
    decode_broadcast,
    decode_message,
    encode_broadcast,
    encode_json,
    encode_msgpack,
    new_id,
    options_from_wire,
    options_to_wire,
    packet_from_wire,
    packet_to_wire,
)
from .base import BroadcastOptions, RemoteSocket, SocketRegistry
from .memory import InMemoryAdapter

if TYPE_CHECKING:
    from ..server.socket import Socket

__all__ = [
    "ClusterTimeoutError",
    "RedisAdapter",
    "RedisAdapterFactory",
    "RedisUnavailable",
    "coredis",
    "create_adapter",
]

log = logging.getLogger("trio_sio.adapters.redis")

_TEARDOWN_ERRORS = (
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    OSError,
    coredis.exceptions.RedisError,
)


class ClusterTimeoutError(SocketIOError):
    """Some node did not answer in time.

    Attributes:
        partial: what did come (for ``fetch_sockets``: the sockets found).
    """

    def __init__(self, message: str, partial: list[Any]) -> None:
        super().__init__(message)
        self.partial = partial


class RedisUnavailable(SocketIOError):
    """Redis could not be reached when the server started."""


def create_adapter(
    url: str = "redis://127.0.0.1:6379",
    *,
    key: str = "socket.io",
    requests_timeout: float = 5.0,
    publish_queue_size: int = 1000,
    connect_timeout: float = 5.0,
) -> RedisAdapterFactory:
    """The adapter factory to pass as ``Server(adapter=...)``.

    Args:
        url: the Redis server, ``redis://[:password@]host:port[/db]`` (``rediss://`` for TLS).
        key: the channel prefix; every node of a cluster must use the same.
        requests_timeout: seconds to wait for other nodes' answers (``fetch_sockets``...).
        publish_queue_size: messages to other nodes that may wait while Redis is slow or
            unreachable; beyond that they are dropped.
        connect_timeout: seconds ``serve()`` waits for Redis at start before failing.
    """
    return RedisAdapterFactory(
        url,
        key=key,
        requests_timeout=requests_timeout,
        publish_queue_size=publish_queue_size,
        connect_timeout=connect_timeout,
    )


@dataclass(slots=True)
class _Pending:
    """A request waiting for other nodes."""

    expected: int
    results: list[Any] = field(default_factory=list)
    answers: int = 0
    done: trio.Event = field(default_factory=trio.Event)

    def answer(self, items: Iterable[Any] = ()) -> None:
        self.answers += 1
        self.results.extend(items)
        if self.answers >= self.expected:
            self.done.set()


@dataclass(slots=True)
class _AckRequest:
    """A broadcast with acks waiting for other nodes' counts and acks."""

    servers: int  # other nodes expected to report a client count
    counts: int = 0
    clients: int = 0
    replies: list[Any] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    @property
    def complete(self) -> bool:
        return self.counts >= self.servers and len(self.replies) >= self.clients

    def touch(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class RedisAdapterFactory:
    """Creates one :class:`RedisAdapter` per namespace and runs their shared Redis I/O.

    Use :func:`create_adapter`. The server calls :meth:`run` while it serves.
    """

    def __init__(
        self,
        url: str,
        *,
        key: str,
        requests_timeout: float,
        publish_queue_size: int,
        connect_timeout: float,
    ) -> None:
        self.url = url
        self.key = key
        self.requests_timeout = requests_timeout
        self.connect_timeout = connect_timeout
        self.uid = new_id()
        self._adapters: dict[str, RedisAdapter] = {}
        self._client: coredis.Redis[bytes] | None = None
        self._nursery: trio.Nursery | None = None
        self._out_send, self._out_recv = trio.open_memory_channel[tuple[str, bytes]](
            publish_queue_size
        )
        # namespaces made while running, to subscribe to (all are subscribed at each start)
        self._new_send, self._new_recv = trio.open_memory_channel[RedisAdapter](math.inf)
        self._dropping = False

    def __call__(self, namespace: SocketRegistry) -> RedisAdapter:
        adapter = RedisAdapter(namespace, self)
        self._adapters[namespace.name] = adapter
        self._new_send.send_nowait(adapter)
        return adapter

    # -- running --------------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, subscribe, and serve the cluster's messages until cancelled.

        Raises:
            RedisUnavailable: Redis did not answer within ``connect_timeout`` at start.

        Later outages are ridden out: the connections are made again and the subscriptions
        renewed, with back-off.
        """
        client: coredis.Redis[bytes] = coredis.Redis.from_url(self.url, decode_responses=False)
        failure: BaseException | None = None
        try:
            with trio.fail_after(self.connect_timeout):
                async with client:
                    await client.ping()
        except* (trio.TooSlowError, *_TEARDOWN_ERRORS) as group:
            failure = group.exceptions[0]
        if failure is not None:
            raise RedisUnavailable(f"Redis at {self.url} is unreachable: {failure!r}")
        status: trio.TaskStatus[None] | None = task_status
        while True:
            try:
                await self._serve(status)
            except* _TEARDOWN_ERRORS as group:
                # The Redis client's own clean-up may fail on a connection that is already
                # gone; when cancelled, the Cancelled part still propagates from here.
                log.debug("Redis connection ended: %r", group.exceptions)
            status = None
            await trio.sleep(1.0)  # then connect again

    async def _serve(self, task_status: trio.TaskStatus[None] | None) -> None:
        client: coredis.Redis[bytes] = coredis.Redis.from_url(self.url, decode_responses=False)
        async with client:
            self._client = client
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            async with pubsub, trio.open_nursery() as nursery:
                self._nursery = nursery
                for adapter in self._adapters.values():
                    await self._subscribe(pubsub, adapter)
                nursery.start_soon(self._subscribe_later, pubsub)
                nursery.start_soon(self._publisher, client)
                if task_status is not None:
                    task_status.started()
                try:
                    while True:  # not `async for`: that ends while a lost connection is made again
                        message = await pubsub.get_message()
                        if message is not None:
                            await self._dispatch(message)
                finally:
                    self._client = None
                    self._nursery = None

    async def _subscribe_later(self, pubsub: Any) -> None:
        while True:  # namespaces made after the start (dynamic ones, or sio.of() later)
            adapter = await self._new_recv.receive()
            await self._subscribe(pubsub, adapter)

    async def _subscribe(self, pubsub: Any, adapter: RedisAdapter) -> None:
        channels = adapter.channels
        await pubsub.psubscribe(channels.broadcast + "*")
        await pubsub.subscribe(channels.request, channels.response, channels.specific_response)

    async def _publisher(self, client: coredis.Redis[bytes]) -> None:
        delay = 0.1
        async for channel, data in self._out_recv:
            while True:
                try:
                    with trio.fail_after(self.requests_timeout):
                        await client.publish(channel, data)
                except (trio.TooSlowError, OSError, coredis.exceptions.RedisError) as exc:
                    log.debug(
                        "publishing to %s failed (%r); retrying in %.1f s", channel, exc, delay
                    )
                    await trio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                if self._dropping:
                    log.info("Redis is reachable again; publishing resumed")
                    self._dropping = False
                delay = 0.1
                break

    def publish(self, channel: str, data: bytes) -> None:
        """Queue a message for the other nodes; never blocks (drops it if the queue is full)."""
        try:
            self._out_send.send_nowait((channel, data))
        except trio.WouldBlock:
            if not self._dropping:
                self._dropping = True
                log.warning("Redis is slow or unreachable: messages to other nodes are dropped")

    async def server_count(self, channel: str) -> int | None:
        """Nodes subscribed to ``channel`` (a request channel), this one included; None
        when Redis cannot tell (unreachable)."""
        client = self._client
        if client is None:
            await trio.lowlevel.checkpoint()
            return None
        try:
            with trio.fail_after(self.requests_timeout):
                counts = await client.pubsub_numsub(channel)
        except (trio.TooSlowError, OSError, coredis.exceptions.RedisError) as exc:
            log.debug("PUBSUB NUMSUB failed: %r", exc)
            return None
        return max(1, int(next(iter(counts.values()), 1)))

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run a task for a message (a reply that must wait); dropped when not running."""
        if self._nursery is not None:
            self._nursery.start_soon(_guarded, fn, *args)

    async def _dispatch(self, message: Any) -> None:
        try:
            channel = _text(message.get("channel"))
            data = message.get("data")
            if not isinstance(data, bytes):
                return
            adapter = self._adapter_for(channel)
            if adapter is None:
                return
            if message.get("type") == "pmessage":
                await adapter.on_broadcast(channel, data)
            elif channel.startswith(adapter.channels.response):
                adapter.on_response(data)
            else:
                adapter.on_request(data)
        except ValueError as exc:
            log.debug("dropped a malformed cluster message: %s", exc)
        except Exception:
            log.exception("a cluster message could not be handled")

    def _adapter_for(self, channel: str) -> RedisAdapter | None:
        for prefix in (f"{self.key}#", f"{self.key}-request#", f"{self.key}-response#"):
            if channel.startswith(prefix):
                rest = channel[len(prefix) :]
                end = rest.find("#")
                adapter = self._adapters.get(rest[:end]) if end >= 0 else None
                if adapter is not None:
                    return adapter
                # a namespace name with '#' in it: find it by its full prefix
                for candidate in self._adapters.values():
                    if channel.startswith(prefix + candidate.namespace.name + "#"):
                        return candidate
                return None
        return None


async def _guarded(fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
    try:
        await fn(*args)
    except Exception:
        log.exception("a cluster task failed")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class RedisAdapter(InMemoryAdapter):
    """One namespace's rooms, with broadcasts and requests shared through Redis."""

    def __init__(self, namespace: SocketRegistry, factory: RedisAdapterFactory) -> None:
        super().__init__(namespace)
        self.factory = factory
        self.uid = factory.uid
        self.channels = Channels.of(factory.key, namespace.name, factory.uid)
        self._requests: dict[str, _Pending] = {}
        self._ack_requests: dict[str, _AckRequest] = {}

    # -- outgoing -------------------------------------------------------------------------------
    def _request(self, body: dict[str, Any]) -> None:
        self.factory.publish(self.channels.request, encode_json({"uid": self.uid, **body}))

    def _response(self, data: bytes) -> None:
        self.factory.publish(self.channels.response, data)

    async def broadcast(self, packet: Packet, options: BroadcastOptions) -> None:
        if not options.local:
            self.factory.publish(
                self.channels.for_rooms(options.rooms), encode_broadcast(self.uid, packet, options)
            )
        await super().broadcast(packet, options)

    async def broadcast_with_ack(
        self, packet: Packet, options: BroadcastOptions
    ) -> tuple[list[Any], bool]:
        if options.timeout is None:
            raise ValueError("a broadcast waiting for acks needs a timeout")
        if options.local:
            return await super().broadcast_with_ack(packet, options)
        count = await self.factory.server_count(self.channels.request)
        others = 0 if count is None else count - 1  # unknown: this node's replies only
        request_id = new_id()
        pending = _AckRequest(servers=others)
        self._ack_requests[request_id] = pending
        # this node's replies as they come: those that came are kept when the timeout
        # cuts the local delivery short (a silent local client)
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
                message = {
                    "uid": self.uid,
                    "requestId": request_id,
                    "type": int(RequestType.BROADCAST),
                    "packet": packet_to_wire(packet),
                    "opts": options_to_wire(options),
                }
                self.factory.publish(self.channels.request, encode_msgpack(message))
            with trio.move_on_after(options.timeout):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(here)
                    while not pending.complete:
                        await pending.changed.wait()
        finally:
            del self._ack_requests[request_id]
        return local + pending.replies, local_complete and pending.complete and count is not None

    async def fetch_sockets(self, options: BroadcastOptions) -> list[Socket | RemoteSocket]:
        found = await super().fetch_sockets(options)
        if options.local:
            return found
        others = await self._others()
        if others is None:
            raise ClusterTimeoutError("Redis is unreachable: only this node's sockets", found)
        if others <= 0:
            return found
        body = {"type": int(RequestType.REMOTE_FETCH), "opts": _selection(options)}
        pending = await self._ask(body, others)
        remote = [self._remote(item) for item in pending.results]
        sockets = found + [socket for socket in remote if socket is not None]
        if not pending.done.is_set():
            raise ClusterTimeoutError(
                "timeout reached while waiting for fetchSockets response", sockets
            )
        return sockets

    async def all_rooms(self) -> frozenset[str]:
        rooms = set(self.rooms())
        others = await self._others()
        if others is None:
            raise ClusterTimeoutError("Redis is unreachable: only this node's rooms", [rooms])
        if others > 0:
            pending = await self._ask({"type": int(RequestType.ALL_ROOMS)}, others)
            rooms.update(str(room) for room in pending.results)
            if not pending.done.is_set():
                raise ClusterTimeoutError(
                    "timeout reached while waiting for allRooms response", [rooms]
                )
        return frozenset(rooms)

    async def _ask(self, body: dict[str, Any], others: int) -> _Pending:
        request_id = new_id()
        pending = _Pending(expected=others)
        self._requests[request_id] = pending
        try:
            self._request({"requestId": request_id, **body})
            with trio.move_on_after(self.factory.requests_timeout):
                await pending.done.wait()
        finally:
            del self._requests[request_id]
        return pending

    def _remote(self, item: Any) -> RemoteSocket | None:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return None
        handshake = item.get("handshake")
        rooms = item.get("rooms")
        return RemoteSocket(
            adapter=self,
            id=item["id"],
            handshake=handshake if isinstance(handshake, dict) else {},
            rooms=frozenset(str(r) for r in rooms) if isinstance(rooms, list) else frozenset(),
            data=item.get("data"),
        )

    def add_sockets_nowait(self, options: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        super().add_sockets_nowait(options, rooms)
        if not options.local:
            self._request(
                {"type": int(RequestType.REMOTE_JOIN), "opts": _selection(options), "rooms": rooms}
            )

    def del_sockets_nowait(self, options: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        super().del_sockets_nowait(options, rooms)
        if not options.local:
            self._request(
                {"type": int(RequestType.REMOTE_LEAVE), "opts": _selection(options), "rooms": rooms}
            )

    async def disconnect_sockets(self, options: BroadcastOptions, close: bool) -> None:
        if not options.local:
            self._request(
                {
                    "type": int(RequestType.REMOTE_DISCONNECT),
                    "opts": _selection(options),
                    "close": close,
                }
            )
        await super().disconnect_sockets(options, close)

    async def server_count(self) -> int:
        """The nodes of the namespace (1 while Redis cannot tell)."""
        return await self.factory.server_count(self.channels.request) or 1

    async def _others(self) -> int | None:
        count = await self.factory.server_count(self.channels.request)
        return None if count is None else count - 1

    async def server_side_emit(self, data: list[Any]) -> None:
        self._request({"type": int(RequestType.SERVER_SIDE_EMIT), "data": data})
        await trio.lowlevel.checkpoint()

    async def server_side_emit_with_ack(
        self, data: list[Any], timeout: float
    ) -> tuple[list[Any], bool]:
        others = await self._others()
        if others is None:
            return [], False  # Redis is unreachable: no node can be asked
        if others <= 0:
            return [], True
        request_id = new_id()
        pending = _Pending(expected=others)
        self._requests[request_id] = pending
        try:
            self._request(
                {"requestId": request_id, "type": int(RequestType.SERVER_SIDE_EMIT), "data": data}
            )
            with trio.move_on_after(timeout):
                await pending.done.wait()
        finally:
            del self._requests[request_id]
        return pending.results, pending.done.is_set()

    # -- incoming -------------------------------------------------------------------------------
    async def on_broadcast(self, channel: str, raw: bytes) -> None:
        """A broadcast from another node (or an emitter): deliver it to this node's sockets."""
        room = self.channels.room_of(channel)
        if room is None or (room and room not in self._rooms and not self._kept_room(room)):
            return  # a room with no socket (or kept session) here: not even decoded
        uid, packet, options = decode_broadcast(raw, self.namespace.name)
        if uid == self.uid:
            return
        await super().broadcast(packet, options)

    def on_request(self, raw: bytes) -> None:
        """A request from another node."""
        request = decode_message(raw)
        kind = request.get("type")
        request_id = request.get("requestId")
        mine = request.get("uid") == self.uid
        if kind == RequestType.SOCKETS and not mine:
            sids = self.sids(options_from_wire({"rooms": request.get("rooms") or []}))
            self._response(encode_json({"requestId": request_id, "sockets": sids}))
        elif kind == RequestType.ALL_ROOMS and not mine:
            self._response(encode_json({"requestId": request_id, "rooms": list(self._rooms)}))
        elif kind in (RequestType.REMOTE_JOIN, RequestType.REMOTE_LEAVE) and not mine:
            self._on_remote_rooms(request, join=kind == RequestType.REMOTE_JOIN)
        elif kind == RequestType.REMOTE_DISCONNECT and not mine:
            self.factory.start_soon(self._on_remote_disconnect, request)
        elif kind == RequestType.REMOTE_FETCH and not mine:
            sockets = [_describe(s) for s in self._local_sockets(request.get("opts"))]
            self._response(encode_json({"requestId": request_id, "sockets": sockets}))
        elif kind == RequestType.SERVER_SIDE_EMIT and not mine:
            self._on_server_side_emit(request)
        elif kind == RequestType.BROADCAST and request_id not in self._ack_requests:
            self.factory.start_soon(self._on_broadcast_with_ack, request)

    def _local_sockets(self, opts: Any) -> list[Socket]:
        found = (self.namespace.get_socket(sid) for sid in self.sids(options_from_wire(opts)))
        return [socket for socket in found if socket is not None]

    def _on_remote_rooms(self, request: dict[str, Any], *, join: bool) -> None:
        rooms = request.get("rooms")
        if "opts" in request:
            if not isinstance(rooms, list):
                raise ValueError("rooms must be a list")
            options = options_from_wire(request["opts"])
            names = [str(room) for room in rooms]
            (super().add_sockets_nowait if join else super().del_sockets_nowait)(options, names)
            return
        # the legacy form, for one socket: {sid, room}, answered
        sid, room = request.get("sid"), request.get("room")
        if not isinstance(sid, str) or not isinstance(room, str) or sid not in self._sids:
            return
        if join:
            self.add_all(sid, (room,))
        else:
            self.delete(sid, room)
        self._response(encode_json({"requestId": request.get("requestId")}))

    async def _on_remote_disconnect(self, request: dict[str, Any]) -> None:
        close = bool(request.get("close"))
        if "opts" in request:
            await super().disconnect_sockets(options_from_wire(request["opts"]), close)
            return
        socket = self.namespace.get_socket(str(request.get("sid")))
        if socket is not None:
            await socket.disconnect(close)
            self._response(encode_json({"requestId": request.get("requestId")}))

    def _on_server_side_emit(self, request: dict[str, Any]) -> None:
        data = request.get("data")
        if not isinstance(data, list) or not data:
            raise ValueError("a server-side emit needs [event, ...args]")
        request_id = request.get("requestId")
        reply = None
        if request_id is not None:
            sent = False

            async def reply_once(value: Any) -> None:
                nonlocal sent
                if not sent:
                    sent = True
                    message = {"type": 6, "requestId": request_id, "data": value}
                    self._response(encode_json(message))
                await trio.lowlevel.checkpoint()

            reply = reply_once
        self.factory.start_soon(self.namespace.on_server_side_emit, data, reply)

    async def _on_broadcast_with_ack(self, request: dict[str, Any]) -> None:
        request_id = request.get("requestId")
        packet = packet_from_wire(request.get("packet"), self.namespace.name)
        options = options_from_wire(request.get("opts"))
        sids = [
            sid
            for sid in self.sids(options)
            if (s := self.namespace.get_socket(sid)) is not None and s.connected
        ]
        self._response(
            encode_json(
                {
                    "type": int(RequestType.BROADCAST_CLIENT_COUNT),
                    "requestId": request_id,
                    "clientCount": len(sids),
                }
            )
        )
        if not sids:
            return

        def on_reply(reply: Any) -> None:
            value = reply[0] if isinstance(reply, tuple) else reply
            message = {
                "type": int(RequestType.BROADCAST_ACK),
                "requestId": request_id,
                "packet": value,
            }
            self._response(encode_msgpack(message))

        timeout = options.timeout if options.timeout is not None else self.factory.requests_timeout
        await self.namespace.deliver_with_ack(
            sids, packet, timeout, on_reply, compress=options.compress
        )

    def on_response(self, raw: bytes) -> None:
        """A response to one of this node's requests (or another node's: ignored)."""
        response = decode_message(raw)
        request_id = response.get("requestId")
        if not isinstance(request_id, str):
            return
        ack_request = self._ack_requests.get(request_id)
        if ack_request is not None:
            kind = response.get("type")
            if kind == RequestType.BROADCAST_CLIENT_COUNT:
                count = response.get("clientCount")
                if isinstance(count, int) and count >= 0:
                    ack_request.counts += 1
                    ack_request.clients += count
            elif kind == RequestType.BROADCAST_ACK:
                ack_request.replies.append(response.get("packet"))
            ack_request.touch()
            return
        pending = self._requests.get(request_id)
        if pending is None:
            return
        if "sockets" in response:
            sockets = response["sockets"]
            pending.answer(sockets if isinstance(sockets, list) else ())
        elif "rooms" in response:
            rooms = response["rooms"]
            pending.answer(rooms if isinstance(rooms, list) else ())
        elif response.get("type") == RequestType.SERVER_SIDE_EMIT:
            pending.answer([response.get("data")])


def _selection(options: BroadcastOptions) -> dict[str, list[str]]:
    return {"rooms": sorted(options.rooms), "except": sorted(options.except_rooms)}


def _describe(socket: Socket) -> dict[str, Any]:
    """A local socket as REMOTE_FETCH answers describe it (JS field names)."""
    handshake = socket.handshake
    return {
        "id": socket.id,
        "handshake": {
            "headers": dict(handshake.headers),
            "time": handshake.time,
            "address": handshake.address,
            "xdomain": handshake.xdomain,
            "secure": handshake.secure,
            "issued": handshake.issued,
            "url": handshake.url,
            "query": dict(handshake.query),
            "auth": handshake.auth,
        },
        "rooms": sorted(socket.rooms),
        "data": _json_safe(socket.data),
    }


def _json_safe(value: Any) -> Any:
    try:
        encode_json(value)
    except (TypeError, ValueError):
        log.debug("socket data that JSON cannot carry is sent as null")
        return None
    return value
