"""Namespaces: handlers, middleware, the sockets connected to them, and their adapter."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

import trio

from .._emitter import event_data
from .._handlers import Ack, Handler
from ..adapters.base import BroadcastOptions, RemoteSocket
from ..engineio._inline import emit_checkpoint
from ..protocol.engineio import Packet as EnginePacket
from ..protocol.engineio import PacketType as EnginePacketType
from ..protocol.engineio import mark_uncompressed
from ..protocol.errors import AckTimeoutError, ConnectionClosed
from ..protocol.socketio import Packet
from ._listeners import remove_handler
from .broadcast import BroadcastOperator

if TYPE_CHECKING:
    from .server import Server
    from .socket import Socket

__all__ = ["Namespace", "ParentNamespace"]

log = logging.getLogger("trio_sio.server")

F = TypeVar("F", bound=Callable[..., Any])

#: Names of the lifecycle handlers (the others are events).
LIFECYCLE = frozenset({"connection", "connect", "disconnecting", "disconnect"})


_MESSAGE: Final = EnginePacketType.MESSAGE


def frames_to_engine(
    frames: Sequence[str | bytes], compress: bool = True
) -> tuple[EnginePacket, ...]:
    """Wrap encoded Socket.IO frames as one group of Engine.IO MESSAGE packets (which may be
    compressed unless ``compress`` is False)."""
    if not compress:
        return tuple(mark_uncompressed(EnginePacket(EnginePacketType.MESSAGE, f)) for f in frames)
    if len(frames) == 1:  # the common case: no attachments
        return (EnginePacket(_MESSAGE, frames[0]),)
    return tuple(EnginePacket(_MESSAGE, frame) for frame in frames)


class _HandlerTable:
    """Handlers and middleware, shared by static and parent namespaces."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._lifecycle: dict[str, list[Handler]] = {}
        self._middlewares: list[Handler] = []
        self._incoming_hooks: list[Handler] = []
        self._outgoing_hooks: list[Handler] = []
        self._packet_middlewares: list[Handler] = []
        self._ordered: set[str] = set()
        self._server_side: dict[str, Handler] = {}
        #: handle this namespace's events strictly one at a time, in order, per socket
        #: (None: the server's ``ordered_handlers``).
        self.ordered_handlers: bool | None = None

    @overload
    def on(
        self, event: str, handler: None = None, *, ordered: bool = False
    ) -> Callable[[F], F]: ...
    @overload
    def on(self, event: str, handler: F, *, ordered: bool = False) -> F: ...
    def on(
        self, event: str, handler: F | None = None, *, ordered: bool = False
    ) -> F | Callable[[F], F]:
        """Register a handler; usable as ``@ns.on("event")`` or ``ns.on("event", fn)``.

        Lifecycle names: ``"connection"`` (alias ``"connect"``) gets ``(socket, auth)``;
        ``"disconnecting"`` and ``"disconnect"`` get ``(socket, reason)``. Any other name is an
        event: the handler gets ``(socket, *args)`` and its return value is the ack, unless
        it takes a keyword-only ``ack`` parameter (an :class:`~trio_sio.Ack` to call once,
        now, later or never). Handlers may be sync or async.

        Handlers of one socket's events start in arrival order and run concurrently (see
        ``max_concurrent_handlers``); with ``ordered``, this event's handler runs strictly one
        at a time per socket, in order with the socket's other ordered events.
        """

        def register(fn: F) -> F:
            name = "connection" if event == "connect" else event
            if name in LIFECYCLE:
                self._lifecycle.setdefault(name, []).append(Handler(fn))
            else:
                self._handlers[name] = Handler(fn)
                if ordered:
                    self._ordered.add(name)
                else:
                    self._ordered.discard(name)
            return fn

        if handler is not None:
            return register(handler)
        return register

    @overload
    def on_server_side(self, event: str, handler: None = None) -> Callable[[F], F]: ...
    @overload
    def on_server_side(self, event: str, handler: F) -> F: ...
    def on_server_side(self, event: str, handler: F | None = None) -> F | Callable[[F], F]:
        """Handle ``event`` sent by another node's ``server_side_emit`` (JS: ``io.on(event)``).

        The handler gets the event's arguments. If the sender waits for replies, the handler's
        return value is this node's reply (or, with a keyword-only ``ack`` parameter, the
        argument it calls the :class:`~trio_sio.Ack` with).
        """

        def register(fn: F) -> F:
            self._server_side[event] = Handler(fn)
            return fn

        if handler is not None:
            return register(handler)
        return register

    def on_any(self, handler: F) -> F:
        """Call ``handler(socket, event, *args)`` for every incoming event, first (before
        the sockets' own any-listeners and the packet middleware). If it raises, the event
        is dropped (and the error logged)."""
        self._incoming_hooks.append(Handler(handler))
        return handler

    def prepend_any(self, handler: F) -> F:
        """Like :meth:`on_any`, called before the other any-listeners."""
        self._incoming_hooks.insert(0, Handler(handler))
        return handler

    def off_any(self, handler: Callable[..., Any] | None = None) -> None:
        """Remove an any-listener (its first registration; every one if None)."""
        remove_handler(self._incoming_hooks, handler)

    def listeners_any(self) -> list[Callable[..., Any]]:
        """The any-listeners, in calling order."""
        return [hook.fn for hook in self._incoming_hooks]

    def on_any_outgoing(self, handler: F) -> F:
        """Call ``handler(socket, event, *args)`` for every event sent to one socket: its
        own emits and the broadcasts reaching it, with or without acks."""
        self._outgoing_hooks.append(Handler(handler))
        return handler

    def prepend_any_outgoing(self, handler: F) -> F:
        """Like :meth:`on_any_outgoing`, called before the other outgoing listeners."""
        self._outgoing_hooks.insert(0, Handler(handler))
        return handler

    def off_any_outgoing(self, handler: Callable[..., Any] | None = None) -> None:
        """Remove an outgoing any-listener (its first registration; every one if None)."""
        remove_handler(self._outgoing_hooks, handler)

    def listeners_any_outgoing(self) -> list[Callable[..., Any]]:
        """The outgoing any-listeners, in calling order."""
        return [hook.fn for hook in self._outgoing_hooks]

    def use_packet(self, middleware: F) -> F:
        """Add a packet middleware for every socket of this namespace (of every child, on a
        parent): ``middleware(socket, event, args)``, sync or async, for every event
        received, before the sockets' own (:meth:`Socket.use <trio_sio.Socket.use>`).

        It returns None to pass the event on, a list or tuple to replace its arguments
        (the next middleware and the handlers get those), or an exception to refuse the
        event; raising refuses too. A refused event runs no handler and sends no ack; the
        error goes to the socket's ``"error"`` listeners (``socket.on("error", fn)``),
        logged at INFO if it has none. Middlewares run in order of registration.
        """
        self._packet_middlewares.append(Handler(middleware))
        self._refresh_packet_chain()
        return middleware

    def _refresh_packet_chain(self) -> None:
        """Recompute the packet middleware chains this table's middlewares are part of."""

    def use(self, middleware: F) -> F:
        """Add connection middleware: ``middleware(socket, auth)``, sync or async.

        Raise :class:`~trio_sio.ConnectionRefused` to refuse the connection; the client gets
        a CONNECT_ERROR with its message and data. Middlewares run in order of registration.
        """
        self._middlewares.append(Handler(middleware))
        return middleware


