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
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import trio

from .._acks import AckRegistry, AckSlot
from .._handlers import AckRoute
from ..protocol.errors import ConnectionClosed, ConnectionRefused
from ..protocol.serialize import to_wire
from ..protocol.socketio import Packet, PacketType
from ._dispatch import Dispatcher
from ._link import Link, Session
from ._queues import Incoming, SendBuffer
from ._reader import OnWait

if TYPE_CHECKING:
    from ._manager import Manager
    from .client import Client

__all__ = ["DRAIN_GRACE", "NamespaceState"]

log = logging.getLogger("trio_sio.client")

#: Seconds a disconnect (or the client's close) lets already buffered emits go out.
DRAIN_GRACE = 2.0

#: Events received before the server's CONNECT reply (missed events of a recovered session)
#: kept at most; beyond that they are dropped and the connection is not ``recovered``.
MAX_EARLY_EVENTS = 10_000


class NamespaceState:
    """Connection state, send buffer and pending acks of one namespace socket."""

    def __init__(self, manager: Manager, client: Client, namespace: str) -> None:
        options = manager.options
        self.client = client
        self._manager = manager
        self.namespace = namespace
        self._dispatcher = Dispatcher(
            f"<ClientSocket {namespace}>",
            self._ack_route,
            queue_size=options.event_queue_size,
            limit=options.max_concurrent_handlers,
            ordered=options.ordered_handlers,
        )
        self.id: str | None = None
        self.server_disconnected = False
        self.refused = False
        self.recovered = False
        self._pid: str | None = None  # the server's private session id (recovery)
        self._offset: str | None = None  # the offset of the last event received
        self._early: list[Packet] = []  # events received before the CONNECT reply
        self._early_dropped = False
        self._link: Link | None = None
        self._ready = trio.Event()
        self._changed = trio.Event()
        self._want = not manager.is_running
        self._refusal: ConnectionRefused | None = None
        self._connect_sent_on: Session | None = None
        self._shut = False
        self._buffer = SendBuffer(options.buffer_size)
        self._acks = AckRegistry(options.max_pending_acks)
        self._pending: set[int] = set()  # ack ids waited for
        self._sent_acks: set[int] = set()  # ... whose packet went out on the current link

    @property
    def connected(self) -> bool:
        """Whether the namespace is connected right now."""
        return self._ready.is_set()

    async def wait_connected(self) -> None:
        """Block until the namespace is connected.

        Cancellation: safe; it only waits.
        """
        await self._ready.wait()

    async def connect(self) -> None:
        """Connect this namespace on the client's connection, as socket.io-client's
        ``socket.connect()``: for a namespace made with ``client.of()`` after the client
        connected, or one disconnected by the server, a refusal, or :meth:`disconnect`.

        ``auth`` is evaluated again. Emits are accepted (and buffered) again at once. If the
        client's connection is down, the namespace connects once it is back; if the client
        had closed its connection for want of namespaces, it opens a new one.

        Raises:
            ConnectionRefused: the server refused the namespace (its message and data).
            ConnectionClosed: the client is closed or gave up reconnecting, or
                :meth:`disconnect` was called meanwhile.
            RuntimeError: the client is not running (use it inside ``async with client``).

        Blocks: until the namespace is connected (returns at once if it is).

        Cancellation: if cancelled, the request stands: the namespace still connects (call
        :meth:`disconnect` to withdraw it).
        """
        manager = self._manager
        if self._shut:
            await trio.lowlevel.checkpoint()
            raise ConnectionClosed(self._buffer.refused or "client is closed")
        if not manager.is_running:
            raise RuntimeError("the client is not running: connect inside `async with client`")
        if not self.connected:
            self._want = True
            self._refusal = None
            self.server_disconnected = self.refused = False
            self._buffer.reopen()
            self._notify()
            manager.wake()
            session = manager.session
            if session is not None and not session.closed.is_set():
                await self._request_connect(session, await manager.auth())
        while True:
            changed = self._changed
            if self.connected:
                await trio.lowlevel.checkpoint()
                return
            if self._refusal is not None:
                raise ConnectionRefused(self._refusal.message, self._refusal.data)
            if self._shut:
                raise ConnectionClosed(self._buffer.refused or "client is closed")
            if not self._want:
                raise ConnectionClosed("io client disconnect")
            await changed.wait()

    async def disconnect(self) -> None:
        """Leave this namespace, as socket.io-client's ``socket.disconnect()``.

        Emits already made go out first (for up to two seconds), then the server gets a
        DISCONNECT for the namespace; the ``"disconnect"`` handlers get ``"io client
        disconnect"``. Buffered emits left and pending acks fail with ConnectionClosed, and
        later emits raise it, until :meth:`connect`. The namespace is not reconnected
        automatically. The client's connection stays open while another namespace uses it.

        Blocks: at most about two seconds.

        Cancellation: the namespace is left even if cancelled; the goodbye may be skipped.
        """
        if self._shut:
            await trio.lowlevel.checkpoint()
            return
        self._want = False
        self._notify()
        try:
            link = self._link
            if link is not None and not link.closed.is_set():
                with trio.move_on_after(DRAIN_GRACE):
                    await self._drain("io client disconnect")
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
    def _new_ack(self) -> tuple[int, AckSlot]:
        ack_id, slot = self._acks.new()
        self._pending.add(ack_id)
        return ack_id, slot

    def _ack_done(self, ack_id: int) -> None:
        """Forget an ack id: its ack came, or its waiter gave up."""
        self._acks.discard(ack_id)
        self._pending.discard(ack_id)
        self._sent_acks.discard(ack_id)

    def _fail_acks(self, ack_ids: set[int], reason: str) -> None:
        ack_ids = set(ack_ids)
        self._acks.fail(ack_ids, reason)
        self._pending -= ack_ids
        self._sent_acks -= ack_ids

    def _on_ack(self, packet: Packet) -> None:
        if packet.id is not None:
            self._acks.resolve(packet.id, packet.data)
            self._pending.discard(packet.id)
            self._sent_acks.discard(packet.id)

    # -- state changes --------------------------------------------------------------------
    def _encode(self, ptype: PacketType, data: Any = None) -> list[str | bytes]:
        return self._manager.encode(Packet(ptype, self.namespace, data))

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _lifecycle_event(self, name: str, *args: Any) -> None:
        self._dispatcher.lifecycle(name, *args)

    def _ack_route(self, link: Link | None) -> AckRoute:
        """Where the acks of events received on ``link`` go: that namespace connection
        only (dropped silently once it is gone)."""
        return _LinkAcks(self, link)

    async def _say_goodbye(self) -> bool:
        """Send DISCONNECT on the current namespace connection; False if the session is
        gone (then no other namespace can say it either)."""
        link = self._link
        if link is not None:
            try:
                await link.send(self._encode(PacketType.DISCONNECT))
            except ConnectionClosed:
                return False
        else:
            await trio.lowlevel.checkpoint()
        return True

    async def _drain(self, reason: str) -> None:
        """Refuse new emits with ConnectionClosed(reason); wait until the buffered ones
        have gone to the connection."""
        self._buffer.seal(reason)
        await self._buffer.wait_empty()

    async def _request_connect(self, session: Session, auth: Any) -> None:
        """Send CONNECT on ``session`` unless it was sent there already."""
        if self._connect_sent_on is session or self.connected or not self._want:
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
        if self._connect_sent_on is None or self._link is not None:
            return False
        if len(self._early) < MAX_EARLY_EVENTS:
            self._early.append(packet)
        elif not self._early_dropped:
            self._early_dropped = True
            log.warning("%s: too many events before the CONNECT reply; dropped", self.namespace)
        return True

    async def _queue_event(self, packet: Packet, link: Link, on_wait: OnWait | None = None) -> None:
        """Hand an event to the handlers: inline in the reading task when it may (see
        :meth:`Dispatcher.dispatch_inline`), else through the queue (blocking while it is
        full)."""
        packet = self._take_offset(packet)
        item = Incoming("event", packet, (), link)
        if on_wait is not None and await self._dispatcher.dispatch_inline(item, on_wait):
            return
        await self._dispatcher.queue.put_event(item)

    async def _on_connect(self, sid: str, session: Session, pid: str | None = None) -> None:
        self._connect_sent_on = None
        if not self._want:
            # disconnect() was called while the CONNECT was on its way: leave at once.
            try:
                await session.send(self._encode(PacketType.DISCONNECT))
            except ConnectionClosed:
                pass
            return
        if self._link is not None:
            return
        link = self._link = Link(session, sid)
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
        self._lifecycle_event("connect")

    def _on_connect_error(self, data: Any) -> None:
        self._connect_sent_on = None
        info = data if isinstance(data, dict) else {"message": data}
        self._refusal = ConnectionRefused(str(info.get("message", "refused")), info.get("data"))
        self.refused = True
        self._want = False
        self._close_namespace("io server disconnect")
        self._lifecycle_event("connect_error", data)

    def _on_server_disconnect(self) -> None:
        self.server_disconnected = True
        self._want = False
        self._close_namespace("io server disconnect")

    def _drop_link(self) -> bool:
        """Forget the current namespace connection; returns whether there was one."""
        link, self._link = self._link, None
        self._connect_sent_on = None
        self._early.clear()
        self.id = None
        if link is not None:
            link.close()
        if self._ready.is_set():
            self._ready = trio.Event()
            return True
        return False

    def _on_transport_lost(self, reason: str) -> None:
        """The Engine.IO connection ended: the packets that went out on it lose their acks;
        the buffered ones wait for the next connection."""
        was_connected = self._drop_link()
        self._fail_acks(self._sent_acks, reason)
        self._notify()
        if was_connected:
            self._lifecycle_event("disconnect", reason)

    def _close_namespace(self, reason: str) -> None:
        """The namespace is disconnected for good (until connect()): discard the buffer,
        fail every pending ack, refuse emits."""
        was_connected = self._drop_link()
        self._pid = self._offset = None  # a server never keeps such a session
        self._buffer.close(reason)
        self._fail_acks(self._pending, reason)
        self._notify()
        if was_connected:
            self._lifecycle_event("disconnect", reason)

    def _shutdown(self, reason: str) -> None:
        """The client is closing or gave up: refuse new emits, fail every pending ack."""
        self._shut = True
        self._want = False
        was_connected = self._drop_link()
        self._buffer.close(reason)
        self._acks.close(reason)
        self._pending.clear()
        self._sent_acks.clear()
        self._notify()
        if was_connected:
            self._lifecycle_event("disconnect", reason)


class _LinkAcks:
    """The acks of events received on one namespace connection (see ``AckRoute``)."""

    __slots__ = ("_link", "_state")

    def __init__(self, state: NamespaceState, link: Link | None) -> None:
        self._state = state
        self._link = link

    async def _send_ack(self, ack_id: int, args: tuple[Any, ...]) -> None:
        data = to_wire(args)
        link = self._link
        if link is None or link.closed.is_set():
            await trio.lowlevel.checkpoint()
            return
        state = self._state
        frames = state._manager.encode(Packet(PacketType.ACK, state.namespace, data, ack_id))
        try:
            await link.send(frames)
        except ConnectionClosed:
            pass
