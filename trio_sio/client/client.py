"""The Socket.IO client: one Engine.IO connection, several namespaces, reconnection."""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar, overload

import trio

from .._emitter import Callback, SocketEmitter
from .._handlers import Handler
from ..engineio._http_client import Connector
from ..protocol.errors import ConnectionClosed
from ..protocol.socketio import Packet, PacketType, Parser
from ._backoff import Backoff
from ._manager import Auth, Manager
from ._namespace import DRAIN_GRACE
from .socket import ClientSocket

__all__ = ["Client", "connect", "open_client"]


F = TypeVar("F", bound=Callable[..., Any])

#: Manager-level events (the JS ``socket.io-client`` manager's).
MANAGER_EVENTS = frozenset(
    {
        "open",
        "close",
        "error",
        "ping",
        "packet",
        "reconnect_attempt",
        "reconnect",
        "reconnect_error",
        "reconnect_failed",
    }
)


def _name(namespace: str) -> str:
    return namespace if namespace.startswith("/") else "/" + namespace


class Client(Manager):
    """A Socket.IO client for Trio.

    Register handlers first, then connect with ``async with``; the block starts once every
    requested namespace is connected, so an emit right away never fails for lack of one::

        client = trio_sio.Client("http://localhost:3000", auth={"token": "..."})

        @client.on("hello")
        async def hello(message): ...

        async with client:
            await client.emit("hello", "world")

    Args:
        url: the server, ``http(s)://host:port`` (``ws(s)://`` works too).
        namespaces: the namespaces to connect, over one connection (``"/"`` by default).
            Others can be added with :meth:`of`.
        auth: the CONNECT payload: a dict, or a function (sync or async) returning one,
            called at each (re)connection.
        transports: ``("polling", "websocket")`` (start on polling, then upgrade),
            ``("websocket",)`` or ``("polling",)``.
        path: the server's path.
        headers, query, ssl_context: passed to the Engine.IO connection (TLS is verified
            by default).
        parser: the packet parser (must match the server's).
        reconnection: reconnect automatically after a connection is lost.
        reconnection_attempts: give up after this many failed attempts in a row.
        reconnection_delay, reconnection_delay_max, randomization_factor: the back-off
            (1 s growing to 5 s, doubling, ±50 % jitter, as the JS client).
        connect_timeout: seconds allowed for each Engine.IO handshake.
        retries: with ``retries > 0``, every emit waits for an ack (``ack_timeout`` each
            try) and is sent again up to ``retries`` times: at-least-once delivery, one
            packet at a time, in order.
        ack_timeout: seconds per try when ``retries`` is set (5 s if None).
        buffer_size: emits kept while disconnected, per namespace.
        event_queue_size: received events waiting for their handler to start, per namespace.
        max_concurrent_handlers: handlers of one namespace in flight at once (running, or
            waiting for their turn in the ordered lane); at the bound the client stops
            taking events, and then stops reading from the connection (backpressure).
        ordered_handlers: handle every event (and lifecycle event) one at a time, in
            order, per namespace (default: concurrently; see also ``on(event,
            ordered=True)``).
        max_pending_acks: acks one namespace may wait for at once.
        connector: opens the byte stream instead of TCP (``trio_sio.testing`` connects in
            memory with it).
        proxy: an ``http://[user:password@]host:port`` proxy that every connection
            (polling requests and the WebSocket) tunnels through with ``CONNECT``; None
            (the default) takes ``HTTPS_PROXY``/``HTTP_PROXY`` and ``NO_PROXY`` from the
            environment; False uses none.
        cookies: keep the cookies the server (or a load balancer) sets and send them back
            with later requests and WebSocket handshakes, across reconnections, as a
            browser does (cookie-sticky load balancers need it). The jar is
            :attr:`cookies`.
        try_all_transports: if connecting over the first transport fails, try the next
            ones (socket.io-client's ``tryAllTransports``).
        remember_upgrade: once a connection ran on WebSocket, start the next ones on
            WebSocket directly (socket.io-client's ``rememberUpgrade``).
        per_message_deflate: offer permessage-deflate on the WebSocket, as
            socket.io-client does; it is used when the server accepts it (our server with
            ``per_message_deflate=True``, the Node server with ``perMessageDeflate``).
            :attr:`compressed` tells.
    """

    def __init__(
        self,
        url: str,
        *,
        namespaces: Sequence[str] = ("/",),
        auth: Auth | None = None,
        transports: Sequence[str] = ("polling", "websocket"),
        path: str = "/socket.io/",
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        parser: Parser | None = None,
        reconnection: bool = True,
        reconnection_attempts: float = math.inf,
        reconnection_delay: float = 1.0,
        reconnection_delay_max: float = 5.0,
        randomization_factor: float = 0.5,
        connect_timeout: float = 20.0,
        retries: int = 0,
        ack_timeout: float | None = None,
        buffer_size: int = 1024,
        event_queue_size: int = 256,
        max_concurrent_handlers: int = 64,
        ordered_handlers: bool = False,
        max_pending_acks: int = 10_000,
        connector: Connector | None = None,
        proxy: str | bool | None = None,
        cookies: bool = True,
        try_all_transports: bool = False,
        remember_upgrade: bool = False,
        per_message_deflate: bool = True,
    ) -> None:
        if not namespaces:
            raise ValueError("at least one namespace is needed")
        if max_concurrent_handlers < 1:
            raise ValueError("max_concurrent_handlers must be at least 1")
        super().__init__(parser, cookies=cookies)
        self.proxy = proxy
        self.try_all_transports = try_all_transports
        self.remember_upgrade = remember_upgrade
        self.per_message_deflate = per_message_deflate
        self.url = url
        self.auth = auth
        self.transports = tuple(transports)
        self.path = path
        self.headers = headers
        self.query = query
        self.ssl_context = ssl_context
        self.reconnection = reconnection
        self.reconnection_attempts = reconnection_attempts
        self.backoff = Backoff(
            reconnection_delay, reconnection_delay_max, 2.0, randomization_factor
        )
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.ack_timeout = ack_timeout
        self.buffer_size = buffer_size
        self.event_queue_size = event_queue_size
        self.max_concurrent_handlers = max_concurrent_handlers
        self.ordered_handlers = ordered_handlers
        self.max_pending_acks = max_pending_acks
        self.connector = connector
        names = [_name(n) for n in namespaces]
        self._namespaces = tuple(names)
        self._entered = False
        self._sockets: dict[str, ClientSocket] = {n: ClientSocket(self, n) for n in names}
        self.main = self._sockets.get("/") or self._sockets[names[0]]
        self._manager_handlers: dict[str, list[Handler]] = {}
        self._stack: AsyncExitStack | None = None

    # -- namespaces and handlers ---------------------------------------------------------
    def of(self, namespace: str) -> ClientSocket:
        """The socket of a namespace, made on first use (as socket.io-client's
        ``manager.socket(namespace)``).

        A namespace made before the client connects is connected with the others. One made
        while the client runs stays disconnected until ``await socket.connect()``, which
        connects it over the client's existing connection; register its handlers first.
        """
        name = _name(namespace)
        socket = self._sockets.get(name)
        if socket is None:
            socket = self._sockets[name] = ClientSocket(self, name)
            if self._closing or self._ended:
                socket._shutdown("io client disconnect")
            elif self._running:
                socket._start_tasks(self._nursery)
        return socket

    @overload
    def on(
        self, event: str, handler: None = None, *, ordered: bool = False
    ) -> Callable[[F], F]: ...
    @overload
    def on(self, event: str, handler: F, *, ordered: bool = False) -> F: ...
    def on(
        self, event: str, handler: F | None = None, *, ordered: bool = False
    ) -> F | Callable[[F], F]:
        """Register a handler on the main namespace (see :meth:`ClientSocket.on`), or for a
        manager event, with socket.io-client's names and order: ``"open"`` (the Engine.IO
        connection opened), ``"close"`` (it closed: the reason), ``"error"`` (a connection
        attempt failed: the error), ``"ping"`` (the server's ping came), ``"packet"`` (a
        Socket.IO packet came: the :class:`~trio_sio.protocol.socketio.Packet`),
        ``"reconnect_attempt"`` (attempt number), ``"reconnect"`` (attempts it took),
        ``"reconnect_error"`` (the error), ``"reconnect_failed"`` (no arguments).
        Manager handlers run in the client's connecting or receiving task, one at a time
        (``ordered`` does not apply to them): keep them short."""
        if event in MANAGER_EVENTS:

            def register(fn: F) -> F:
                self._manager_handlers.setdefault(event, []).append(Handler(fn))
                return fn

            return register(handler) if handler is not None else register
        if handler is not None:
            return self.main.on(event, handler, ordered=ordered)
        return self.main.on(event, ordered=ordered)

    def on_any(self, handler: F) -> F:
        """Catch-all for incoming events of the main namespace."""
        return self.main.on_any(handler)

    def on_any_outgoing(self, handler: F) -> F:
        """Catch-all for outgoing events of the main namespace."""
        return self.main.on_any_outgoing(handler)

    @property
    def connected(self) -> bool:
        """Whether the main namespace is connected."""
        return self.main.connected

    @property
    def id(self) -> str | None:
        """The main namespace's socket id, while connected."""
        return self.main.id

    @property
    def recovered(self) -> bool:
        """Whether the main namespace's last connection recovered its session (see
        :attr:`ClientSocket.recovered`)."""
        return self.main.recovered

    @property
    def transport(self) -> str | None:
        """The current transport (``"polling"``/``"websocket"``), while connected."""
        return self._session.engine.transport if self._session is not None else None

    @property
    def compressed(self) -> bool:
        """Whether the connection runs on a WebSocket with permessage-deflate agreed."""
        return self._session is not None and self._session.engine.deflate

    async def emit(self, event: str, *args: Any, callback: Callback | None = None) -> None:
        """Emit on the main namespace; see :meth:`ClientSocket.emit`."""
        await self.main.emit(event, *args, callback=callback)

    async def emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> Any:
        """Emit on the main namespace and wait for the ack (``ClientSocket.emit_with_ack``)."""
        return await self.main.emit_with_ack(event, *args, timeout=timeout)

    async def send(self, *args: Any, callback: Callback | None = None) -> None:
        """Emit ``"message"`` on the main namespace."""
        await self.main.send(*args, callback=callback)

    @property
    def volatile(self) -> SocketEmitter:
        """Volatile emits on the main namespace."""
        return self.main.volatile

    def timeout(self, seconds: float) -> SocketEmitter:
        """Emits with an ack timeout on the main namespace."""
        return self.main.timeout(seconds)

    def compress(self, compress: bool) -> SocketEmitter:
        """The compress flag on the main namespace (no effect: see ``ClientSocket.compress``)."""
        return self.main.compress(compress)

    async def wait_for(self, event: str) -> tuple[Any, ...]:
        """Wait for the next ``event`` on the main namespace; see :meth:`ClientSocket.wait_for`."""
        return await self.main.wait_for(event)

    def encode(self, packet: Packet) -> list[str | bytes]:
        """Encode a packet with this client's parser."""
        return self.parser.encode(packet)

    # -- lifetime -------------------------------------------------------------------------
    async def __aenter__(self) -> Client:
        """Connect: returns once every namespace is connected.

        Raises:
            ConnectionRefused: a namespace was refused by the server's middleware (with the
                server's ``message`` and ``data``).
            ConnectError: the server could not be reached and reconnection is off or gave up.
            RuntimeError: the client is connected already (in another ``async with``).

        A client may be entered again once a previous ``async with`` has ended: it
        connects anew (handlers stay registered, cookies are kept).

        Cancellation: cancelling while connecting leaves nothing running.
        """
        if self._entered:
            raise RuntimeError("this Client is in use in another `async with`")
        if self._running:
            self._reset()
        self._entered = True
        try:
            return await self._enter()
        except BaseException:
            self._entered = False
            raise

    def _reset(self) -> None:
        """Make a client that ran (and ended) ready to connect again."""
        self._session = None
        self._started = self._closing = self._ended = False
        self._wake_event = trio.Event()
        for name, socket in self._sockets.items():
            socket._reopen(want=name in self._namespaces)

    async def _enter(self) -> Client:
        self._running = True
        self._initial = set(self._sockets)
        stack = AsyncExitStack()
        try:
            self._nursery = await stack.enter_async_context(trio.open_nursery())
            for socket in list(self._sockets.values()):
                socket._start_tasks(self._nursery)
            await self._nursery.start(self._manager)
        except BaseException as exc:
            self._closing = True
            self._nursery.cancel_scope.cancel()
            try:
                await stack.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseExceptionGroup as group:
                inner = group.exceptions[0] if len(group.exceptions) == 1 else None
                if inner is not None:
                    raise inner from None
                raise
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        """Disconnect every namespace, close the connection, end every task (handlers
        still running are cancelled)."""
        stack, self._stack = self._stack, None
        try:
            try:
                with trio.CancelScope(shield=True):
                    await self.aclose()  # bounded: at most a few seconds
            finally:
                self._nursery.cancel_scope.cancel()
            if stack is not None:
                try:
                    await stack.__aexit__(*exc_info)
                except BaseExceptionGroup as group:
                    if len(group.exceptions) == 1:
                        raise group.exceptions[0] from None
                    raise
        finally:
            self._entered = False

    async def aclose(self) -> None:
        """Disconnect (sending DISCONNECT for each namespace) and stop reconnecting.

        Emits already made go out first; then the ``"disconnect"`` handlers run; then every
        task of the client ends, handlers still running included (they are cancelled).

        Blocks: at most about four seconds (two for the goodbye, two for the handlers).

        Cancellation: if cancelled, the goodbye or the wait for the handlers is cut short;
        the client is closed all the same (``async with`` shields this call).
        """
        if self._closing:
            await trio.lowlevel.checkpoint()
            return
        self._closing = True
        self._wake()
        session = self._session
        with trio.move_on_after(DRAIN_GRACE):
            if session is not None:
                connected = [s for s in self._sockets.values() if s.connected]
                for socket in connected:
                    await socket._drain("io client disconnect")
                for socket in connected:
                    link = socket._link
                    if link is not None:
                        try:
                            await link.send(socket._encode(PacketType.DISCONNECT))
                        except ConnectionClosed:
                            break
                await session.engine.aclose()
        sockets = list(self._sockets.values())
        for socket in sockets:
            socket._shutdown("io client disconnect")
        # Let the disconnect handlers run, then stop every task.
        with trio.move_on_after(DRAIN_GRACE):
            for socket in sockets:
                socket._dispatcher.queue.close()
            for socket in sockets:
                await socket._dispatcher.wait_idle()
        self._nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_client(
    url: str, *, handlers: Mapping[str, Callable[..., Any]] | None = None, **options: Any
) -> AsyncIterator[Client]:
    """Connect a Socket.IO client; leaving the block disconnects it::

        async with trio_sio.open_client("http://localhost:3000", auth={"token": "t"}) as client:
            await client.emit("hello", "world")

    Args:
        url: the server.
        handlers: event (or manager event) name → handler, registered on the main
            namespace before connecting, so that nothing the server sends at once is missed.
        **options: the options of :class:`Client`.

    Yields:
        The connected client (every requested namespace connected).

    Raises:
        ConnectionRefused, ConnectError: as :meth:`Client.__aenter__`.

    Cancellation: cancelling while connecting leaves nothing running; cancelling the block
    disconnects (the goodbye is shielded and bounded to a few seconds).
    """
    client = Client(url, **options)
    for event, handler in (handlers or {}).items():
        client.on(event, handler)
    async with client:
        yield client


#: The earlier name of :func:`open_client`.
connect = open_client
