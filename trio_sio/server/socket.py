"""A client's connection to one namespace, on the server."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, overload

import trio

from .._acks import AckRegistry, emit_with_callback, unpack_ack
from .._emitter import Callback, SocketEmitter, event_data
from .._handlers import Ack, Handler, ack_args, run_event_handler
from .._handshake import Handshake
from .._lanes import Lanes, Turn
from ..adapters.base import BroadcastOptions
from ..adapters.recovery import RECOVERABLE_REASONS, Session
from ..protocol.errors import AckTimeoutError, ConnectionClosed
from ..protocol.serialize import to_wire
from ..protocol.socketio import Packet, PacketType, checked_packet
from ._listeners import SOCKET_LIFECYCLE, SocketListeners, remove_handler, run_middlewares
from .broadcast import BroadcastOperator

if TYPE_CHECKING:
    from ..engineio.config import RequestHead
    from ..engineio.socket import Reader
    from .connection import Connection
    from .namespace import Namespace

__all__ = ["Handshake", "Socket"]

log = logging.getLogger("trio_sio.server")

F = TypeVar("F", bound=Callable[..., Any])

#: Names a socket's own ``on`` refuses: the socket is connected already.
_NOT_SOCKET_EVENTS = frozenset({"connect", "connection", "connect_error"})


class Socket:
    """One client connected to one namespace.

    Attributes:
        id: the socket's public id (distinct from the secret Engine.IO session id).
        namespace: the namespace it belongs to.
        handshake: what the client sent at connection.
        data: free for the application (e.g. the user found by a middleware).
        connected: True until the socket disconnects.
        recovered: the socket was given back after a lost connection, with its id, rooms,
            ``data`` and the packets it missed (connection state recovery).
    """

    def __init__(
        self,
        namespace: Namespace,
        connection: Connection,
        socket_id: str,
        handshake: Handshake,
    ) -> None:
        self.id = socket_id
        self.namespace = namespace
        self.handshake = handshake
        self.data: dict[str, Any] = {}
        self.connected = False
        self.recovered = False
        # Connection state recovery: the private session id, and the newest kept packet
        # when the socket connected (None: recovery is off).
        self._pid: str | None = None
        self._recovery_offset: str | None = None
        self._connection = connection
        self._engine = connection.engine
        self._acks = AckRegistry(namespace.server.max_pending_acks)
        # Events in flight (running, or waiting for their turn in the ordered lane); reading
        # pauses at the bound (the same rules as the client's: see _lanes).
        self._in_flight = Lanes(namespace.server.max_concurrent_handlers)
        # Events that came before the connection handlers finished, in order.
        self._early: list[Packet] | None = []
        # Cancelled when the socket disconnects: created with the first (see _track).
        self._background_scopes: set[trio.CancelScope] | None = None
        # The socket's own listeners and middleware: made at the first registration.
        self._own: SocketListeners | None = None

    def __repr__(self) -> str:
        return f"<Socket {self.id} on {self.namespace.name}>"

    @property
    def request(self) -> RequestHead:
        """The Engine.IO handshake request: ``headers``, ``query``, the peer's address
        (``client``: the TCP peer's, even behind a proxy; ``handshake.address`` follows
        ``trusted_proxies``), ``method`` and ``path``."""
        return self._connection.engine.request

    @property
    def transport(self) -> str:
        """The connection's current transport: ``"polling"`` or ``"websocket"``."""
        return str(self._connection.engine.transport)

    # -- the socket's own listeners --------------------------------------------------------
    def _listeners(self) -> SocketListeners:
        own = self._own
        if own is None:
            own = self._own = SocketListeners()
        return own

    @overload
    def on(self, event: str, handler: None = None) -> Callable[[F], F]: ...
    @overload
    def on(self, event: str, handler: F) -> F: ...
    def on(self, event: str, handler: F | None = None) -> F | Callable[[F], F]:
        """Add a listener of this socket only: ``socket.on("event", fn)`` or
        ``@socket.on("event")``. Does not block.

        An event listener gets the event's arguments, ``fn(*args)`` (no socket: it is this
        one), and runs after the namespace's handler for the event, in the same task and
        under the same rules (concurrency bound, ordering); its return value is the ack
        unless an earlier handler acknowledged, or it takes a keyword-only ``ack``.
        Listeners of one event run in order of registration.

        Three names are not events: ``"error"`` gets ``fn(err)`` when a packet middleware
        refuses an event; ``"disconnecting"`` and ``"disconnect"`` get ``fn(reason)`` after
        the namespace's handlers of the same name.

        Raises:
            ValueError: ``event`` is ``"connect"``, ``"connection"`` or ``"connect_error"``.
        """
        return self._register(event, handler, once=False)

    @overload
    def once(self, event: str, handler: None = None) -> Callable[[F], F]: ...
    @overload
    def once(self, event: str, handler: F) -> F: ...
    def once(self, event: str, handler: F | None = None) -> F | Callable[[F], F]:
        """Like :meth:`on`, for the next event of that name only."""
        return self._register(event, handler, once=True)

    def _register(self, event: str, handler: F | None, once: bool) -> F | Callable[[F], F]:
        if event in _NOT_SOCKET_EVENTS:
            raise ValueError(f"a socket is connected already: no {event!r} listener")

        def register(fn: F) -> F:
            self._listeners().add(event, fn, once)
            return fn

        if handler is not None:
            return register(handler)
        return register

    def off(self, event: str | None = None, handler: Callable[..., Any] | None = None) -> None:
        """Remove ``handler`` (its first registration) from ``event``'s listeners, every
        listener of ``event`` if no handler is given, or every event listener of this socket
        if no event is given. The namespace's handlers are not touched. Does not block."""
        if self._own is not None:
            self._own.remove(event, handler)

    def listeners(self, event: str) -> list[Callable[..., Any]]:
        """This socket's own listeners of ``event``, in calling order."""
        return [] if self._own is None else self._own.functions(event)

    def on_any(self, handler: F) -> F:
        """Call ``handler(event, *args)`` for every event this socket receives, after the
        namespace's ``on_any`` listeners and before the packet middleware. If it raises,
        the event is dropped (and the error logged)."""
        self._listeners().incoming.append(Handler(handler))
        return handler

    def prepend_any(self, handler: F) -> F:
        """Like :meth:`on_any`, called before this socket's other any-listeners."""
        self._listeners().incoming.insert(0, Handler(handler))
        return handler

    def off_any(self, handler: Callable[..., Any] | None = None) -> None:
        """Remove an any-listener of this socket (every one if ``handler`` is None)."""
        if self._own is not None:
            remove_handler(self._own.incoming, handler)

    def listeners_any(self) -> list[Callable[..., Any]]:
        """This socket's own any-listeners, in calling order."""
        return [] if self._own is None else [h.fn for h in self._own.incoming]

    def on_any_outgoing(self, handler: F) -> F:
        """Call ``handler(event, *args)`` for every event sent to this socket: its own
        emits (with or without ack) and broadcasts reaching it (with or without acks).
        Called after the namespace's outgoing listeners, before the packet is queued; if
        it raises on an emit of this socket, the emit raises and nothing is sent (on a
        broadcast the error is logged and the packet sent)."""
        self._listeners().outgoing.append(Handler(handler))
        self._count_outgoing()
        return handler

    def prepend_any_outgoing(self, handler: F) -> F:
        """Like :meth:`on_any_outgoing`, called before this socket's other ones."""
        self._listeners().outgoing.insert(0, Handler(handler))
        self._count_outgoing()
        return handler

    def off_any_outgoing(self, handler: Callable[..., Any] | None = None) -> None:
        """Remove an outgoing any-listener of this socket (every one if None)."""
        if self._own is not None:
            remove_handler(self._own.outgoing, handler)
            self._count_outgoing()

    def listeners_any_outgoing(self) -> list[Callable[..., Any]]:
        """This socket's own outgoing any-listeners, in calling order."""
        return [] if self._own is None else [h.fn for h in self._own.outgoing]

    def use(self, middleware: F) -> F:
        """Add a packet middleware of this socket: ``middleware(event, args)``, sync or
        async, for every event received, after the namespace's (``Namespace.use_packet``).

        It returns None to pass the event on, a list or tuple to replace its arguments, or
        an exception to refuse it; raising refuses too. A refused event runs no handler
        and sends no ack; the error goes to the socket's ``"error"`` listeners (logged at
        INFO if there are none), which decide what the client is told, if anything.
        """
        self._listeners().middlewares.append(Handler(middleware))
        return middleware

    def _count_outgoing(self) -> None:
        """Keep the namespace's count of sockets with outgoing listeners (broadcasts look
        at each recipient only when some socket has them)."""
        own = self._own
        if own is None:
            return
        wanted = bool(own.outgoing) and self.connected
        if wanted != own.counted:
            own.counted = wanted
            self.namespace._own_outgoing += 1 if wanted else -1

    # -- rooms ----------------------------------------------------------------------------
    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this socket is in (including the one named by its id)."""
        return self.namespace.adapter.socket_rooms(self.id)

    def join(self, *rooms: str | Iterable[str]) -> None:
        """Join one or more rooms. Does not block."""
        self.namespace.adapter.add_all(self.id, _flatten(rooms))

    def leave(self, room: str) -> None:
        """Leave a room. Does not block."""
        self.namespace.adapter.delete(self.id, room)

    # -- broadcasting from this socket -----------------------------------------------------
    @property
    def broadcast(self) -> BroadcastOperator:
        """Every other socket of the namespace."""
        return self._operator().except_(self.id)

    def to(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """Sockets in these rooms, except this one."""
        return self.broadcast.to(*rooms)

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """Every other socket, except those in these rooms."""
        return self.broadcast.except_(*rooms)

    def _operator(self) -> BroadcastOperator:
        return BroadcastOperator(self.namespace, BroadcastOptions())

    # -- emitting -------------------------------------------------------------------------
    @property
    def volatile(self) -> SocketEmitter:
        """Emit without guarantee: dropped if the connection cannot take it right away."""
        return SocketEmitter(self, None, True)

    def timeout(self, seconds: float) -> SocketEmitter:
        """Emit with an ack timeout: ``await socket.timeout(5).emit("x", callback=cb)``."""
        return SocketEmitter(self, seconds, False)

    def compress(self, compress: bool) -> SocketEmitter:
        """Emit with compression allowed or not: ``socket.compress(False).emit(...)`` sends
        that event uncompressed even when permessage-deflate or HTTP compression is on."""
        return SocketEmitter(self, None, False, compress)

    async def emit(self, event: str, *args: Any, callback: Callback | None = None) -> None:
        """Send an event to this client.

        Args:
            event: the event name.
            *args: any number of values (see the serialization rules); ``bytes`` anywhere
                are sent as binary attachments.
            callback: called with the client's ack arguments when it acknowledges. With
                :meth:`timeout`, it is called as ``callback(err, *args)``: ``err`` is None
                on success and an :class:`AckTimeoutError` on timeout.

        Raises:
            TypeError: an argument cannot be sent (nothing was sent).
            ConnectionClosed: the socket is disconnected.

        Blocks: while the connection's send queue is over ``max_buffer_bytes``; at most
            ``slow_consumer_grace`` seconds, after which the client is disconnected as a slow
            consumer and ConnectionClosed is raised.

        Cancellation: if cancelled, the event was not queued; once queued it is sent.
        """
        await self._emit(event, args, callback, None, False)

    async def emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> Any:
        """Send an event and wait for the client's ack.

        Returns:
            The ack's argument (None if it had none, a tuple if it had several).

        Raises:
            AckTimeoutError: ``timeout`` seconds passed without an ack.
            ConnectionClosed: the socket disconnected before the ack came.
            TypeError: an argument cannot be sent.

        Cancellation: a cancelled wait frees the ack id; a late ack is then ignored.
        """
        return await self._emit_with_ack(event, args, timeout, False)

    async def send(self, *args: Any, callback: Callback | None = None) -> None:
        """Emit a ``"message"`` event."""
        await self.emit("message", *args, callback=callback)

    async def _emit(
        self,
        event: str,
        args: tuple[Any, ...],
        callback: Callback | None,
        timeout: float | None,
        volatile: bool,
        *,
        compress: bool = True,
    ) -> None:
        data = event_data(event, args)
        self._check_connected()
        name = self.namespace.name
        if callback is None:
            await self._send_event(
                Packet(PacketType.EVENT, name, data), event, args, volatile, compress
            )
            return

        async def send(ack_id: int) -> bool:
            packet = Packet(PacketType.EVENT, name, data, ack_id)
            return await self._send_event(packet, event, args, volatile, compress)

        start_soon = self._connection.nursery.start_soon
        await emit_with_callback(self._acks, send, start_soon, callback, timeout)

    async def _emit_with_ack(
        self,
        event: str,
        args: tuple[Any, ...],
        timeout: float | None,
        volatile: bool,
        compress: bool = True,
    ) -> Any:
        data = event_data(event, args)
        await self._outgoing(event, args)
        packet = Packet(PacketType.EVENT, self.namespace.name, data)
        if timeout is None:
            return await self._emit_with_ack_packet(packet, volatile, compress)
        with trio.move_on_after(timeout):
            return await self._emit_with_ack_packet(packet, volatile, compress)
        raise AckTimeoutError()

    async def _emit_with_ack_packet(
        self, packet: Packet, volatile: bool = False, compress: bool = True
    ) -> Any:
        """Send ``packet`` with a fresh ack id and wait for the ack (no timeout here)."""
        self._check_connected()
        ack_id, slot = self._acks.new()
        try:
            await self._connection.send_packet(
                replace(packet, id=ack_id), volatile=volatile, compress=compress
            )
            return unpack_ack(await slot.wait())
        finally:
            self._acks.discard(ack_id)

    async def _send_event(
        self,
        packet: Packet,
        event: str,
        args: tuple[Any, ...],
        volatile: bool,
        compress: bool = True,
    ) -> bool:
        """Queue an event packet (after the outgoing listeners); whether it went (False: a
        volatile packet was dropped)."""
        await self._outgoing(event, args)
        if self._pid is not None and packet.id is None and not volatile:
            # Kept for recovery, as a broadcast to this socket's room would be.
            self._check_connected()
            only_me = BroadcastOptions(rooms=frozenset((self.id,)))
            packet = await self.namespace.adapter.record_packet(packet, only_me)
        return await self._connection.send_packet(packet, volatile=volatile, compress=compress)

    async def _outgoing(self, event: str, args: tuple[Any, ...] | list[Any]) -> None:
        """Call the outgoing any-listeners (the namespace's, then this socket's)."""
        for hook in self.namespace._outgoing_hooks:
            await hook(self, event, *args)
        own = self._own
        if own is not None and own.outgoing:
            for hook in tuple(own.outgoing):
                await hook(event, *args)

    async def _notify_outgoing(self, data: list[Any]) -> None:
        """Call the outgoing any-listeners for a broadcast reaching this socket."""
        event, *args = data
        for hook in self.namespace._outgoing_hooks:
            try:
                await hook(self, event, *args)
            except Exception:
                log.exception("%r: outgoing listener failed", self)
        own = self._own
        if own is not None and own.outgoing:
            for hook in tuple(own.outgoing):
                try:
                    await hook(event, *args)
                except Exception:
                    log.exception("%r: outgoing listener failed", self)

    def _check_connected(self) -> None:
        if not self.connected:
            raise ConnectionClosed("socket is disconnected")

    # -- disconnecting --------------------------------------------------------------------
    async def disconnect(self, close: bool = False) -> None:
        """Disconnect from this namespace (or, with ``close``, close the whole connection).

        The client gets a DISCONNECT packet; reason ``"server namespace disconnect"``.
        """
        if not self.connected:
            return
        try:
            await self._connection.send_packet(Packet(PacketType.DISCONNECT, self.namespace.name))
        except ConnectionClosed:
            pass
        await self._close("server namespace disconnect")
        if close:
            await self._connection.close("server namespace disconnect")

    # -- driven by the connection ---------------------------------------------------------
    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in a task of this socket, cancelled when it disconnects.

        For work that outlives a handler (periodic updates, streams, a late ack). An
        exception in the task is logged; it does not disconnect the socket.

        Raises:
            ConnectionClosed: the socket is disconnected.
        """
        if not self.connected:
            raise ConnectionClosed("socket is disconnected")
        self._connection.nursery.start_soon(self._guarded, _log_failure, self, fn, *args)

    async def _run(self, auth: dict[str, Any]) -> None:
        """Run the connection handlers, then start the events that came meanwhile."""
        await self.namespace._on_connection(self, auth)
        early = self._early
        while early:
            await self._start(early.pop(0))
        self._early = None  # from now on the receive task starts events itself

    async def _on_event(self, packet: Packet, reader: Reader | None = None) -> None:
        """An EVENT packet from the client (called by the connection's receive task).

        The handler runs here, in the receive task (``reader``), until it waits for
        something: then a new task reads on, and this one returns once the handler is done
        (see ``Reader.run_handler``).

        Blocks: while ``max_concurrent_handlers`` events of this socket are in flight, which
        pauses the reading of the whole connection (backpressure); and as long as the
        handler runs.
        """
        in_flight = self._in_flight
        try:
            in_flight.acquire_nowait()
        except trio.WouldBlock:
            await in_flight.acquire()
        if not self.connected or self._connection.closing:
            in_flight.release()
            return
        if self._early is not None:
            self._early.append(packet)
        elif reader is None or self.namespace._is_ordered(str(packet.data[0])):
            await self._start(packet)
        else:
            try:
                await reader.run_handler(self._handling(packet), self._track, self._untrack)
            finally:
                in_flight.release()

    async def _start(self, packet: Packet) -> None:
        """Start handling one event in a task of its own, begun before this returns (so
        handlers start in arrival order); an ordered one first waits for its turn."""
        if not self.connected or self._connection.closing:
            self._in_flight.release()
            return
        ordered = self.namespace._is_ordered(str(packet.data[0]))
        turn = self._in_flight.turn() if ordered else None
        await self._connection.nursery.start(self._handler_task, packet, turn)

    async def _handler_task(
        self, packet: Packet, turn: Turn | None, *, task_status: trio.TaskStatus[None]
    ) -> None:
        with trio.CancelScope() as scope:
            self._track(scope)
            task_status.started()
            try:
                if turn is not None:
                    await turn.wait()
                await self._dispatch(packet)
            finally:
                if turn is not None:
                    turn.end()
                self._untrack(scope)
                self._in_flight.release()

    async def _guarded(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` until it returns or the socket disconnects."""
        if not self.connected:
            return
        with trio.CancelScope() as scope:
            self._track(scope)
            try:
                await fn(*args)
            finally:
                self._untrack(scope)

    def _track(self, scope: trio.CancelScope) -> None:
        """Cancel ``scope`` when the socket disconnects (until :meth:`_untrack`); at once if
        it is disconnected already."""
        if not self.connected:
            scope.cancel()
            return
        scopes = self._background_scopes
        if scopes is None:
            self._background_scopes = {scope}
        else:
            scopes.add(scope)

    def _untrack(self, scope: trio.CancelScope) -> None:
        scopes = self._background_scopes
        if scopes is not None:
            scopes.discard(scope)
            if not scopes:
                self._background_scopes = None  # an idle socket holds no empty set

    def _handling(self, packet: Packet) -> Coroutine[Any, Any, None]:
        """The coroutine that handles ``packet``: :meth:`_dispatch`, or straight the
        handler's run (one call less) when nothing else is in the way: no incoming
        listener, packet middleware or listener of the socket's own."""
        namespace = self.namespace
        if self._own is None and not namespace._incoming_hooks and not namespace._packet_chain:
            event, *args = packet.data
            event = str(event)
            handler = namespace._handlers.get(event) or namespace._handler(event)
            if handler is not None:
                return run_event_handler(
                    handler, (self, *args), self, packet.id, logger=log, owner=self, event=event
                )
        return self._dispatch(packet)

    async def _dispatch(self, packet: Packet) -> None:
        event, *args = packet.data
        event = str(event)
        namespace = self.namespace
        own = self._own
        try:
            for hook in namespace._incoming_hooks:
                await hook(self, event, *args)
            if own is not None:
                for hook in tuple(own.incoming):
                    await hook(event, *args)
                if own.middlewares or namespace._packet_chain:
                    args = await self._filter(event, args)
                    if args is None:
                        return
                listeners = own.take(event) if event not in SOCKET_LIFECYCLE else None
                if listeners:
                    await self._dispatch_all(event, args, packet.id, listeners)
                    return
            elif namespace._packet_chain:
                args = await self._filter(event, args)
                if args is None:
                    return
        except ConnectionClosed:
            return
        except Exception:
            log.exception("%r: handler for %r failed", self, event)
            return
        handler: Handler | None = namespace._handlers.get(event)
        if handler is None:
            handler = namespace._handler(event)  # (its parent's, if any)
        if handler is None:
            log.debug("%r: no handler for %r", self, event)
            return
        await run_event_handler(
            handler, (self, *args), self, packet.id, logger=log, owner=self, event=event
        )

    async def _filter(self, event: str, args: list[Any]) -> list[Any] | None:
        """Pass an event through the packet middleware: the namespace's, then this
        socket's. Returns its arguments, or None if it was refused (the error then went
        to the ``"error"`` listeners)."""
        try:
            chain = self.namespace._packet_chain
            if chain:
                args = await run_middlewares(chain, (self,), event, args)
            own = self._own
            if own is not None and own.middlewares:
                args = await run_middlewares(tuple(own.middlewares), (), event, args)
        except ConnectionClosed:
            raise
        except Exception as exc:
            await self._refused(event, exc)
            return None
        return args

    async def _refused(self, event: str, error: Exception) -> None:
        """Hand a packet middleware's refusal to the ``"error"`` listeners."""
        listeners = [] if self._own is None else self._own.take("error")
        if not listeners:
            log.info("%r: event %r refused: %r (no error listener)", self, event, error)
            return
        for listener in listeners:
            await listener(error)

    async def _dispatch_all(
        self, event: str, args: list[Any], ack_id: int | None, listeners: list[Handler]
    ) -> None:
        """Run the namespace's handler (if any), then this socket's listeners, in order.

        The first to acknowledge wins: an ``ack`` parameter called, or a return value that
        is not None. If no handler takes an ``ack`` parameter and none returned a value,
        the ack is sent without arguments once they all ran (as with one handler)."""
        ack = Ack(None if ack_id is None else partial(self._send_ack, ack_id))
        handler = self.namespace._handler(event)
        calls: list[tuple[Handler, tuple[Any, ...]]] = [(h, ()) for h in listeners]
        if handler is not None:
            calls.insert(0, (handler, (self,)))
        deferred = False
        for fn, leading in calls:
            if fn.takes_ack:
                deferred = True
                await fn(*leading, *args, ack=ack)
                continue
            result = await fn(*leading, *args)
            if result is not None and not ack.sent:
                try:
                    await ack(*ack_args(result))
                except (TypeError, ValueError):
                    log.exception("%r: the ack of %r cannot be sent", self, event)
        if ack_id is not None and not deferred and not ack.sent:
            await ack()

    async def _send_ack(self, ack_id: int, args: tuple[Any, ...]) -> None:
        data = to_wire(args)
        if not self.connected:
            await trio.lowlevel.checkpoint()
            return
        try:
            # (a list from to_wire, the id of a decoded packet: nothing to check again)
            await self._connection.send_packet(
                checked_packet(PacketType.ACK, self.namespace.name, data, ack_id)
            )
        except ConnectionClosed:
            pass

    async def _close(self, reason: str) -> None:
        """Run the disconnect sequence once: ``disconnecting`` (rooms still there), leave
        every room, fail pending acks, keep the session if the connection was lost and
        recovery is on, then ``disconnect``."""
        if not self.connected:
            return
        self.connected = False
        await self.namespace._run_lifecycle("disconnecting", self, reason)
        if self._own is not None:
            await self._run_own_lifecycle("disconnecting", reason)
        rooms = self.rooms
        self.namespace._remove(self)
        self._connection.forget(self)
        self._acks.close(reason)
        self._early = None
        for scope in list(self._background_scopes or ()):
            scope.cancel()
        if self._pid is not None and reason in RECOVERABLE_REASONS:
            session = Session(self.id, self._pid, rooms, self.data, self._recovery_offset)
            try:
                await self.namespace.adapter.persist_session(session)
            except Exception:
                log.exception("%r: the session could not be kept for recovery", self)
        await self.namespace._run_lifecycle("disconnect", self, reason)
        own = self._own
        if own is not None:
            self._count_outgoing()
            await self._run_own_lifecycle("disconnect", reason)
            # The listeners are closures over this socket, as a rule: dropping them breaks
            # the cycle, so that the socket is freed at once rather than by the collector.
            self._own = None

    async def _run_own_lifecycle(self, name: str, reason: str) -> None:
        assert self._own is not None
        for listener in self._own.take(name):
            try:
                await listener(reason)
            except Exception:
                log.exception("%r: %s listener failed", self, name)


async def _log_failure(socket: Socket, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
    try:
        await fn(*args)
    except ConnectionClosed:
        pass
    except Exception:
        log.exception("%r: background task %r failed", socket, fn)


def _flatten(rooms: tuple[str | Iterable[str], ...]) -> list[str]:
    flat: list[str] = []
    for room in rooms:
        if isinstance(room, str):
            flat.append(room)
        else:
            flat.extend(room)
    return flat
