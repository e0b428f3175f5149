"""The client's connection manager (the JS ``Manager``): open the Engine.IO connection,
connect the wanted namespaces, route packets, reconnect with back-off, and close the
connection when no namespace wants it any more.
"""

from __future__ import annotations

import inspect
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from .._handlers import Handler
from ..engineio._cookies import CookieJar
from ..engineio._http_client import Connector
from ..engineio._proxy import ProxySetting
from ..engineio.client import ConnectError, EngineClient, open_engine_client
from ..protocol.errors import ConnectionClosed, ConnectionRefused, RemoteProtocolError
from ..protocol.serialize import to_wire
from ..protocol.socketio import JsonParser, Packet, PacketType, Parser
from ._backoff import Backoff
from ._link import Session
from ._reader import OnWait, Reader

if TYPE_CHECKING:
    from .socket import ClientSocket

__all__ = ["Manager"]

log = logging.getLogger("trio_sio.client")

Auth = Mapping[str, Any] | Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]

#: Engine.IO close reasons → the client's disconnect reasons.
_REASONS = {
    "forced close": "io client disconnect",
    "transport close": "transport close",
    "transport error": "transport error",
    "ping timeout": "ping timeout",
    "parse error": "parse error",
}


class _Refused(Exception):
    """A namespace given at construction was refused while the client was connecting."""

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        info = data if isinstance(data, dict) else {"message": data}
        self.error = ConnectionRefused(str(info.get("message", "refused")), info.get("data"))


