"""The client's connection to one namespace: handlers, emits, acks, the offline buffer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

import trio

from .._acks import AckRegistry, emit_with_callback, unpack_ack
from .._emitter import Callback, SocketEmitter, event_data
from .._handlers import Handler
from ..protocol.errors import AckTimeoutError, ConnectionClosed
from ..protocol.socketio import Packet, PacketType
from ._dispatch import LIFECYCLE
from ._link import Link, Session
from ._namespace import NamespaceState
from ._queues import Outgoing
from ._reader import OnWait
from ._retry import RetryLane

if TYPE_CHECKING:
    from ._manager import Manager
    from .client import Client

__all__ = ["LIFECYCLE", "ClientSocket", "Session"]

log = logging.getLogger("trio_sio.client")

F = TypeVar("F", bound=Callable[..., Any])


class ClientSocket(NamespaceState):
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

    Attributes:
        namespace: the namespace name.
        id: the socket id the server gave, while connected.
        server_disconnected: the server disconnected the namespace (until :meth:`connect`).
        refused: the server refused the namespace (until :meth:`connect`).
        recovered: the last connection got the session back after a lost connection, and
            with it the events missed meanwhile (connection state recovery, when the server
            has it on); they are handled before the ``"connect"`` handlers run.
    """

    def __init__(self, manager: Manager, client: Client, namespace: str) -> None:
        super().__init__(manager, client, namespace)
        self._outgoing_hooks: list[Handler] = []
        self._flush_blocked = False  # the flush task waits for room to send the first packet
        options = manager.options
        self._retries = RetryLane(
            namespace,
            retries=options.retries,
            ack_timeout=options.ack_timeout or 5.0,
            size=options.buffer_size,
            new_ack=self._new_ack,
            ack_done=self._ack_done,
            put=self._put,
        )

    def __repr__(self) -> str:
        return f"<ClientSocket {self.namespace} {self.id or '(disconnected)'}>"

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
        packet = Packet(PacketType.EVENT, self.namespace, data)
        if callback is None:
            if volatile:
                self._send_volatile(packet, compress)
                await trio.lowlevel.checkpoint()
            else:
                await self._put(packet, compress)
            return
        nursery = self._manager.running_nursery()

        async def send(ack_id: int) -> bool:
            self._pending.add(ack_id)
            packet = Packet(PacketType.EVENT, self.namespace, data, ack_id)
            if volatile:
                sent = self._send_volatile(packet, compress)
                await trio.lowlevel.checkpoint()
                return sent
            await self._put(packet, compress)
            return True

        await emit_with_callback(
            self._acks, send, nursery.start_soon, callback, timeout, forget=self._ack_done
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
        ack_id, slot = self._new_ack()
        try:
            packet = Packet(PacketType.EVENT, self.namespace, data, ack_id)
            if timeout is None and not volatile:  # the common case: no cancel scope
                await self._put(packet, compress, schedule=False)  # the wait is the one
                return unpack_ack(await slot.wait())
            with trio.move_on_after(timeout if timeout is not None else float("inf")):
                if volatile:
                    if not self._send_volatile(packet, compress) and timeout is None:
                        raise AckTimeoutError("volatile emit dropped")
                else:
                    await self._put(packet, compress)
                return unpack_ack(await slot.wait())
            raise AckTimeoutError()
        finally:
            self._ack_done(ack_id)

    def _send_volatile(self, packet: Packet, compress: bool = True) -> bool:
        """Write a volatile packet now, behind what this socket has buffered, if the
        connection takes all of it without waiting; else drop it (as the JS client drops a
        volatile packet when the transport is not writable). Returns whether it went."""
        link = self._link
        if link is None or link.closed.is_set() or self._flush_blocked:
            return False
        try:
            if not self._flush_now(link):
                return False
            link.send_nowait(self._manager.encode(packet), compress)
        except (trio.WouldBlock, ConnectionClosed):
            return False
        if packet.id is not None:
            self._sent_acks.add(packet.id)
        return True

    def _flush_now(self, link: Link) -> bool:
        """Hand buffered packets to ``link`` while it takes them without waiting; returns
        whether the buffer is empty. Only while the flush task is not blocked on a send.

        Raises:
            ConnectionClosed: the link ended.
        """
        while (item := self._buffer.peek()) is not None:
            try:
                link.send_nowait(item.frames, item.compress)
            except trio.WouldBlock:
                return False
            self._sent(item)
        return True

    def _sent(self, item: Outgoing) -> None:
        self._buffer.remove(item)
        if item.ack_id is not None and item.ack_id in self._pending:
            self._sent_acks.add(item.ack_id)

    async def _put(self, packet: Packet, compress: bool = True, *, schedule: bool = True) -> None:
        """Send ``packet`` at once when nothing is buffered before it and the connection
        takes it without waiting (no task switch); else buffer it for the flush task.

        With ``schedule=False`` a packet written at once costs no schedule point either: for
        a caller that waits right after (for the packet's ack), so the wait is the one.

        Cancellation: if cancelled, the packet was not queued.
        """
        frames = tuple(self._manager.encode(packet))
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._send_now(frames, packet.id, compress):
            if schedule:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return
        await self._buffer.put(Outgoing(frames, packet.id, compress))

    def _send_now(
        self, frames: tuple[str | bytes, ...], ack_id: int | None, compress: bool
    ) -> bool:
        """Write ``frames`` now if nothing is buffered before them and the link takes them
        without waiting; returns whether they went. Never blocks."""
        link = self._link
        if link is None or self._flush_blocked or len(self._buffer) or link.closed.is_set():
            return False
        try:
            link.send_nowait(frames, compress)
        except (trio.WouldBlock, ConnectionClosed):
            return False
        if ack_id is not None:
            self._sent_acks.add(ack_id)
        return True

    async def _queue_retry(
        self, data: list[Any], callback: Callback | None, result: trio.MemorySendChannel[Any] | None
    ) -> None:
        if self._buffer.refused is not None:
            await trio.lowlevel.checkpoint()
            raise ConnectionClosed(self._buffer.refused)
        await self._retries.put(data, callback, result)

    # -- background tasks (started by the client) ---------------------------------------
    def _start_tasks(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._dispatcher.run, nursery)
        nursery.start_soon(self._flush_loop)
        if self._manager.options.retries:  # no idle task for a feature not in use
            nursery.start_soon(self._retries.run)

    async def _flush_loop(self) -> None:
        """Move buffered packets to the connection, in order, whenever connected.

        A packet leaves the buffer only once the connection has taken it, so the buffer
        holds exactly ``buffer_size`` packets while disconnected, and a packet whose send a
        disconnection cut short is sent first on the next connection.
        """
        while True:
            changed = self._changed
            link = self._link
            if link is None or link.closed.is_set():
                await changed.wait()
                continue
            try:
                if self._flush_now(link):
                    await self._buffer.wait_item()
                    continue
            except ConnectionClosed:
                await link.closed.wait()  # the session is ending: wait for the next one
                continue
            item = self._buffer.peek()
            assert item is not None
            self._flush_blocked = True
            try:
                await link.send(item.frames, item.compress)
            except ConnectionClosed:
                await link.closed.wait()
                continue
            except ValueError:  # more binary attachments than the send queue holds
                log.exception("%r: a packet cannot be sent; dropped", self)
                self._buffer.remove(item)
                if item.ack_id is not None:
                    self._fail_acks({item.ack_id}, "packet too large")
                continue
            finally:
                self._flush_blocked = False
            self._sent(item)

    # -- driven by the client's receive loop ----------------------------------------------
    async def _on_event(self, packet: Packet, on_wait: OnWait | None = None) -> None:
        """An EVENT for this namespace, from the reading task: its handler runs right here
        until it waits (then ``on_wait`` is called), unless events wait before it or its
        handler is ordered; then it is queued, and this blocks while the queue is full."""
        link = self._link
        if link is None:
            # Before the CONNECT reply (a recovered session's missed events): kept until
            # it comes; otherwise (not connected any more) ignored, as by the JS client.
            self._keep_early(packet)
            await trio.lowlevel.checkpoint()
            return
        await self._queue_event(packet, link, on_wait)

    def _reopen(self, want: bool) -> None:
        """The client is entered again after it ended: accept emits again, with fresh
        queues; connect with the client if ``want``."""
        self._shut = False
        self._want = want
        self._refusal = None
        self.server_disconnected = self.refused = self.recovered = False
        self._pid = self._offset = None
        self._buffer.reopen()
        self._acks = AckRegistry(self._manager.options.max_pending_acks)
        self._pending.clear()
        self._sent_acks.clear()
        self._dispatcher.reopen()
        self._retries.reopen()
        self._notify()

    def _shutdown(self, reason: str) -> None:
        """The client is closing or gave up: refuse new emits, fail every pending ack."""
        super()._shutdown(reason)
        self._retries.close()
        self._dispatcher.close_waiters()
