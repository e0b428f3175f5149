"""The Socket.IO server."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import trio

from ..adapters.base import Adapter, RemoteSocket, SocketRegistry
from ..adapters.memory import InMemoryAdapter
from ..adapters.recovery import ConnectionStateRecovery
from ..engineio.config import EngineConfig
from ..engineio.server import EngineServer
from ..engineio.socket import EngineSocket
from ..frontends import standalone
from ..protocol.socketio import JsonParser, Parser
from .broadcast import BroadcastOperator
from .connection import Connection
from .namespace import Namespace, NamespaceMatcher, ParentNamespace
from .socket import Socket

if TYPE_CHECKING:
    from ..admin import Instrumentation, SessionStore
    from .hooks import ServerHook

__all__ = ["Server"]

F = TypeVar("F", bound=Callable[..., Any])


class Server:
    """A Socket.IO v5 server on Trio.

    Args:
        path: the URL path (``"/socket.io/"``).
        parser: the packet parser (default :class:`~trio_sio.protocol.socketio.JsonParser`;
            all clients must use the same).
        adapter: a factory ``adapter(namespace) -> Adapter`` (default in-memory).
        connect_timeout: seconds a client has to connect to a namespace after the
            Engine.IO handshake before the connection is closed.
        max_concurrent_handlers: events of one socket in flight at once (handlers running
            or, for ordered events, waiting their turn); at the bound, the connection stops
            reading (backpressure) until one finishes.
        ordered_handlers: handle every event strictly one at a time per socket, in order
            (default: concurrently; see also ``Namespace.ordered_handlers`` and
            ``on(event, ordered=True)``).
        cleanup_empty_child_namespaces: remove a dynamic child namespace (and its adapter)
            when its last socket leaves, as the JS option of that name does (off by default,
            as in JS: handlers registered on the child itself would be lost).
        max_pending_acks: acks one socket may wait for at once.
        max_inflight_bytes: bytes (as received) of one connection's messages whose
            handlers are still running; above it the connection's reading pauses until
            some finish (one message is always let through). With the decoders' own caps
            on elements and depth, this bounds what a connection's in-flight work holds
            in memory after decoding, not only on the wire.
        close_grace: seconds the disconnect handlers get when a connection ends.
        connection_state_recovery: ``True`` or a
            :class:`~trio_sio.adapters.recovery.ConnectionStateRecovery` (its limits) to
            give a client whose connection dropped its socket back (id, rooms, ``data``)
            with the packets it missed; see the "Connection state recovery" guide.
        **engine_options: Engine.IO settings (:class:`~trio_sio.engineio.EngineConfig`):
            ``ping_interval``, ``ping_timeout``, ``max_http_buffer_size``,
            ``cors_allowed_origins``, ``allow_request``, ``transports``, ``cookie``, ...

    Handlers live on namespaces; the server's own ``on``/``use``/``emit``/... act on ``"/"``::

        sio = trio_sio.Server()

        @sio.on("connection")
        async def connected(socket, auth): ...

        @sio.on("update item")
        async def update(socket, item_id, changes):
            return {"status": "ok"}          # the ack, if the client asked for one
    """

    def __init__(
        self,
        *,
        path: str = "/socket.io/",
        parser: Parser | None = None,
        adapter: Callable[[SocketRegistry], Adapter] = InMemoryAdapter,
        connect_timeout: float = 45.0,
        max_concurrent_handlers: int = 64,
        ordered_handlers: bool = False,
        cleanup_empty_child_namespaces: bool = False,
        max_pending_acks: int = 10_000,
        max_inflight_bytes: int = 1_000_000,
        close_grace: float = 5.0,
        connection_state_recovery: ConnectionStateRecovery | bool = False,
        **engine_options: Any,
    ) -> None:
        self.parser: Parser = parser or JsonParser()
        self.adapter_factory = adapter
        self.connect_timeout = connect_timeout
        if max_concurrent_handlers < 1:
            raise ValueError("max_concurrent_handlers must be at least 1")
        self.max_concurrent_handlers = max_concurrent_handlers
        self.ordered_handlers = ordered_handlers
        self.cleanup_empty_child_namespaces = cleanup_empty_child_namespaces
        self.max_pending_acks = max_pending_acks
        self.max_inflight_bytes = max_inflight_bytes
        self.close_grace = close_grace
        #: the recovery settings (None: off)
        self.connection_state_recovery: ConnectionStateRecovery | None = (
            ConnectionStateRecovery()
            if connection_state_recovery is True
            else connection_state_recovery or None
        )
        self.engine = EngineServer(
            None,
            EngineConfig(path=path, **engine_options),
            on_open=self._attach,
        )
        # A polling handshake not followed up within the connect timeout is forgotten then,
        # as its session would have been closed.
        self.engine.claim_timeout = connect_timeout
        self._namespaces: dict[str, Namespace] = {}
        self._parents: list[ParentNamespace] = []
        #: the observer attached with :meth:`add_hook` (the Admin UI's instrumentation)
        self._admin: ServerHook | None = None
        self.main = self.of("/")

    # -- namespaces -----------------------------------------------------------------------
    @overload
    def of(self, name: str) -> Namespace: ...
    @overload
    def of(self, name: NamespaceMatcher) -> ParentNamespace: ...
    def of(self, name: str | NamespaceMatcher) -> Namespace | ParentNamespace:
        """The namespace ``name`` (created if needed), or a parent of dynamic namespaces
        when given a compiled regex or a function ``fn(name, auth) -> bool``."""
        if isinstance(name, str):
            if not name.startswith("/"):
                name = "/" + name
            namespace = self._namespaces.get(name)
            if namespace is None:
                namespace = Namespace(self, name)
                self._namespaces[name] = namespace
            return namespace
        parent = ParentNamespace(self, name)
        self._parents.append(parent)
        return parent

    @property
    def namespaces(self) -> dict[str, Namespace]:
        """Static namespaces and the dynamic ones created so far."""
        found = dict(self._namespaces)
        for parent in self._parents:
            found.update(parent.children)
        return found

    async def _namespace_for(self, name: str, auth: dict[str, Any]) -> Namespace | None:
        namespace = self._namespaces.get(name)
        if namespace is not None:
            return namespace
        for parent in self._parents:
            if name in parent.children:
                return parent.children[name]
            if await parent.matches(name, auth):
                return parent.child(name)
        return None

    # -- the main namespace ---------------------------------------------------------------
    @overload
    def on(
        self, event: str, handler: None = None, *, ordered: bool = False
    ) -> Callable[[F], F]: ...
    @overload
    def on(self, event: str, handler: F, *, ordered: bool = False) -> F: ...
    def on(
        self, event: str, handler: F | None = None, *, ordered: bool = False
    ) -> F | Callable[[F], F]:
        """Register a handler on ``"/"``; see :meth:`Namespace.on`."""
        if handler is None:
            return self.main.on(event, ordered=ordered)
        return self.main.on(event, handler, ordered=ordered)

    def use(self, middleware: F) -> F:
        """Add connection middleware to ``"/"``; see :meth:`Namespace.use`."""
        return self.main.use(middleware)

    def on_any(self, handler: F) -> F:
        """Catch-all for incoming events on ``"/"``."""
        return self.main.on_any(handler)

    def on_any_outgoing(self, handler: F) -> F:
        """Catch-all for outgoing events on ``"/"``."""
        return self.main.on_any_outgoing(handler)

    def prepend_any(self, handler: F) -> F:
        """Catch-all for incoming events on ``"/"``, called before the others."""
        return self.main.prepend_any(handler)

    def off_any(self, handler: Callable[..., Any] | None = None) -> None:
        """Remove a catch-all for incoming events on ``"/"`` (every one if None)."""
        self.main.off_any(handler)

    def listeners_any(self) -> list[Callable[..., Any]]:
        """The catch-alls for incoming events on ``"/"``."""
        return self.main.listeners_any()

    def prepend_any_outgoing(self, handler: F) -> F:
        """Catch-all for outgoing events on ``"/"``, called before the others."""
        return self.main.prepend_any_outgoing(handler)

    def off_any_outgoing(self, handler: Callable[..., Any] | None = None) -> None:
        """Remove a catch-all for outgoing events on ``"/"`` (every one if None)."""
        self.main.off_any_outgoing(handler)

    def listeners_any_outgoing(self) -> list[Callable[..., Any]]:
        """The catch-alls for outgoing events on ``"/"``."""
        return self.main.listeners_any_outgoing()

    def use_packet(self, middleware: F) -> F:
        """Add packet middleware to ``"/"``; see :meth:`Namespace.use_packet`."""
        return self.main.use_packet(middleware)

    def to(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """Sockets of ``"/"`` in any of these rooms."""
        return self.main.to(*rooms)

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """Sockets of ``"/"`` not in these rooms."""
        return self.main.except_(*rooms)

    @property
    def volatile(self) -> BroadcastOperator:
        """Broadcast on ``"/"`` without guarantee."""
        return self.main.volatile

    @property
    def local(self) -> BroadcastOperator:
        """Broadcast on ``"/"``, this node only."""
        return self.main.local

    def timeout(self, seconds: float) -> BroadcastOperator:
        """Broadcast on ``"/"`` waiting at most ``seconds`` for acks."""
        return self.main.timeout(seconds)

    def compress(self, compress: bool) -> BroadcastOperator:
        """Broadcast on ``"/"`` with compression allowed or not."""
        return self.main.compress(compress)

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event to every socket of ``"/"``."""
        await self.main.emit(event, *args)

    async def send(self, *args: Any) -> None:
        """Emit ``"message"`` to every socket of ``"/"``."""
        await self.main.send(*args)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """``await sio.timeout(2).emit_with_ack(...)``: one reply per socket."""
        return await self.main.emit_with_ack(event, *args)

    async def fetch_sockets(self) -> list[Socket | RemoteSocket]:
        """Every socket of ``"/"``."""
        return await self.main.fetch_sockets()

    @overload
    def on_server_side(self, event: str, handler: None = None) -> Callable[[F], F]: ...
    @overload
    def on_server_side(self, event: str, handler: F) -> F: ...
    def on_server_side(self, event: str, handler: F | None = None) -> F | Callable[[F], F]:
        """Handle a server-side emit from another node on ``"/"``; see
        :meth:`Namespace.on_server_side`."""
        if handler is None:
            return self.main.on_server_side(event)
        return self.main.on_server_side(event, handler)

    async def server_side_emit(self, event: str, *args: Any) -> None:
        """Send an event to the other nodes' server-side handlers of ``"/"``."""
        await self.main.server_side_emit(event, *args)

    async def server_side_emit_with_ack(
        self, event: str, *args: Any, timeout: float = 5.0
    ) -> list[Any]:
        """Like :meth:`server_side_emit`, returning one reply per other node."""
        return await self.main.server_side_emit_with_ack(event, *args, timeout=timeout)

    async def server_count(self) -> int:
        """How many nodes serve ``"/"`` (1 without a multi-node adapter)."""
        return await self.main.server_count()

    async def sockets_join(self, *rooms: str | Iterable[str]) -> None:
        """Make every socket of ``"/"`` join these rooms."""
        await self.main.sockets_join(*rooms)

    async def sockets_leave(self, *rooms: str | Iterable[str]) -> None:
        """Make every socket of ``"/"`` leave these rooms."""
        await self.main.sockets_leave(*rooms)

    async def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect every socket of ``"/"``."""
        await self.main.disconnect_sockets(close)

    # -- running --------------------------------------------------------------------------
    async def serve(
        self,
        host: str | None,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` and serve until cancelled or :meth:`shutdown`.

        Use as ``listeners = await nursery.start(sio.serve, "127.0.0.1", 3000)``. With
        ``ssl_context`` (a server context holding the certificate chain), it serves
        HTTPS/WSS. To serve inside an ASGI server instead, see :class:`trio_sio.ASGIApp`.
        With ``reuse_port``, several processes may listen on the same port (``SO_REUSEPORT``;
        see ``python -m trio_sio serve`` on the Scaling out page).

        Resource handling: on cancellation or shutdown every connection is closed (clients
        get a close packet; disconnect handlers run with reason ``"server shutting down"``).

        Error handling: a failing connection or handler is logged and harms nothing else.
        An adapter that cannot start (Redis unreachable) makes this raise before listening.
        """
        async with self._adapter_running(), self._admin_running():
            await standalone.serve(
                self.engine,
                host,
                port,
                ssl_context=ssl_context,
                reuse_port=reuse_port,
                task_status=task_status,
            )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host connections for another front end (ASGI) without listening."""
        async with self._adapter_running(), self._admin_running():
            await self.engine.run(task_status=task_status)

    @asynccontextmanager
    async def _adapter_running(self) -> AsyncIterator[None]:
        """Run the adapter's background work (a multi-node adapter's I/O), if it has any."""
        run = getattr(self.adapter_factory, "run", None)
        if run is None:
            yield
            return
        started = False
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(run)
                started = True
                try:
                    yield
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            if not started and len(group.exceptions) == 1:
                raise group.exceptions[0] from None  # why the adapter could not start
            raise

    @asynccontextmanager
    async def _admin_running(self) -> AsyncIterator[None]:
        """Run the Admin UI's periodic stats and notifications, if :meth:`instrument` was
        called."""
        if self._admin is None:
            yield
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._admin.run)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()

    def add_hook(self, hook: ServerHook) -> None:
        """Attach an observer (:class:`~trio_sio.server.hooks.ServerHook`) before serving.

        Raises:
            RuntimeError: one is attached already, or the server is running.
        """
        if self._admin is not None:
            raise RuntimeError("this server is already instrumented")
        if self.engine.running:
            raise RuntimeError("instrument() must be called before serve() or run()")
        self._admin = hook
        for namespace in self._namespaces.values():
            hook.watch(namespace)

    def instrument(
        self,
        *,
        auth: Any,
        mode: Literal["development", "production"] = "development",
        readonly: bool = False,
        namespace: str = "/admin",
        server_id: str | None = None,
        store: SessionStore | None = None,
        stats_interval: float = 2.0,
    ) -> Instrumentation:
        """Serve the Socket.IO Admin UI (https://admin.socket.io) on ``namespace``.

        Args:
            auth: ``False`` (anyone may connect), or
                ``{"type": "basic", "username": ..., "password": <bcrypt hash>}`` (needs
                the ``admin`` extra: bcrypt).
            mode: ``"development"`` reports every socket, room change and event to the UI;
                ``"production"`` only the periodic server stats.
            readonly: refuse the UI's commands (emit, join, leave, disconnect).
            namespace: the admin namespace.
            server_id: this node's name in the UI (default ``"<hostname>#<pid>"``).
            store: where login sessions are kept (default in memory, 24 h); see
                :class:`~trio_sio.admin.RedisSessionStore` for a cluster.
            stats_interval: seconds between two ``server_stats``.

        Returns:
            The :class:`~trio_sio.admin.Instrumentation`; it runs while the server serves.

        Raises:
            ValueError: a bad ``auth`` or ``mode``.
            RuntimeError: the server is instrumented already, or running (call this
                before :meth:`serve` or :meth:`run`).

        The UI's page runs on another origin: list it in ``cors_allowed_origins``. See the
        Admin UI guide.
        """
        from ..admin import Instrumentation  # noqa: PLC0415 - loaded only when used

        return Instrumentation(
            self,
            auth=auth,
            mode=mode,
            readonly=readonly,
            namespace=namespace,
            server_id=server_id,
            store=store,
            stats_interval=stats_interval,
        )

    def shutdown(self) -> None:
        """Stop :meth:`serve` or :meth:`run` after closing every connection."""
        self.engine.shutdown()

    def _attach(self, engine: EngineSocket) -> None:
        engine.attach(Connection(self, engine))
