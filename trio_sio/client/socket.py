"""The client's connection to one namespace: handlers, emits, acks, the offline buffer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

import trio

from .._acks import emit_with_callback, unpack_ack
from .._emitter import Callback, SocketEmitter, event_data
from .._handlers import Handler
from ..protocol.errors import AckTimeoutError, ConnectionClosed
from ..protocol.socketio import Packet, PacketType
from ._dispatch import LIFECYCLE, Dispatcher
from ._link import Session
from ._namespace import NamespaceState, link_acks
from ._outbox import Outbox
from ._parts import ClientLike, ManagerPort
from ._retry import RetryLane

__all__ = ["LIFECYCLE", "ClientSocket", "Session"]

F = TypeVar("F", bound=Callable[..., Any])


class ClientSocket:
    """The client side of one namespace: ``client.of("/chat")``.

    Emits made while disconnected wait in a bounded buffer (``buffer_size`` packets) and are
    sent in order once the namespace is connected again. When the buffer is full, ``emit``
    waits (use a cancel scope to bound the wait); volatile emits that cannot be written at
    once are dropped. When the namespace is disconnected for good (by the server, by a
    refusal, by :meth:`disconnect`, or because the client closed or gave up reconnecting),
    waiting and later emits raise ``ConnectionClosed``, the packets still buffered are
    discarded, and pending acks fail with ``ConnectionClosed``; :meth:`connect` opens the
    namespace again (unless the client is closed).

    Handlers start in arrival order and run concurrently (see the client's
    ``max_concurrent_handlers`` and ``ordered_handlers``).

    Its connection state (connecting, disconnecting, the send buffer, pending acks,
    recovery) is a part it owns; the properties below read it.

    Attributes:
        namespace: the namespace name.
        client: the client this socket belongs to.
    """

    def __init__(self, manager: ManagerPort, client: ClientLike, namespace: str) -> None:
        options = manager.options
        self.namespace = namespace
        self.client = client
        self._manager = manager
        self._dispatcher = Dispatcher(
            f"<ClientSocket {namespace}>",
            link_acks(manager, namespace),
            queue_size=options.event_queue_size,
            limit=options.max_concurrent_handlers,
            ordered=options.ordered_handlers,
        )
        self._state = state = NamespaceState(manager, namespace, self._dispatcher)
        self._outbox = Outbox(state, manager.encode, self.__repr__)
        self._outgoing_hooks: list[Handler] = []
        self._retries = RetryLane(
            namespace,
            retries=options.retries,
            ack_timeout=options.ack_timeout or 5.0,
            size=options.buffer_size,
            new_ack=state.new_ack,
            ack_done=state.ack_done,
            put=self._outbox.put,
        )

    def __repr__(self) -> str:
        return f"<ClientSocket {self.namespace} {self._state.id or '(disconnected)'}>"

    # -- connection state -----------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether the namespace is connected right now."""
        return self._state.connected

    @property
    def id(self) -> str | None:
        """The socket id the server gave, while connected."""
        return self._state.id

    @property
    def server_disconnected(self) -> bool:
        """The server disconnected the namespace (until :meth:`connect`)."""
        return self._state.server_disconnected

    @property
    def refused(self) -> bool:
        """The server refused the namespace (until :meth:`connect`)."""
        return self._state.refused

    @property
    def recovered(self) -> bool:
        """The last connection got the session back after a lost connection, and with it
        the events missed meanwhile (connection state recovery, when the server has it
        on); they are handled before the ``"connect"`` handlers run."""
        return self._state.recovered

    async def wait_connected(self) -> None:
        """Block until the namespace is connected.

        Cancellation: safe; it only waits.
        """
        await self._state.wait_connected()

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
        await self._state.connect()

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
        await self._state.disconnect()

    # -- handlers -------------------------------------------------------------------------
    @overload
    def on(
        self, event: str, handler: None = None, *, ordered: bool = False
    ) -> Callable[[F], F]: ...
    @overload
    def on(self, event: str, handler: F, *, ordered: bool = False) -> F: ...
    def on(
        self, event: str, handler: F | None = None, *, ordered: bool = False
    ) -> F | Callable[[F], F]:
        """Register a handler: ``@socket.on("event")`` or ``socket.on("event", fn)``.

        An event handler gets the event's arguments; its return value is the ack (a tuple
        for several arguments, None for an empty ack). A handler that declares a keyword-only
        ``ack`` parameter gets a :class:`trio_sio.Ack` instead, to call once, now, later, or
        never (declining); its return value is then ignored. Lifecycle names: ``"connect"``
        (no arguments), ``"disconnect"`` (the reason), ``"connect_error"`` (the server's
        error data when it refused the namespace, or the :class:`~trio_sio.ConnectError`
        when a connection attempt failed, as socket.io-client reports both). Handlers may be
        sync or async.

        Handlers start in arrival order and run concurrently. With ``ordered``, this event's
        handler runs one at a time, in order with the socket's other ordered events (a later
        one waits for the earlier one to finish). ``ordered`` does not apply to lifecycle
        names (see the client's ``ordered_handlers``).
        """

        def register(fn: F) -> F:
            self._dispatcher.register(event, fn, ordered)
            return fn

        return register(handler) if handler is not None else register

    def on_any(self, handler: F) -> F:
        """Call ``handler(event, *args)`` for every incoming event, when its task starts
        (in arrival order), before the event's handler."""
        self._dispatcher.add_incoming_hook(handler)
        return handler

    def on_any_outgoing(self, handler: F) -> F:
        """Call ``handler(event, *args)`` for every event this socket emits."""
        self._outgoing_hooks.append(Handler(handler))
        return handler

    async def wait_for(self, event: str) -> tuple[Any, ...]:
        """Wait for the next occurrence of ``event`` and return its arguments.

        Meant for tests and simple scripts; it does not acknowledge the event.

        Raises:
            ConnectionClosed: the client closed first.

        Cancellation: safe; a cancelled wait takes nothing.
        """
        return await self._dispatcher.wait_for(event)

    # -- emitting -------------------------------------------------------------------------
    @property
    def volatile(self) -> SocketEmitter:
        """Emit without guarantee: dropped unless it can be written right now, behind what
        this socket has queued (never out of order)."""
        return SocketEmitter(self, None, True)

    def timeout(self, seconds: float) -> SocketEmitter:
        """Emit with an ack timeout: ``await socket.timeout(5).emit("x", callback=cb)``."""
        return SocketEmitter(self, seconds, False)

    def compress(self, compress: bool) -> SocketEmitter:
        """Emit with compression allowed or not: ``socket.compress(False).emit(...)`` sends
        an uncompressed frame even when permessage-deflate is agreed (polling requests are
        never compressed)."""
        return SocketEmitter(self, None, False, compress)

    async def emit(self, event: str, *args: Any, callback: Callback | None = None) -> None:
        """Send an event to the server (buffered while disconnected).

        Args:
            event: the event name.
            *args: any number of values; ``bytes`` anywhere go as binary attachments.
            callback: called with the server's ack arguments; with :meth:`timeout`, called
                as ``callback(err, *args)``, ``err`` being None or an AckTimeoutError (or a
                ConnectionClosed if the namespace is disconnected first).

        Raises:
            TypeError: an argument cannot be sent (nothing was sent).
            ConnectionClosed: the namespace is disconnected for good (see the class), or
                the client is closed or gave up reconnecting.

        Blocks: while the offline buffer is full.

        Cancellation: if cancelled, the event was not queued; once queued, it is sent when
        the namespace is connected.
        """
        await self._emit(event, args, callback, None, False)

    async def emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> Any:
        """Send an event and wait for the server's ack.

        Returns:
            The ack's argument (None if none, a tuple if several).

        Raises:
            AckTimeoutError: no ack within ``timeout`` seconds (counted from this call,
                including time spent buffered while disconnected).
            ConnectionClosed: the connection dropped after the event was sent, the
                namespace was disconnected, or the client is closed.

        Cancellation: a cancelled wait frees the ack id; a late ack is ignored.
        """
        return await self._emit_with_ack(event, args, timeout, False)

    async def send(self, *args: Any, callback: Callback | None = None) -> None:
        """Emit a ``"message"`` event.

        Cancellation: as :meth:`emit`.
        """
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
        for hook in self._outgoing_hooks:
            await hook(event, *args)
        if self._manager.options.retries and not volatile:
            await self._queue_retry(data, callback, None)
            return
        outbox = self._outbox
        packet = Packet(PacketType.EVENT, self.namespace, data)
        if callback is None:
            if volatile:
                outbox.send_volatile(packet, compress)
                await trio.lowlevel.checkpoint()
            else:
                await outbox.put(packet, compress)
            return
        nursery = self._manager.running_nursery()
        state = self._state

        async def send(ack_id: int) -> bool:
            state.pending.add(ack_id)
            packet = Packet(PacketType.EVENT, self.namespace, data, ack_id)
            if volatile:
                sent = outbox.send_volatile(packet, compress)
                await trio.lowlevel.checkpoint()
                return sent
            await outbox.put(packet, compress)
            return True

        await emit_with_callback(
            state.acks, send, nursery.start_soon, callback, timeout, forget=state.ack_done
        )

    async def _emit_with_ack(
        self,
        event: str,
        args: tuple[Any, ...],
        timeout: float | None,
        volatile: bool,
        compress: bool = True,
    ) -> Any:
        data = event_data(event, args)
        for hook in self._outgoing_hooks:
            await hook(event, *args)
        if self._manager.options.retries and not volatile:
            result_send, result_recv = trio.open_memory_channel[Any](1)
            await self._queue_retry(data, None, result_send)
            outcome = await result_recv.receive()
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        state = self._state
        ack_id, slot = state.new_ack()
        try:
            packet = Packet(PacketType.EVENT, self.namespace, data, ack_id)
            if timeout is None and not volatile:  # the common case: no cancel scope
                await self._outbox.put(packet, compress, schedule=False)  # the wait is the one
                return unpack_ack(await slot.wait())
            with trio.move_on_after(timeout if timeout is not None else float("inf")):
                if volatile:
                    if not self._outbox.send_volatile(packet, compress) and timeout is None:
                        raise AckTimeoutError("volatile emit dropped")
                else:
                    await self._outbox.put(packet, compress)
                return unpack_ack(await slot.wait())
            raise AckTimeoutError()
        finally:
            state.ack_done(ack_id)

    async def _queue_retry(
        self, data: list[Any], callback: Callback | None, result: trio.MemorySendChannel[Any] | None
    ) -> None:
        refused = self._state.buffer.refused
        if refused is not None:
            await trio.lowlevel.checkpoint()
            raise ConnectionClosed(refused)
        await self._retries.put(data, callback, result)

    # -- driven by the client's manager ---------------------------------------------------
    def _start_tasks(self, nursery: trio.Nursery) -> None:
        """Start the socket's tasks (handler dispatch, flush, retries if set) in the
        client's nursery."""
        nursery.start_soon(self._dispatcher.run, nursery)
        nursery.start_soon(self._outbox.run)
        if self._manager.options.retries:  # no idle task for a feature not in use
            nursery.start_soon(self._retries.run)

    def _reopen(self, want: bool) -> None:
        """The client is entered again after it ended: accept emits again, with fresh
        queues; connect with the client if ``want``."""
        self._state.reopen(want)
        self._dispatcher.reopen()
        self._retries.reopen()

    def _shutdown(self, reason: str) -> None:
        """The client is closing or gave up: refuse new emits, fail every pending ack."""
        self._state.shutdown(reason)
        self._retries.close()
        self._dispatcher.close_waiters()
