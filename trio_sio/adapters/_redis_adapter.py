"""The Redis adapter of one namespace: its rooms, with broadcasts and requests shared through
the cluster's Redis (the connection: ``_redis_factory``; the messages: ``_redis_wire``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from .._handshake import handshake_to_wire
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
from .base import AdapterSocket, BroadcastOptions, RemoteSocket, SocketRegistry
from .memory import InMemoryAdapter

if TYPE_CHECKING:
    from ._redis_factory import RedisAdapterFactory

__all__ = ["ClusterTimeoutError", "RedisAdapter"]

log = logging.getLogger("trio_sio.adapters.redis")


class ClusterTimeoutError(SocketIOError):
    """Some node did not answer in time.

    Attributes:
        partial: what did come (for ``fetch_sockets``: the sockets found).
    """

    def __init__(self, message: str, partial: list[Any]) -> None:
        super().__init__(message)
        self.partial = partial


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


async def collect_acks(
    adapter: InMemoryAdapter,
    requests: dict[str, _AckRequest],
    packet: Packet,
    options: BroadcastOptions,
    *,
    count: int | None,
    ask: Callable[[str], None],
) -> tuple[list[Any], bool]:
    """A broadcast with acks across the cluster: deliver to this node's sockets and, when
    ``count`` (the nodes, None if unknown) says there are others, ``ask(request_id)`` them;
    collect replies until all came or ``options.timeout`` passed.

    Returns the replies (this node's as they came: those that came are kept when the
    timeout cuts the local delivery short) and whether every one came.
    """
    assert options.timeout is not None
    timeout = options.timeout
    others = 0 if count is None else count - 1  # unknown: this node's replies only
    request_id = new_id()
    pending = _AckRequest(servers=others)
    requests[request_id] = pending
    local: list[Any] = []
    local_complete = False

    async def here() -> None:
        nonlocal local_complete
        _, local_complete = await adapter.namespace.deliver_with_ack(
            adapter.sids(options), packet, timeout, local.append, compress=options.compress
        )

    try:
        if others:
            ask(request_id)
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(here)
                while not pending.complete:
                    await pending.changed.wait()
    finally:
        del requests[request_id]
    return local + pending.replies, local_complete and pending.complete and count is not None


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

        def ask(request_id: str) -> None:
            message = {
                "uid": self.uid,
                "requestId": request_id,
                "type": int(RequestType.BROADCAST),
                "packet": packet_to_wire(packet),
                "opts": options_to_wire(options),
            }
            self.factory.publish(self.channels.request, encode_msgpack(message))

        return await collect_acks(self, self._ack_requests, packet, options, count=count, ask=ask)

    async def fetch_sockets(self, options: BroadcastOptions) -> list[AdapterSocket | RemoteSocket]:
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
        remote = [RemoteSocket.from_wire(self, item) for item in pending.results]
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

    def _local_sockets(self, opts: Any) -> list[AdapterSocket]:
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


def _describe(socket: AdapterSocket) -> dict[str, Any]:
    """A local socket as REMOTE_FETCH answers describe it (JS field names)."""
    return {
        "id": socket.id,
        "handshake": handshake_to_wire(socket.handshake),
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
