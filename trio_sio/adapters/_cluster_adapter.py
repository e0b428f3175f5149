"""The messages of ``socket.io-adapter``'s ``ClusterAdapter`` (2.5), on which the official
Redis Streams adapter and sharded Redis adapter are built: one implementation of every
operation that crosses nodes, whatever carries the messages.

See :mod:`trio_sio.adapters._streams_wire` for the message types and shapes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import trio

from ..protocol.socketio import Packet
from ._redis_adapter import (
    ClusterTimeoutError,
    _AckRequest,
    _describe,
    _Pending,
    _selection,
    collect_acks,
)
from ._redis_factory import RedisConnection
from ._redis_wire import (
    new_id,
    options_from_wire,
    options_to_wire,
    packet_from_wire,
    packet_to_wire,
)
from ._streams_wire import MessageType
from .base import AdapterSocket, BroadcastOptions, RemoteSocket, SocketRegistry
from .memory import InMemoryAdapter

__all__ = ["ClusterMessageAdapter"]

log = logging.getLogger("trio_sio.adapters.redis")


class ClusterMessageAdapter(InMemoryAdapter):
    """One namespace's rooms, with the messages of ``socket.io-adapter``'s ``ClusterAdapter``
    to and from the other nodes. Subclasses say how a message is written (:meth:`_encode`)
    and where it goes (:meth:`_send`; by default to the namespace's channel).

    Attributes:
        public_channel: where requests to every node go (``prefix#nsp#``); the count of
            its subscribers is the count of nodes.
        private_channel: where this node's responses come (``prefix#nsp#uid#``).
    """

    def __init__(self, namespace: SocketRegistry, factory: RedisConnection[Any]) -> None:
        super().__init__(namespace)
        self.factory = factory
        self.uid = factory.uid
        self.public_channel = f"{factory.key}#{namespace.name}#"
        self.private_channel = f"{factory.key}#{namespace.name}#{self.uid}#"
        self._requests: dict[str, _Pending] = {}
        self._ack_requests: dict[str, _AckRequest] = {}

    # -- outgoing -------------------------------------------------------------------------------
    def _encode(self, kind: MessageType, data: Any) -> bytes:
        """A message of this node, as the other nodes read it."""
        raise NotImplementedError

    def _send(self, kind: MessageType, data: Any) -> None:
        """Queue a message for the other nodes."""
        self.factory.publish(self.public_channel, self._encode(kind, data))

    def _respond(self, requester: Any, kind: MessageType, data: Any) -> None:
        if not isinstance(requester, str):
            return
        channel = f"{self.factory.key}#{self.namespace.name}#{requester}#"
        self.factory.publish(channel, self._encode(kind, data))

    async def broadcast(self, packet: Packet, options: BroadcastOptions) -> None:
        if not options.local:
            data = {"packet": packet_to_wire(packet), "opts": options_to_wire(options)}
            self._send(MessageType.BROADCAST, data)
        await super().broadcast(packet, options)

    async def broadcast_with_ack(
        self, packet: Any, options: BroadcastOptions
    ) -> tuple[list[Any], bool]:
        if options.timeout is None:
            raise ValueError("a broadcast waiting for acks needs a timeout")
        if options.local:
            return await super().broadcast_with_ack(packet, options)
        count = await self.factory.server_count(self.public_channel)

        def ask(request_id: str) -> None:
            data = {
                "packet": packet_to_wire(packet),
                "requestId": request_id,
                "opts": options_to_wire(options),
            }
            self._send(MessageType.BROADCAST, data)

        return await collect_acks(self, self._ack_requests, packet, options, count=count, ask=ask)

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
            self._send(MessageType.FETCH_SOCKETS, data)
            with trio.move_on_after(self.factory.requests_timeout):
                await pending.done.wait()
        finally:
            del self._requests[request_id]
        remote = [RemoteSocket.from_wire(self, item) for item in pending.results]
        sockets = found + [socket for socket in remote if socket is not None]
        if not pending.done.is_set():
            raise ClusterTimeoutError(
                "timeout reached while waiting for fetchSockets response", sockets
            )
        return sockets

    def add_sockets_nowait(self, options: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        super().add_sockets_nowait(options, rooms)
        if not options.local:
            self._send(MessageType.SOCKETS_JOIN, {"opts": _selection(options), "rooms": rooms})

    def del_sockets_nowait(self, options: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        super().del_sockets_nowait(options, rooms)
        if not options.local:
            self._send(MessageType.SOCKETS_LEAVE, {"opts": _selection(options), "rooms": rooms})

    async def disconnect_sockets(self, options: BroadcastOptions, close: bool) -> None:
        if not options.local:
            self._send(
                MessageType.DISCONNECT_SOCKETS, {"opts": _selection(options), "close": close}
            )
        await super().disconnect_sockets(options, close)

    async def server_count(self) -> int:
        """The nodes of the namespace (1 while Redis cannot tell)."""
        return await self.factory.server_count(self.public_channel) or 1

    async def server_side_emit(self, data: list[Any]) -> None:
        self._send(MessageType.SERVER_SIDE_EMIT, {"packet": data})
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
            self._send(MessageType.SERVER_SIDE_EMIT, {"requestId": request_id, "packet": data})
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
            await self._deliver(packet, options, offset)
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

    async def _deliver(self, packet: Packet, options: BroadcastOptions, offset: str | None) -> None:
        """Deliver another node's broadcast to this node's sockets (``offset``: its id in
        a stream, if it came from one)."""
        await InMemoryAdapter.broadcast(self, packet, options)


_RESPONSES = frozenset(
    {
        MessageType.FETCH_SOCKETS_RESPONSE,
        MessageType.SERVER_SIDE_EMIT_RESPONSE,
        MessageType.BROADCAST_CLIENT_COUNT,
        MessageType.BROADCAST_ACK,
    }
)