class Namespace(_HandlerTable):
    """A namespace: ``sio.of("/chat")``.

    Attributes:
        name: the namespace, e.g. ``"/chat"``.
        adapter: rooms and broadcasts.
        sockets: the connected sockets by id.
    """

    def __init__(self, server: Server, name: str, parent: ParentNamespace | None = None) -> None:
        super().__init__()
        self.server = server
        self.name = name
        self.parent = parent
        self.sockets: dict[str, Socket] = {}
        self._pid_sockets: dict[str, Socket] = {}  # by private session id (recovery)
        # Sockets with outgoing listeners of their own (see Socket._count_outgoing).
        self._own_outgoing = 0
        #: the namespace-wide packet middleware, the parent's first (empty: none)
        self._packet_chain: tuple[Handler, ...] = ()
        self._refresh_packet_chain()
        self.adapter = server.adapter_factory(self)
        if server.connection_state_recovery is not None:
            self.adapter.enable_recovery(server.connection_state_recovery)
        if parent is not None:
            self._incoming_hooks = parent._incoming_hooks
            self._outgoing_hooks = parent._outgoing_hooks
        if server._admin is not None:
            server._admin.watch(self)

    def __repr__(self) -> str:
        return f"<Namespace {self.name}>"

    # -- handler lookup -------------------------------------------------------------------
    def _handler(self, event: str) -> Handler | None:
        handler = self._handlers.get(event)
        if handler is None and self.parent is not None:
            handler = self.parent._handlers.get(event)
        return handler

    def _is_ordered(self, event: str) -> bool:
        if event in self._ordered or (self.parent is not None and event in self.parent._ordered):
            return True
        for table in (self, self.parent):
            if table is not None and table.ordered_handlers is not None:
                return table.ordered_handlers
        return self.server.ordered_handlers

    def _refresh_packet_chain(self) -> None:
        chain = self._packet_middlewares
        if self.parent is not None:
            chain = self.parent._packet_middlewares + chain
        self._packet_chain = tuple(chain)

    def _all(self, name: str) -> list[Handler]:
        mine = self._lifecycle.get(name, [])
        if self.parent is None:
            return mine
        return self.parent._lifecycle.get(name, []) + mine

    async def _run_middlewares(self, socket: Socket, auth: dict[str, Any]) -> None:
        chain = (
            self._middlewares
            if self.parent is None
            else self.parent._middlewares + self._middlewares
        )
        for middleware in chain:
            await middleware(socket, auth)

    async def _on_connection(self, socket: Socket, auth: dict[str, Any]) -> None:
        if self.server._admin is not None:
            self.server._admin.socket_connected(socket)
        for handler in self._all("connection"):
            try:
                await handler(socket, auth)
            except ConnectionClosed:
                return
            except Exception:
                log.exception("%r: connection handler failed", socket)

    async def _run_lifecycle(self, name: str, socket: Socket, reason: str) -> None:
        for handler in self._all(name):
            try:
                await handler(socket, reason)
            except Exception:
                log.exception("%r: %s handler failed", socket, name)
        if name == "disconnecting" and self.server._admin is not None:
            self.server._admin.socket_leaving(socket, reason)

    # -- socket registry (the adapter's view) ---------------------------------------------
    def _add(self, socket: Socket) -> None:
        self.sockets[socket.id] = socket
        if socket._pid is not None:
            self._pid_sockets[socket._pid] = socket
        self.adapter.add_all(socket.id, (socket.id,))
        if socket._own is not None:
            socket._count_outgoing()  # outgoing listeners added by a middleware

    def _remove(self, socket: Socket) -> None:
        self.adapter.delete_all(socket.id)
        self.sockets.pop(socket.id, None)
        if socket._pid is not None and self._pid_sockets.get(socket._pid) is socket:
            del self._pid_sockets[socket._pid]
        if (
            self.parent is not None
            and not self.sockets
            and self.server.cleanup_empty_child_namespaces
        ):
            self.parent._forget(self)

    def get_socket(self, sid: str) -> Socket | None:
        """The connected socket with this id, if any."""
        return self.sockets.get(sid)

    async def deliver(
        self, sids: Sequence[str], packet: Packet, *, volatile: bool, compress: bool = True
    ) -> None:
        """Encode ``packet`` once and queue it for each socket; never waits for one socket.

        A socket whose send queue is over its bound still gets the packet (and is closed as
        a slow consumer if it stays over, see ``max_buffer_bytes``); volatile packets are
        dropped for sockets that cannot write right now. The outgoing catch-all listeners
        are called for each socket first.
        """
        group = frames_to_engine(self.server.parser.encode(packet), compress)
        hooks = self._outgoing_hooks
        sockets = self.sockets
        if hooks or self._own_outgoing or volatile or self.server._admin is not None:
            for sid in sids:
                socket = sockets.get(sid)
                if socket is None or not socket.connected:
                    continue
                if hooks or self._own_outgoing:
                    await socket._notify_outgoing(packet.data)
                socket._connection.send_group_nowait(group, volatile=volatile, force=not volatile)
        else:
            # The common case, per recipient: one non-blocking write of the frames encoded
            # above (or, corked, a place in one write after the burst; or a place in its
            # queue when the socket is busy): no task switch, no per-recipient encoding.
            for sid in sids:
                socket = sockets.get(sid)
                if socket is not None and socket.connected:
                    try:
                        socket._engine.send_packets_nowait(group, force=True)
                    except ConnectionClosed:
                        pass
        await emit_checkpoint(len(sids))

    async def deliver_with_ack(
        self,
        sids: Sequence[str],
        packet: Packet,
        timeout: float,
        on_reply: Callable[[Any], None] | None = None,
        *,
        compress: bool = True,
    ) -> tuple[list[Any], bool]:
        """Send to each socket with its own ack id and collect replies until ``timeout``;
        ``on_reply`` is called with each reply as it comes."""
        replies: list[Any] = []
        targets = [
            s for s in (self.sockets.get(sid) for sid in sids) if s is not None and s.connected
        ]
        missing = len(targets)

        async def one(socket: Socket) -> None:
            nonlocal missing
            try:
                await socket._notify_outgoing(packet.data)
                reply = await socket._emit_with_ack_packet(packet, False, compress)
            except (ConnectionClosed, AckTimeoutError):
                return
            replies.append(reply)
            missing -= 1
            if on_reply is not None:
                on_reply(reply)

        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                for socket in targets:
                    nursery.start_soon(one, socket)
        return replies, missing == 0

    async def on_server_side_emit(
        self, data: list[Any], reply: Callable[[Any], Awaitable[None]] | None
    ) -> None:
        """Run this node's handler of a server-side emit from another node."""
        event, *args = data
        handler = self._server_side.get(str(event))
        if handler is None and self.parent is not None:
            handler = self.parent._server_side.get(str(event))
        if handler is None:
            log.debug("%r: no server-side handler for %r", self, event)
            return
        try:
            if handler.takes_ack:
                sender = None if reply is None else _first_arg_sender(reply)
                await handler(*args, ack=Ack(sender))
                return
            result = await handler(*args)
        except Exception:
            log.exception("%r: server-side handler for %r failed", self, event)
            return
        if reply is not None:
            await reply(result)

    async def server_side_emit(self, event: str, *args: Any) -> None:
        """Send an event to the server-side handlers of the other nodes (see
        :meth:`on_server_side`); with a single-node adapter, nobody gets it."""
        await self.adapter.server_side_emit(event_data(event, args))

    async def server_side_emit_with_ack(
        self, event: str, *args: Any, timeout: float = 5.0
    ) -> list[Any]:
        """Send an event to the other nodes' server-side handlers and collect one reply per
        node.

        Raises:
            AckTimeoutError: some node did not answer within ``timeout`` seconds; ``replies``
                holds those that did.
        """
        replies, complete = await self.adapter.server_side_emit_with_ack(
            event_data(event, args), timeout
        )
        if not complete:
            raise AckTimeoutError(
                f"timeout reached: only {len(replies)} server-side replies", replies=replies
            )
        return replies

    async def server_count(self) -> int:
        """How many nodes serve this namespace."""
        return await self.adapter.server_count()

    # -- broadcasting ---------------------------------------------------------------------
    def _operator(self) -> BroadcastOperator:
        return BroadcastOperator(self, BroadcastOptions())

    def to(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """Sockets in any of these rooms."""
        return self._operator().to(*rooms)

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """Every socket except those in these rooms."""
        return self._operator().except_(*rooms)

    @property
    def volatile(self) -> BroadcastOperator:
        """Broadcast without guarantee."""
        return self._operator().volatile

    @property
    def local(self) -> BroadcastOperator:
        """This node only."""
        return self._operator().local

    def timeout(self, seconds: float) -> BroadcastOperator:
        """Broadcast waiting for acks, at most ``seconds``."""
        return self._operator().timeout(seconds)

    def compress(self, compress: bool) -> BroadcastOperator:
        """Broadcast with compression allowed or not."""
        return self._operator().compress(compress)

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event to every socket of the namespace."""
        await self._operator().emit(event, *args)

    async def send(self, *args: Any) -> None:
        """Emit a ``"message"`` event to every socket."""
        await self._operator().emit("message", *args)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """Needs :meth:`timeout` first: ``await ns.timeout(2).emit_with_ack(...)``."""
        return await self._operator().emit_with_ack(event, *args)

    async def fetch_sockets(self) -> list[Socket | RemoteSocket]:
        """Every socket of the namespace."""
        return await self._operator().fetch_sockets()

    async def sockets_join(self, *rooms: str | Iterable[str]) -> None:
        """Make every socket join these rooms."""
        await self._operator().sockets_join(*rooms)

    async def sockets_leave(self, *rooms: str | Iterable[str]) -> None:
        """Make every socket leave these rooms."""
        await self._operator().sockets_leave(*rooms)

    async def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect every socket of the namespace."""
        await self._operator().disconnect_sockets(close)


NamespaceMatcher = re.Pattern[str] | Callable[[str, dict[str, Any]], bool | Awaitable[bool]]


class ParentNamespace(_HandlerTable):
    """Dynamic namespaces: ``sio.of(re.compile(r"^/room-\\d+$"))``.

    Handlers and middleware registered here apply to every child namespace, created on the
    first connection whose name matches.
    """

    def __init__(self, server: Server, matcher: NamespaceMatcher) -> None:
        super().__init__()
        self.server = server
        self.matcher = matcher
        self.children: dict[str, Namespace] = {}

    async def matches(self, name: str, auth: dict[str, Any]) -> bool:
        """Whether ``name`` belongs to this parent."""
        if isinstance(self.matcher, re.Pattern):
            return self.matcher.fullmatch(name) is not None
        verdict = self.matcher(name, auth)
        if not isinstance(verdict, bool):
            verdict = await verdict
        return bool(verdict)

    def _refresh_packet_chain(self) -> None:
        for child in self.children.values():
            child._refresh_packet_chain()

    def _forget(self, namespace: Namespace) -> None:
        if self.children.get(namespace.name) is namespace:
            del self.children[namespace.name]

    def child(self, name: str) -> Namespace:
        """The child namespace ``name`` (created if needed)."""
        namespace = self.children.get(name)
        if namespace is None:
            namespace = Namespace(self.server, name, parent=self)
            self.children[name] = namespace
        return namespace

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event to every socket of every child namespace."""
        for namespace in list(self.children.values()):
            await namespace.emit(event, *args)


def _first_arg_sender(
    reply: Callable[[Any], Awaitable[None]],
) -> Callable[[tuple[Any, ...]], Awaitable[None]]:
    async def send(args: tuple[Any, ...]) -> None:
        await reply(args[0] if args else None)

    return send