class Manager:
    """The connection-level part of :class:`~trio_sio.Client`."""

    # Set by the Client.
    url: str
    path: str
    transports: tuple[str, ...]
    query: Mapping[str, str] | None
    headers: Mapping[str, str] | None
    ssl_context: ssl.SSLContext | None
    connect_timeout: float
    connector: Connector | None
    reconnection: bool
    reconnection_attempts: float
    backoff: Backoff
    auth: Auth | None
    proxy: ProxySetting
    try_all_transports: bool
    remember_upgrade: bool
    per_message_deflate: bool
    _sockets: dict[str, ClientSocket]
    _manager_handlers: dict[str, list[Handler]]

    def __init__(self, parser: Parser | None, *, cookies: bool) -> None:
        self.parser: Parser = parser or JsonParser()
        #: The cookies of every request, kept across reconnections (None: cookies=False).
        self.cookies: CookieJar | None = CookieJar() if cookies else None
        self._websocket_worked = False  # for remember_upgrade
        self._session: Session | None = None
        self._running = False  # entered (``async with``)
        self._started = False  # the namespaces given at construction connected once
        self._closing = False
        self._ended = False  # the manager task ended (closed, or gave up)
        self._initial: set[str] = set()
        self._wake_event = trio.Event()
        self._nursery: trio.Nursery

    async def _fire(self, event: str, *args: Any) -> None:
        """Call the handlers of a manager event (``reconnect_attempt``, ...), in order."""
        for handler in self._manager_handlers.get(event, []):
            try:
                await handler(*args)
            except Exception:
                log.exception("%s handler failed", event)

    async def _auth(self) -> dict[str, Any] | None:
        """The CONNECT payload, evaluated now, converted as emits are (a ``datetime`` in it
        becomes an ISO string, ...).

        Raises:
            TypeError: it holds a value that cannot be sent.
        """
        auth = self.auth
        if auth is None:
            await trio.lowlevel.checkpoint()
            return None
        value: Any = auth
        if callable(auth):
            value = auth()
            if inspect.isawaitable(value):
                value = await value
        wire = to_wire([dict(value)])[0]
        assert isinstance(wire, dict)
        return wire

    def _has(self, event: str) -> bool:
        return bool(self._manager_handlers.get(event))

    def _transport_plans(self) -> list[tuple[str, ...]]:
        """The transport lists to try, in order (``try_all_transports``,
        ``remember_upgrade``)."""
        names = self.transports
        if self.remember_upgrade and self._websocket_worked and "websocket" in names:
            names = ("websocket", *(n for n in names if n != "websocket"))
        if not self.try_all_transports:
            return [names]
        return [names[i:] for i in range(len(names))]

    @asynccontextmanager
    async def _open_engine(self) -> AsyncIterator[EngineClient]:
        """Open the Engine.IO connection, trying the next transport if one fails
        (``try_all_transports``).

        Raises:
            ConnectError: every transport failed (the last error).
        """
        plans = self._transport_plans()
        async with AsyncExitStack() as stack:
            for i, names in enumerate(plans):
                try:
                    engine = await stack.enter_async_context(
                        open_engine_client(
                            self.url,
                            path=self.path,
                            transports=names,
                            query=self.query,
                            headers=self.headers,
                            ssl_context=self.ssl_context,
                            connect_timeout=self.connect_timeout,
                            connector=self.connector,
                            proxy=self.proxy,
                            cookies=self.cookies if self.cookies is not None else False,
                            per_message_deflate=self.per_message_deflate,
                        )
                    )
                except ConnectError as exc:
                    if names[0] == "websocket":
                        self._websocket_worked = False
                    if i + 1 == len(plans):
                        raise
                    log.info("over %s: %s; trying %s", names[0], exc, plans[i + 1][0])
                    continue
                break
            if self._has("ping"):
                engine.on_ping = self._on_ping
            yield engine

    async def _on_ping(self) -> None:
        await self._fire("ping")

    # -- helpers for the sockets ----------------------------------------------------------
    def _running_nursery(self) -> trio.Nursery:
        """The client's nursery, for tasks of a running client."""
        if self._closing or self._ended:
            raise ConnectionClosed("client is closed")
        if not self._running:
            raise RuntimeError("an emit with a callback needs a running client (async with)")
        return self._nursery

    def _wanted(self) -> bool:
        return any(socket._want for socket in self._sockets.values())

    def _wake(self) -> None:
        """A namespace wants connecting (or the client is closing): wake an idle manager."""
        self._wake_event.set()

    def _release_if_unused(self) -> None:
        """Close the connection if no namespace wants it (as the JS manager does)."""
        session = self._session
        if session is None or session.released or session.closed.is_set() or self._wanted():
            return
        session.released = True
        self._nursery.start_soon(session.engine.aclose)

    # -- the manager task -----------------------------------------------------------------
    async def _manager(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Connect, serve the connection, reconnect with back-off; until closed or given up.

        Idles while no namespace is wanted, until :meth:`ClientSocket.connect` asks again.
        """
        attempt = 0
        last_error: BaseException | None = None
        try:
            while not self._closing:
                if not self._wanted():
                    if not self._started:
                        break
                    attempt = 0
                    self.backoff.reset()
                    self._wake_event = trio.Event()
                    if not self._wanted() and not self._closing:
                        await self._wake_event.wait()
                    continue
                reason = "transport close"
                released = False
                try:
                    async with self._open_engine() as engine:
                        session = Session(engine)
                        self._session = session
                        self.backoff.reset()
                        await self._fire("open")
                        if attempt:
                            await self._fire("reconnect", attempt)
                        attempt = 0
                        try:
                            status = None if self._started else task_status
                            reason = await self._serve(session, status)
                        except BaseException as exc:
                            self._end_session(session)
                            refused = isinstance(exc, _Refused)
                            self._lose("io client disconnect" if refused else reason)
                            raise
                        released = self._end_session(session)
                    # In socket.io-client's order: "error" (a transport failure), the
                    # sockets' "disconnect" (queued), the manager's "close", any reconnection.
                    if reason == "transport error":
                        await self._fire("error", ConnectError("transport error"))
                    self._lose(reason)
                    await self._fire("close", "io client disconnect" if released else reason)
                except _Refused as refused:
                    raise refused.error from None
                except ConnectError as exc:
                    last_error = exc
                    for socket in list(self._sockets.values()):
                        if socket._want and not socket.connected:
                            socket._lifecycle_event("connect_error", exc)
                    await self._fire("error", exc)
                    if attempt:
                        await self._fire("reconnect_error", exc)
                if self._closing:
                    break
                if released or not self._wanted():
                    continue  # closed for want of namespaces: not a lost connection
                if not self.reconnection:
                    break
                attempt += 1
                if attempt > self.reconnection_attempts:
                    await self._fire("reconnect_failed")
                    break
                await trio.sleep(self.backoff.duration())
                if self._closing:
                    break
                await self._fire("reconnect_attempt", attempt)  # as JS: after the delay
        finally:
            self._ended = True
            for socket in list(self._sockets.values()):
                socket._shutdown("io client disconnect" if self._closing else "transport close")
        if not self._started:
            if last_error is not None:
                raise last_error
            raise ConnectError("could not connect")

    def _end_session(self, session: Session) -> bool:
        """The session's connection ended: forget it; returns whether it was released."""
        self._session = None
        if session.engine.transport == "websocket":
            self._websocket_worked = True
        session.close()
        return session.released

    def _lose(self, reason: str) -> None:
        for socket in list(self._sockets.values()):
            socket._on_transport_lost(reason)

    def _all_connected(self) -> bool:
        wanted = [s for s in self._sockets.values() if s._want]
        return bool(wanted) and all(s.connected for s in wanted)

    async def _serve(self, session: Session, task_status: trio.TaskStatus[None] | None) -> str:
        """Connect the wanted namespaces on this session, then route its packets until it
        ends; returns the disconnect reason."""
        auth = await self._auth()
        for socket in list(self._sockets.values()):
            if socket._want:
                await socket._request_connect(session, auth)
        packet_hook = self._on_packet if self._has("packet") else None
        reader = Reader(
            session, self.parser.decoder(), self._route, self._all_connected, packet_hook
        )
        reader.start(self._nursery)
        while task_status is not None and not reader.done.is_set():
            await reader.progress.wait()
            reader.progress = trio.Event()
            if reader.connected.is_set():
                task_status.started()
                task_status = None
                self._started = True
        await reader.done.wait()
        if reader.error is not None:
            raise reader.error
        if reader.reason == "parse error":
            return "parse error"
        return _REASONS.get(reader.reason, "transport close")

    async def _on_packet(self, packet: Packet) -> None:
        await self._fire("packet", packet)

    async def _route(self, packet: Packet, session: Session, on_wait: OnWait) -> None:
        socket = self._sockets.get(packet.namespace)
        if socket is None:
            return
        ptype = packet.type
        if ptype is PacketType.EVENT:
            await socket._on_event(packet, on_wait)
        elif ptype is PacketType.ACK:
            socket._on_ack(packet)
        elif ptype is PacketType.CONNECT:
            data = packet.data if isinstance(packet.data, dict) else {}
            sid, pid = data.get("sid"), data.get("pid")
            if not isinstance(sid, str):
                raise RemoteProtocolError("CONNECT without a sid")
            await socket._on_connect(sid, session, pid if isinstance(pid, str) else None)
        elif ptype is PacketType.CONNECT_ERROR:
            if not self._started and packet.namespace in self._initial:
                raise _Refused(packet.data)
            socket._on_connect_error(packet.data)
            self._release_if_unused()
        elif ptype is PacketType.DISCONNECT:
            socket._on_server_disconnect()
            self._release_if_unused()  # no namespace left: close, do not reconnect
