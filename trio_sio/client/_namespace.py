"""The connection state of a client namespace socket: connecting, disconnecting, and what
happens to its buffered emits and pending acks at each change.

A namespace the client should connect is *wanted*: the namespaces given to the client (or
made with ``client.of()`` before it connects), and any namespace after :meth:`connect`. The
client connects every wanted namespace on each (re)connection. A namespace stops being
wanted when the server disconnects it (``"io server disconnect"``), refuses it
(CONNECT_ERROR), or the user calls :meth:`disconnect`; it is then closed: emits raise
ConnectionClosed and pending acks fail, until :meth:`connect`.

Connection state recovery: when the server gives a private session id (``pid``) in its
CONNECT reply, the socket remembers it and the offset of the last event it got (the last
argument of each event without ack id, taken off before the handlers see it); after a lost
connection its CONNECT carries both, and if the server gives the socket back, ``recovered``
is true and the events missed meanwhile (which the server sends before its CONNECT reply)
are handled first, before the ``"connect"`` handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import trio

from .._acks import AckRegistry, AckSlot
from .._handlers import AckRoute
from ..protocol.errors import ConnectionClosed, ConnectionRefused
from ..protocol.serialize import to_wire
from ..protocol.socketio import Packet, PacketType
from ._dispatch import Dispatcher
from ._link import Link, Session
from ._parts import ManagerPort
from ._queues import Incoming, SendBuffer
from ._reader import OnWait

__all__ = ["DRAIN_GRACE", "NamespaceState", "link_acks"]

log = logging.getLogger("trio_sio.client")

#: Seconds a disconnect (or the client's close) lets already buffered emits go out.
DRAIN_GRACE = 2.0

#: Events received before the server's CONNECT reply (missed events of a recovered session)
#: kept at most; beyond that they are dropped and the connection is not ``recovered``.
MAX_EARLY_EVENTS = 10_000


class NamespaceState:
    """Connection state, send buffer and pending acks of one namespace socket.

    The :class:`~trio_sio.ClientSocket` owns one; the manager drives it with the packets
    it receives and the changes of its connection.

    Args:
        manager: the client's connection manager.
        namespace: the namespace name.
        dispatcher: the socket's handlers: events and lifecycle events go there.
    """

    def __init__(self, manager: ManagerPort, namespace: str, dispatcher: Dispatcher) -> None:
        options = manager.options
        self._manager = manager
        self.namespace = namespace
        self._dispatcher = dispatcher
        self.id: str | None = None
        self.server_disconnected = False
        self.refused = False
        self.recovered = False
        self._pid: str | None = None  # the server's private session id (recovery)
        self._offset: str | None = None  # the offset of the last event received
        self._early: list[Packet] = []  # events received before the CONNECT reply
        self._early_dropped = False
        self.link: Link | None = None  # the namespace connection, while connected
        self._ready = trio.Event()
        self.changed = trio.Event()  # set (and replaced) at each change
        self.want = not manager.is_running
        self._refusal: ConnectionRefused | None = None
        self._connect_sent_on: Session | None = None
        self._shut = False
        self.buffer = SendBuffer(options.buffer_size)
        self.acks = AckRegistry(options.max_pending_acks)
        self.pending: set[int] = set()  # ack ids waited for
        self.sent_acks: set[int] = set()  # ... whose packet went out on the current link

    @property
    def connected(self) -> bool:
        """Whether the namespace is connected right now."""
        return self._ready.is_set()

    async def wait_connected(self) -> None:
        """Block until the namespace is connected. Cancellation: safe; it only waits."""
        await self._ready.wait()

    async def connect(self) -> None:
        """Ask for the namespace and wait until it is connected; see
        :meth:`ClientSocket.connect <trio_sio.ClientSocket.connect>`."""
        manager = self._manager
        if self._shut:
            await trio.lowlevel.checkpoint()
            raise ConnectionClosed(self.buffer.refused or "client is closed")
        if not manager.is_running:
            raise RuntimeError("the client is not running: connect inside `async with client`")
        if not self.connected:
            self.want = True
            self._refusal = None
            self.server_disconnected = self.refused = False
            self.buffer.reopen()
            self._notify()
            manager.wake()
            session = manager.session
            if session is not None and not session.closed.is_set():
                await self.request_connect(session, await manager.auth())
        while True:
            changed = self.changed
            if self.connected:
                await trio.lowlevel.checkpoint()
                return
            if self._refusal is not None:
                raise ConnectionRefused(self._refusal.message, self._refusal.data)
            if self._shut:
                raise ConnectionClosed(self.buffer.refused or "client is closed")
            if not self.want:
                raise ConnectionClosed("io client disconnect")
            await changed.wait()

    async def disconnect(self) -> None:
        """Leave the namespace; see :meth:`ClientSocket.disconnect
        <trio_sio.ClientSocket.disconnect>`."""
        if self._shut:
            await trio.lowlevel.checkpoint()
            return
        self.want = False
        self._notify()
        try:
            link = self.link
            if link is not None and not link.closed.is_set():
                with trio.move_on_after(DRAIN_GRACE):
                    await self.drain("io client disconnect")
                    try:
                        await link.send(self._encode(PacketType.DISCONNECT))
                    except ConnectionClosed:
                        pass
            else:
                await trio.lowlevel.checkpoint()
        finally:
            self._close_namespace("io client disconnect")
            self._manager.release_if_unused()

    # -- acks -----------------------------------------------------------------------------
    def new_ack(self) -> tuple[int, AckSlot]:
        ack_id, slot = self.acks.new()
        self.pending.add(ack_id)
        return ack_id, slot

    def ack_done(self, ack_id: int) -> None:
        """Forget an ack id: its ack came, or its waiter gave up."""
        self.acks.discard(ack_id)
        self.pending.discard(ack_id)
        self.sent_acks.discard(ack_id)

    def fail_acks(self, ack_ids: set[int], reason: str) -> None:
        ack_ids = set(ack_ids)
        self.acks.fail(ack_ids, reason)
        self.pending -= ack_ids
        self.sent_acks -= ack_ids

    def on_ack(self, packet: Packet) -> None:
        if packet.id is not None:
            self.acks.resolve(packet.id, packet.data)
            self.pending.discard(packet.id)
            self.sent_acks.discard(packet.id)

    # -- state changes --------------------------------------------------------------------
    def _encode(self, ptype: PacketType, data: Any = None) -> list[str | bytes]:
        return self._manager.encode(Packet(ptype, self.namespace, data))

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def say_goodbye(self) -> bool:
        """Send DISCONNECT on the current namespace connection; False if the session is
        gone (then no other namespace can say it either)."""
        link = self.link
        if link is not None:
            try:
                await link.send(self._encode(PacketType.DISCONNECT))
            except ConnectionClosed:
                return False
        else:
            await trio.lowlevel.checkpoint()
        return True

    async def drain(self, reason: str) -> None:
        """Refuse new emits with ConnectionClosed(reason); wait until the buffered ones
        have gone to the connection."""
        self.buffer.seal(reason)
        await self.buffer.wait_empty()

    async def request_connect(self, session: Session, auth: Any) -> None:
        """Send CONNECT on ``session`` unless it was sent there already."""
        if self._connect_sent_on is session or self.connected or not self.want:
            await trio.lowlevel.checkpoint()
            return
        self._connect_sent_on = session
        self._early.clear()
        self._early_dropped = False
        try:
            await session.send(self._encode(PacketType.CONNECT, self._connect_payload(auth)))
        except ConnectionClosed:
            pass

    def _connect_payload(self, auth: Any) -> Any:
        """The CONNECT data: ``auth``, plus ``pid`` and ``offset`` to recover a session (the
        keys of ``auth`` win, as with socket.io-client)."""
        if self._pid is None:
            return auth
        payload: dict[str, Any] = {"pid": self._pid}
        if self._offset is not None:
            payload["offset"] = self._offset
        if isinstance(auth, dict):
            payload.update(auth)
        return payload

    def _take_offset(self, packet: Packet) -> Packet:
        """Remember the offset of an event kept by the server for recovery (its last
        argument, when a session id was given and the event has no ack id) and take it
        off; other events are returned as they are."""
        data = packet.data
        if self._pid is None or packet.id is not None or len(data) < 2:
            return packet
        offset = data[-1]
        if not isinstance(offset, str):
            return packet
        self._offset = offset
        return replace(packet, data=data[:-1])

    def _keep_early(self, packet: Packet) -> bool:
        """Keep an event that came before the CONNECT reply; False if none is awaited."""
        if self._connect_sent_on is None or self.link is not None:
            return False
        if len(self._early) < MAX_EARLY_EVENTS:
            self._early.append(packet)
        elif not self._early_dropped:
            self._early_dropped = True
            log.warning("%s: too many events before the CONNECT reply; dropped", self.namespace)
        return True

    async def on_event(self, packet: Packet, on_wait: OnWait | None = None) -> None:
        """An EVENT for this namespace, from the reading task: its handler runs right here
        until it waits (then ``on_wait`` is called), unless events wait before it or its
        handler is ordered; then it is queued, and this blocks while the queue is full."""
        link = self.link
        if link is None:
            # Before the CONNECT reply (a recovered session's missed events): kept until
            # it comes; otherwise (not connected any more) ignored, as by the JS client.
            self._keep_early(packet)
            await trio.lowlevel.checkpoint()
            return
        await self._queue_event(packet, link, on_wait)

    async def _queue_event(self, packet: Packet, link: Link, on_wait: OnWait | None = None) -> None:
        """Hand an event to the handlers: inline in the reading task when it may (see
        :meth:`Dispatcher.dispatch_inline`), else through the queue (blocking while it is
        full)."""
        packet = self._take_offset(packet)
        item = Incoming("event", packet, (), link)
        if on_wait is not None and await self._dispatcher.dispatch_inline(item, on_wait):
            return
        await self._dispatcher.queue.put_event(item)

    async def on_connect(self, sid: str, session: Session, pid: str | None = None) -> None:
        self._connect_sent_on = None
        if not self.want:
            # disconnect() was called while the CONNECT was on its way: leave at once.
            try:
                await session.send(self._encode(PacketType.DISCONNECT))
            except ConnectionClosed:
                pass
            return
        if self.link is not None:
            return
        link = self.link = Link(session, sid)
        self.id = sid
        self.recovered = pid is not None and pid == self._pid and not self._early_dropped
        self._pid = pid
        if not self.recovered:
            self._offset = None
        early, self._early = self._early, []
        self._ready.set()
        self._notify()
        for packet in early:  # the events missed while disconnected come first
            await self._queue_event(packet, link)
        self._dispatcher.lifecycle("connect")

    def on_connect_error(self, data: Any) -> None:
        self._connect_sent_on = None
        info = data if isinstance(data, dict) else {"message": data}
        self._refusal = ConnectionRefused(str(info.get("message", "refused")), info.get("data"))
        self.refused = True
        self.want = False
        self._close_namespace("io server disconnect")
        self._dispatcher.lifecycle("connect_error", data)

    def on_server_disconnect(self) -> None:
        self.server_disconnected = True
        self.want = False
        self._close_namespace("io server disconnect")

    def _drop_link(self) -> bool:
        """Forget the current namespace connection; returns whether there was one."""
        link, self.link = self.link, None
        self._connect_sent_on = None
        self._early.clear()
        self.id = None
        if link is not None:
            link.close()
        if self._ready.is_set():
            self._ready = trio.Event()
            return True
        return False

    def on_transport_lost(self, reason: str) -> None:
        """The Engine.IO connection ended: the packets that went out on it lose their acks;
        the buffered ones wait for the next connection."""
        was_connected = self._drop_link()
        self.fail_acks(self.sent_acks, reason)
        self._notify()
        if was_connected:
            self._dispatcher.lifecycle("disconnect", reason)

    def _close_namespace(self, reason: str) -> None:
        """The namespace is disconnected for good (until connect()): discard the buffer,
        fail every pending ack, refuse emits."""
        was_connected = self._drop_link()
        self._pid = self._offset = None  # a server never keeps such a session
        self.buffer.close(reason)
        self.fail_acks(self.pending, reason)
        self._notify()
        if was_connected:
            self._dispatcher.lifecycle("disconnect", reason)

    def shutdown(self, reason: str) -> None:
        """The client is closing or gave up: refuse new emits, fail every pending ack."""
        self._shut = True
        self.want = False
        was_connected = self._drop_link()
        self.buffer.close(reason)
        self.acks.close(reason)
        self.pending.clear()
        self.sent_acks.clear()
        self._notify()
        if was_connected:
            self._dispatcher.lifecycle("disconnect", reason)

    def reopen(self, want: bool) -> None:
        """The client is entered again after it ended: accept emits again, with fresh
        pending acks; connect with the client if ``want``."""
        self._shut = False
        self.want = want
        self._refusal = None
        self.server_disconnected = self.refused = self.recovered = False
        self._pid = self._offset = None
        self.buffer.reopen()
        self.acks = AckRegistry(self._manager.options.max_pending_acks)
        self.pending.clear()
        self.sent_acks.clear()
        self._notify()


def link_acks(manager: ManagerPort, namespace: str) -> Callable[[Link | None], AckRoute]:
    """Where the acks of events received on a namespace connection go: that connection
    only (dropped silently once it is gone)."""

    def route(link: Link | None) -> AckRoute:
        return _LinkAcks(manager, namespace, link)

    return route


class _LinkAcks:
    """The acks of events received on one namespace connection (see ``AckRoute``)."""

    __slots__ = ("_link", "_manager", "_namespace")

    def __init__(self, manager: ManagerPort, namespace: str, link: Link | None) -> None:
        self._manager = manager
        self._namespace = namespace
        self._link = link

    async def _send_ack(self, ack_id: int, args: tuple[Any, ...]) -> None:
        data = to_wire(args)
        link = self._link
        if link is None or link.closed.is_set():
            await trio.lowlevel.checkpoint()
            return
        frames = self._manager.encode(Packet(PacketType.ACK, self._namespace, data, ack_id))
        try:
            await link.send(frames)
        except ConnectionClosed:
            pass
