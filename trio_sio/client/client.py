"""The Socket.IO client: one Engine.IO connection, several namespaces, reconnection."""

from __future__ import annotations

import inspect
import logging
import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

import trio

from .._handlers import Handler
from ..engineio._http_client import Connector
from ..engineio.client import ConnectError, open_engine_client
from ..protocol.errors import ConnectionClosed, ConnectionRefused, RemoteProtocolError
from ..protocol.socketio import NEED_DATA, JsonParser, Packet, PacketType, Parser
from ._backoff import Backoff
from .socket import ClientSocket, Session

__all__ = ["Client", "connect"]

log = logging.getLogger("trio_sio.client")

F = TypeVar("F", bound=Callable[..., Any])

Auth = Mapping[str, Any] | Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]

#: Manager-level events (the JS ``socket.io`` manager's).
MANAGER_EVENTS = frozenset(
    {"reconnect_attempt", "reconnect", "reconnect_error", "reconnect_failed"}
)

#: Engine.IO close reasons → the client's disconnect reasons.
_REASONS = {
    "forced close": "io client disconnect",
    "transport close": "transport close",
    "transport error": "transport error",
    "ping timeout": "ping timeout",
    "parse error": "parse error",
}


class _Refused(Exception):
    def __init__(self, namespace: str, data: Any) -> None:
        super().__init__(namespace)
        self.namespace = namespace
        self.data = data


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
        event_queue_size: received events waiting for their handler, per namespace.
        max_pending_acks: acks one namespace may wait for at once.
        connector: opens the byte stream instead of TCP (``trio_sio.testing`` connects in
            memory with it).
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
        max_pending_acks: int = 10_000,
        connector: Connector | None = None,
    ) -> None:
        if not namespaces:
            raise ValueError("at least one namespace is needed")
        self.url = url
        self.auth = auth
        self.transports = tuple(transports)
        self.path = path
        self.headers = headers
        self.query = query
        self.ssl_context = ssl_context
        self.parser: Parser = parser or JsonParser()
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
        self.max_pending_acks = max_pending_acks
        self.connector = connector
        names = [n if n.startswith("/") else "/" + n for n in namespaces]
        self._sockets: dict[str, ClientSocket] = {n: ClientSocket(self, n) for n in names}
        self.main = self._sockets.get("/") or self._sockets[names[0]]
        self._manager_handlers: dict[str, list[Handler]] = {}
        self._session: Session | None = None
        self._closing = False
        self._started = False
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery

    # -- namespaces and handlers ---------------------------------------------------------
    def of(self, namespace: str) -> ClientSocket:
        """The socket of a namespace given in ``namespaces``.

        Raises:
            KeyError: the namespace was not requested.
        """
        return self._sockets[namespace if namespace.startswith("/") else "/" + namespace]

    def on(self, event: str, handler: F | None = None) -> Any:
        """Register a handler on the main namespace, or for a manager event:
        ``"reconnect_attempt"`` (attempt number), ``"reconnect"`` (attempts it took),
        ``"reconnect_error"`` (the error), ``"reconnect_failed"`` (no arguments)."""
        if event in MANAGER_EVENTS:

            def register(fn: F) -> F:
                self._manager_handlers.setdefault(event, []).append(Handler(fn))
                return fn

            return register(handler) if handler is not None else register
        return self.main.on(event, handler)

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
    def transport(self) -> str | None:
        """The current transport (``"polling"``/``"websocket"``), while connected."""
        return self._session.engine.transport if self._session is not None else None

    async def emit(self, event: str, *args: Any, callback: Any = None) -> None:
        """Emit on the main namespace; see :meth:`ClientSocket.emit`."""
        await self.main.emit(event, *args, callback=callback)

    async def emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> Any:
        """Emit on the main namespace and wait for the ack (``ClientSocket.emit_with_ack``)."""
        return await self.main.emit_with_ack(event, *args, timeout=timeout)

    async def send(self, *args: Any, callback: Any = None) -> None:
        """Emit ``"message"`` on the main namespace."""
        await self.main.send(*args, callback=callback)

    @property
    def volatile(self) -> Any:
        """Volatile emits on the main namespace."""
        return self.main.volatile

    def timeout(self, seconds: float) -> Any:
        """Emits with an ack timeout on the main namespace."""
        return self.main.timeout(seconds)

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

        Cancellation: cancelling while connecting leaves nothing running.
        """
        stack = AsyncExitStack()
        try:
            self._nursery = await stack.enter_async_context(trio.open_nursery())
            for socket in self._sockets.values():
                self._nursery.start_soon(socket._dispatch_loop)
                self._nursery.start_soon(socket._flush_loop)
                self._nursery.start_soon(socket._retry_loop)
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
        """Disconnect every namespace, close the connection, end every task."""
        stack, self._stack = self._stack, None
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

    async def aclose(self) -> None:
        """Disconnect (sending DISCONNECT for each namespace) and stop reconnecting.

        Bounded: gives up on the goodbye after two seconds.
        """
        if self._closing:
            return
        self._closing = True
        session = self._session
        with trio.move_on_after(2.0):
            if session is not None:
                # Emits already made go out first: close each buffer, let it drain.
                for socket in self._sockets.values():
                    if socket.connected:
                        socket._outbox_send.close()
                        await socket._flush_done.wait()
                for socket in self._sockets.values():
                    if socket.connected:
                        frames = self.encode(Packet(PacketType.DISCONNECT, socket.namespace))
                        try:
                            await session.engine.send_many(frames)
                        except ConnectionClosed:
                            break
                await session.engine.aclose()
        for socket in self._sockets.values():
            socket._shutdown("io client disconnect")
        # Let the disconnect handlers run, then stop every task.
        with trio.move_on_after(2.0):
            for socket in self._sockets.values():
                socket._events_send.close()
                await socket._dispatch_done.wait()
        self._nursery.cancel_scope.cancel()

    async def _fire(self, event: str, *args: Any) -> None:
        for handler in self._manager_handlers.get(event, []):
            try:
                await handler(*args)
            except Exception:
                log.exception("%s handler failed", event)

    async def _auth(self) -> dict[str, Any] | None:
        auth = self.auth
        if auth is None:
            return None
        if callable(auth):
            value = auth()
            if inspect.isawaitable(value):
                value = await value
            return dict(value)
        return dict(auth)

    async def _manager(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Connect, serve the connection, reconnect with back-off; until closed or given up."""
        started = False
        attempt = 0
        last_error: BaseException | None = None
        while not self._closing:
            reason = "transport close"
            try:
                async with open_engine_client(
                    self.url,
                    path=self.path,
                    transports=self.transports,
                    query=self.query,
                    headers=self.headers,
                    ssl_context=self.ssl_context,
                    connect_timeout=self.connect_timeout,
                    connector=self.connector,
                ) as engine:
                    session = Session(engine)
                    self._session = session
                    self.backoff.reset()
                    if attempt:
                        await self._fire("reconnect", attempt)
                    attempt = 0
                    try:
                        reason = await self._serve(session, task_status if not started else None)
                    finally:
                        session.closed.set()
                        self._session = None
                    started = True
            except _Refused as refused:
                info = refused.data if isinstance(refused.data, dict) else {"message": refused.data}
                message, data = str(info.get("message", "refused")), info.get("data")
                self._disconnect_all("io client disconnect")
                raise ConnectionRefused(message, data) from None
            except ConnectError as exc:
                last_error = exc
                reason = "transport error"
                if attempt:
                    await self._fire("reconnect_error", exc)
            self._disconnect_all(reason)
            if self._closing or not self.reconnection:
                break
            if all(s.server_disconnected or s.refused for s in self._sockets.values()):
                break
            attempt += 1
            if attempt > self.reconnection_attempts:
                await self._fire("reconnect_failed")
                break
            await self._fire("reconnect_attempt", attempt)
            await trio.sleep(self.backoff.duration())
        for socket in self._sockets.values():
            socket._shutdown("io client disconnect" if self._closing else "transport close")
        if not started:
            if last_error is not None:
                raise last_error
            raise ConnectError("could not connect")

    def _disconnect_all(self, reason: str) -> None:
        for socket in self._sockets.values():
            socket._on_disconnect(reason)

    async def _serve(self, session: Session, task_status: trio.TaskStatus[None] | None) -> str:
        """Connect the namespaces on this session, then route its packets until it ends."""
        engine = session.engine
        auth = await self._auth()
        for socket in self._sockets.values():
            if socket.server_disconnected or socket.refused:
                continue
            connect = Packet(PacketType.CONNECT, socket.namespace, auth)
            await engine.send_many(self.encode(connect))
        decoder = self.parser.decoder()
        try:
            async for message in engine:
                decoder.feed(message)
                while True:
                    packet = decoder.next_packet()
                    if packet is NEED_DATA:
                        break
                    assert isinstance(packet, Packet)
                    await self._route(packet, session)
                    if task_status is not None and all(s.connected for s in self._sockets.values()):
                        task_status.started()
                        task_status = None
                        self._started = True
        except RemoteProtocolError as exc:
            log.info("bad packet from the server: %s", exc)
            await engine.aclose()
            return "parse error"
        return _REASONS.get(engine.close_reason or "transport close", "transport close")

    async def _route(self, packet: Packet, session: Session) -> None:
        socket = self._sockets.get(packet.namespace)
        if socket is None:
            return
        ptype = packet.type
        if ptype is PacketType.EVENT:
            await socket._on_event(packet)
        elif ptype is PacketType.ACK:
            socket._acks.resolve(packet.id, packet.data)
        elif ptype is PacketType.CONNECT:
            sid = packet.data.get("sid") if isinstance(packet.data, dict) else None
            if not isinstance(sid, str):
                raise RemoteProtocolError("CONNECT without a sid")
            socket._on_connect(sid, session)
        elif ptype is PacketType.CONNECT_ERROR:
            if not self._started:
                raise _Refused(packet.namespace, packet.data)
            socket._on_connect_error(packet.data)
        elif ptype is PacketType.DISCONNECT:
            socket.server_disconnected = True
            socket._on_disconnect("io server disconnect")
            if all(s.server_disconnected or s.refused for s in self._sockets.values()):
                await session.engine.aclose()  # no namespace left: close, do not reconnect


@asynccontextmanager
async def connect(url: str, **options: Any) -> AsyncIterator[Client]:
    """Connect a :class:`Client` (``async with trio_sio.connect(url) as client: ...``).

    Handlers registered inside the block miss events the server sends while connecting; to
    catch those, create a :class:`Client`, register handlers, then ``async with client``.
    """
    async with Client(url, **options) as client:
        yield client
