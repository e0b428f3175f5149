"""The Socket.IO client: one Engine.IO connection, several namespaces, reconnection."""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar, overload

from .._emitter import Callback, SocketEmitter
from ..engineio._http_client import Connector
from ..protocol.socketio import Packet, Parser
from ._manager import Manager
from ._options import Auth, ClientOptions
from .socket import ClientSocket

__all__ = ["Client", "connect", "open_client"]


F = TypeVar("F", bound=Callable[..., Any])

#: The manager events ``client.on`` also takes (the others, whose names a namespace's events
#: may use, such as ``"ping"``, only through ``client.io.on``).
RECONNECT_EVENTS = frozenset(
    {"reconnect_attempt", "reconnect", "reconnect_error", "reconnect_failed"}
)


def _name(namespace: str) -> str:
    return namespace if namespace.startswith("/") else "/" + namespace


class Client:
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
        names = tuple(_name(n) for n in namespaces)
        self.options = ClientOptions(
            url=url,
            namespaces=names,
            auth=auth,
            transports=tuple(transports),
            path=path,
            headers=headers,
            query=query,
            ssl_context=ssl_context,
            reconnection=reconnection,
            reconnection_attempts=reconnection_attempts,
            reconnection_delay=reconnection_delay,
            reconnection_delay_max=reconnection_delay_max,
            randomization_factor=randomization_factor,
            connect_timeout=connect_timeout,
            retries=retries,
            ack_timeout=ack_timeout,
            buffer_size=buffer_size,
            event_queue_size=event_queue_size,
            max_concurrent_handlers=max_concurrent_handlers,
            ordered_handlers=ordered_handlers,
            max_pending_acks=max_pending_acks,
            connector=connector,
            proxy=proxy,
            cookies=cookies,
            try_all_transports=try_all_transports,
            remember_upgrade=remember_upgrade,
            per_message_deflate=per_message_deflate,
        )
        self._manager = Manager(self.options, parser)
        #: The cookie jar (None with ``cookies=False``).
        self.cookies = self._manager.cookies
        for name in names:
            self._manager.sockets[name] = ClientSocket(self._manager, self, name)
        sockets = self._manager.sockets
        self.main = sockets.get("/") or sockets[names[0]]
        self._running: AbstractAsyncContextManager[None] | None = None

    # -- namespaces and handlers ---------------------------------------------------------
    def of(self, namespace: str) -> ClientSocket:
        """The socket of a namespace, made on first use (as socket.io-client's
        ``manager.socket(namespace)``).

        A namespace made before the client connects is connected with the others. One made
        while the client runs stays disconnected until ``await socket.connect()``, which
        connects it over the client's existing connection; register its handlers first.
        """
        name = _name(namespace)
        socket = self._manager.sockets.get(name)
        if socket is None:
            socket = ClientSocket(self._manager, self, name)
            self._manager.add_socket(socket)
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
        """Register a handler on the main namespace (see :meth:`ClientSocket.on`), or for
        one of the reconnection events of the manager (``"reconnect_attempt"``,
        ``"reconnect"``, ``"reconnect_error"``, ``"reconnect_failed"``; every manager event
        is registered with :attr:`io`, as in socket.io-client)."""
        if event in RECONNECT_EVENTS:
            if handler is not None:
                return self._manager.on(event, handler)
            return self._manager.on(event)
        if handler is not None:
            return self.main.on(event, handler, ordered=ordered)
        return self.main.on(event, ordered=ordered)

    @property
    def io(self) -> Manager:
        """The connection manager (socket.io-client's ``socket.io``), for its events:
        ``client.io.on("ping", handler)``; see
        :meth:`Manager.on <trio_sio.client.Manager.on>`."""
        return self._manager

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
        return self._manager.transport

    @property
    def compressed(self) -> bool:
        """Whether the connection runs on a WebSocket with permessage-deflate agreed."""
        return self._manager.compressed

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
        return self._manager.encode(packet)

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
        if self._running is not None:
            raise RuntimeError("this Client is in use in another `async with`")
        running = self._manager.running()
        await running.__aenter__()
        self._running = running
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Disconnect every namespace, close the connection, end every task (handlers
        still running are cancelled)."""
        running, self._running = self._running, None
        if running is not None:
            await running.__aexit__(exc_type, exc, traceback)

    async def aclose(self) -> None:
        """Disconnect (sending DISCONNECT for each namespace) and stop reconnecting.

        Emits already made go out first; then the ``"disconnect"`` handlers run; then every
        task of the client ends, handlers still running included (they are cancelled).

        Blocks: at most about four seconds (two for the goodbye, two for the handlers).

        Cancellation: if cancelled, the goodbye or the wait for the handlers is cut short;
        the client is closed all the same (``async with`` shields this call).
        """
        await self._manager.aclose()


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
