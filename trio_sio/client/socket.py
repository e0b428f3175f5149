"""The client's connection to one namespace: handlers, emits, acks, the offline buffer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from .._acks import AckRegistry, await_callback, unpack_ack
from .._emitter import Callback, SocketEmitter, event_data
from .._handlers import Handler, ack_args
from ..protocol.errors import AckTimeoutError, ConnectionClosed
from ..protocol.serialize import to_wire
from ..protocol.socketio import Packet, PacketType

if TYPE_CHECKING:
    from ..engineio.client import EngineClient
    from .client import Client

__all__ = ["ClientSocket"]

log = logging.getLogger("trio_sio.client")

F = TypeVar("F", bound=Callable[..., Any])

#: Names of the lifecycle handlers of a namespace socket.
LIFECYCLE = frozenset({"connect", "disconnect", "connect_error"})


@dataclass(slots=True)
class Session:
    """One Engine.IO connection of the client; ``closed`` is set when it ends."""

    engine: EngineClient
    closed: trio.Event = field(default_factory=trio.Event)


@dataclass(frozen=True, slots=True)
class _Outgoing:
    frames: tuple[str | bytes, ...]
    ack_id: int | None


class ClientSocket:
    """The client side of one namespace: ``client.of("/chat")``.

    Emits made while disconnected wait in a bounded buffer (``buffer_size`` packets) and are
    sent in order once the namespace is connected again. When the buffer is full, ``emit``
    waits (use a cancel scope to bound the wait) and ``emit_nowait`` raises
    ``trio.WouldBlock``; volatile emits made while disconnected are dropped. If the client
    gives up reconnecting or is closed, waiting and later emits raise ``ConnectionClosed``
    and the packets still buffered are discarded (their acks fail with ``ConnectionClosed``).

    Attributes:
        namespace: the namespace name.
        id: the socket id the server gave, while connected.
    """

    def __init__(self, client: Client, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.id: str | None = None
        self._handlers: dict[str, Handler] = {}
        self._lifecycle: dict[str, list[Handler]] = {}
        self._incoming_hooks: list[Handler] = []
        self._outgoing_hooks: list[Handler] = []
        self._waiters: dict[str, list[trio.MemorySendChannel[tuple[Any, ...]]]] = {}
        self._acks = AckRegistry(client.max_pending_acks)
        self._sent_acks: set[int] = set()
        self._outbox_send, self._outbox_recv = trio.open_memory_channel[_Outgoing](
            client.buffer_size
        )
        self._events_send, self._events_recv = trio.open_memory_channel[
            tuple[str, Packet | None, tuple[Any, ...]]
        ](client.event_queue_size)
        self._retry_send, self._retry_recv = trio.open_memory_channel[
            tuple[tuple[Any, ...], Callback | None, trio.MemorySendChannel[Any] | None]
        ](client.buffer_size)
        self._session: Session | None = None
        self._ready = trio.Event()
        self._dispatch_done = trio.Event()
        self._flush_done = trio.Event()
        self._flush_scope = trio.CancelScope()
        self.server_disconnected = False
        self.refused = False

    def __repr__(self) -> str:
        return f"<ClientSocket {self.namespace} {self.id or '(disconnected)'}>"

    @property
    def connected(self) -> bool:
        """Whether the namespace is connected right now."""
        return self._ready.is_set()

    # -- handlers -------------------------------------------------------------------------
    def on(self, event: str, handler: F | None = None) -> Any:
        """Register a handler: ``@socket.on("event")`` or ``socket.on("event", fn)``.

        An event handler gets the event's arguments; its return value is the ack (a tuple
        for several arguments). Lifecycle names: ``"connect"`` (no arguments),
        ``"disconnect"`` (the reason), ``"connect_error"`` (the server's error data).
        Handlers may be sync or async; events are handled one at a time, in order.
        """

        def register(fn: F) -> F:
            if event in LIFECYCLE:
                self._lifecycle.setdefault(event, []).append(Handler(fn))
            else:
                self._handlers[event] = Handler(fn)
            return fn

        return register(handler) if handler is not None else register

    def on_any(self, handler: F) -> F:
        """Call ``handler(event, *args)`` for every incoming event, first."""
        self._incoming_hooks.append(Handler(handler))
        return handler

    def on_any_outgoing(self, handler: F) -> F:
        """Call ``handler(event, *args)`` for every event this socket emits."""
        self._outgoing_hooks.append(Handler(handler))
        return handler

    async def wait_for(self, event: str) -> tuple[Any, ...]:
        """Wait for the next occurrence of ``event`` and return its arguments.

        Meant for tests and simple scripts; it does not acknowledge the event.

        Cancellation: safe; a cancelled wait takes nothing.
        """
        send, recv = trio.open_memory_channel[tuple[Any, ...]](1)
        self._waiters.setdefault(event, []).append(send)
        try:
            return await recv.receive()
        except trio.EndOfChannel:
            raise ConnectionClosed("client is closed") from None
        finally:
            waiters = self._waiters.get(event, [])
            if send in waiters:
                waiters.remove(send)

    async def wait_connected(self) -> None:
        """Block until the namespace is connected."""
        await self._ready.wait()

    # -- emitting -------------------------------------------------------------------------
    @property
    def volatile(self) -> SocketEmitter:
        """Emit without guarantee: dropped unless it can be sent right now."""
        return SocketEmitter(self, None, True)

    def timeout(self, seconds: float) -> SocketEmitter:
        """Emit with an ack timeout: ``await socket.timeout(5).emit("x", callback=cb)``."""
        return SocketEmitter(self, seconds, False)

    async def emit(self, event: str, *args: Any, callback: Callback | None = None) -> None:
        """Send an event to the server (buffered while disconnected).

        Args:
            event: the event name.
            *args: any number of values; ``bytes`` anywhere go as binary attachments.
            callback: called with the server's ack arguments; with :meth:`timeout`, called
                as ``callback(err, *args)``, ``err`` being None or an AckTimeoutError.

        Raises:
            TypeError: an argument cannot be sent (nothing was sent).
            ConnectionClosed: the client is closed or gave up reconnecting.

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
            ConnectionClosed: the connection dropped after the event was sent, or the
                client is closed.

        Cancellation: a cancelled wait frees the ack id; a late ack is ignored.
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
    ) -> None:
        data = event_data(event, args)
        for hook in self._outgoing_hooks:
            await hook(event, *args)
        if self.client.retries and not volatile:
            await self._queue_retry(data, callback, None)
            return
        if volatile:
            if self.connected and self._session is not None:
                frames = self.client.encode(Packet(PacketType.EVENT, self.namespace, data))
                try:
                    self._session.engine.send_many_nowait(frames)
                except (trio.WouldBlock, ConnectionClosed):
                    pass
            return
        ack_id = None
        if callback is not None:
            ack_id, slot = self._acks.new()
            self.client._nursery.start_soon(
                await_callback, self._acks, ack_id, slot.wait, callback, timeout
            )
        await self._put(Packet(PacketType.EVENT, self.namespace, data, ack_id))

    async def _emit_with_ack(
        self, event: str, args: tuple[Any, ...], timeout: float | None, volatile: bool
    ) -> Any:
        data = event_data(event, args)
        for hook in self._outgoing_hooks:
            await hook(event, *args)
        if self.client.retries and not volatile:
            result_send, result_recv = trio.open_memory_channel[Any](1)
            await self._queue_retry(data, None, result_send)
            outcome = await result_recv.receive()
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        ack_id, slot = self._acks.new()
        try:
            packet = Packet(PacketType.EVENT, self.namespace, data, ack_id)
            if timeout is None:
                await self._put(packet)
                return unpack_ack(await slot.wait())
            with trio.move_on_after(timeout):
                await self._put(packet)
                return unpack_ack(await slot.wait())
            raise AckTimeoutError()
        finally:
            self._acks.discard(ack_id)
            self._sent_acks.discard(ack_id)

    async def _put(self, packet: Packet) -> None:
        item = _Outgoing(tuple(self.client.encode(packet)), packet.id)
        try:
            await self._outbox_send.send(item)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ConnectionClosed("client is closed") from None

    async def _queue_retry(
        self, data: list[Any], callback: Callback | None, result: trio.MemorySendChannel[Any] | None
    ) -> None:
        try:
            await self._retry_send.send((tuple(data), callback, result))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ConnectionClosed("client is closed") from None

    # -- background tasks (started by the client) ---------------------------------------
    async def _flush_loop(self) -> None:
        """Move buffered packets to the connection, in order, whenever connected."""
        try:
            await self._flush()
        finally:
            self._flush_done.set()

    async def _flush(self) -> None:
        current: _Outgoing | None = None
        while True:
            await self._ready.wait()
            if current is None:
                # Taken only while connected (a disconnect cancels the wait), so the buffer
                # holds exactly ``buffer_size`` packets while disconnected.
                with trio.CancelScope() as self._flush_scope:
                    try:
                        current = await self._outbox_recv.receive()
                    except trio.EndOfChannel:
                        return
                if current is None:
                    continue
            session = self._session
            if session is None:
                await trio.lowlevel.checkpoint()
                continue
            try:
                await session.engine.send_many(current.frames)
            except ConnectionClosed:
                await session.closed.wait()
                continue
            if current.ack_id is not None:
                self._sent_acks.add(current.ack_id)
            current = None

    async def _retry_loop(self) -> None:
        """At-least-once delivery (``retries``): one packet at a time, resent until acked."""
        client = self.client
        async for data, callback, result in self._retry_recv:
            outcome: Any = AckTimeoutError(f"no ack after {client.retries + 1} attempts")
            for _ in range(client.retries + 1):
                ack_id, slot = self._acks.new()
                try:
                    with trio.move_on_after(client.ack_timeout or 5.0):
                        await self._put(
                            Packet(PacketType.EVENT, self.namespace, list(data), ack_id)
                        )
                        outcome = await slot.wait()
                        break
                except ConnectionClosed as exc:
                    outcome = exc
                    break
                finally:
                    self._acks.discard(ack_id)
                    self._sent_acks.discard(ack_id)
            if isinstance(outcome, list):
                value: Any = unpack_ack(outcome)
                args: tuple[Any, ...] = tuple(outcome)
                error = None
            else:
                value, args, error = outcome, (), outcome
            if result is not None:
                result.send_nowait(value)
            if callback is not None:
                try:
                    await Handler(callback)(error, *args)
                except Exception:
                    log.exception("%r: ack callback failed", self)

    async def _dispatch_loop(self) -> None:
        """Run handlers: lifecycle events and server events, one at a time, in order."""
        try:
            async for kind, packet, extra in self._events_recv:
                if kind == "event" and packet is not None:
                    await self._dispatch(packet)
                else:
                    for handler in self._lifecycle.get(kind, []):
                        try:
                            await handler(*extra)
                        except Exception:
                            log.exception("%r: %s handler failed", self, kind)
        finally:
            self._dispatch_done.set()

    async def _dispatch(self, packet: Packet) -> None:
        event, *args = packet.data
        event = str(event)
        try:
            for hook in self._incoming_hooks:
                await hook(event, *args)
            for waiter in self._waiters.pop(event, []):
                waiter.send_nowait(tuple(args))
            handler = self._handlers.get(event)
            if handler is None:
                return  # nobody listens: no ack either, as with the JS client
            result = await handler(*args)
        except Exception:
            log.exception("%r: handler for %r failed", self, event)
            return
        if packet.id is not None and self._session is not None:
            try:
                data = to_wire(ack_args(result))
                frames = self.client.encode(Packet(PacketType.ACK, self.namespace, data, packet.id))
                await self._session.engine.send_many(frames)
            except ConnectionClosed:
                pass
            except (TypeError, ValueError):
                log.exception("%r: the ack of %r cannot be sent", self, event)

    # -- driven by the client's receive loop ----------------------------------------------
    def _lifecycle_event(self, name: str, *args: Any) -> None:
        try:
            self._events_send.send_nowait((name, None, args))
        except (trio.WouldBlock, trio.ClosedResourceError):
            log.warning("%r: %s handler skipped (event queue full)", self, name)

    async def _on_event(self, packet: Packet) -> None:
        try:
            await self._events_send.send(("event", packet, ()))
        except trio.ClosedResourceError:
            pass

    def _on_connect(self, sid: str, session: Session) -> None:
        self.id = sid
        self._session = session
        self.server_disconnected = False
        self._ready.set()
        self._lifecycle_event("connect")

    def _on_connect_error(self, data: Any) -> None:
        self.refused = True
        self._lifecycle_event("connect_error", data)

    def _on_disconnect(self, reason: str) -> None:
        was_connected = self.connected
        self._flush_scope.cancel()
        self.id = None
        self._session = None
        if was_connected:
            self._ready = trio.Event()
        sent, self._sent_acks = self._sent_acks, set()
        self._acks.fail(sent, reason)
        if was_connected:
            self._lifecycle_event("disconnect", reason)

    def _shutdown(self, reason: str) -> None:
        """The client is closing or gave up: refuse new emits, fail every pending ack."""
        self._on_disconnect(reason)
        self._outbox_send.close()
        self._retry_send.close()
        self._acks.close(reason)
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.close()
