"""The client's connection manager (the JS ``Manager``): open the Engine.IO connection,
connect the wanted namespaces, route packets, reconnect with back-off, and close the
connection when no namespace wants it any more.
"""

from __future__ import annotations

import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from .._handlers import Handler
from ..engineio._http_client import Connector
from ..engineio.client import ConnectError, open_engine_client
from ..protocol.errors import ConnectionClosed, ConnectionRefused, RemoteProtocolError
from ..protocol.socketio import NEED_DATA, JsonParser, Packet, PacketType, Parser
from ._backoff import Backoff
from ._link import Session

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
    _sockets: dict[str, ClientSocket]
    _manager_handlers: dict[str, list[Handler]]

    def __init__(self, parser: Parser | None) -> None:
        self.parser: Parser = parser or JsonParser()
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
        """The CONNECT payload, evaluated now."""
        auth = self.auth
        if auth is None:
            return None
        if callable(auth):
            value = auth()
            if inspect.isawaitable(value):
                value = await value
            return dict(value)
        return dict(auth)

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
                            status = None if self._started else task_status
                            reason = await self._serve(session, status)
                        except _Refused:
                            reason = "io client disconnect"
                            raise
                        finally:
                            self._session = None
                            released = session.released
                            session.close()
                            for socket in list(self._sockets.values()):
                                socket._on_transport_lost(reason)
                except _Refused as refused:
                    raise refused.error from None
                except ConnectError as exc:
                    last_error = exc
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

    def _all_connected(self) -> bool:
        wanted = [s for s in self._sockets.values() if s._want]
        return bool(wanted) and all(s.connected for s in wanted)

    async def _serve(self, session: Session, task_status: trio.TaskStatus[None] | None) -> str:
        """Connect the wanted namespaces on this session, then route its packets until it
        ends; returns the disconnect reason."""
        engine = session.engine
        auth = await self._auth()
        for socket in list(self._sockets.values()):
            if socket._want:
                await socket._request_connect(session, auth)
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
                    if task_status is not None and self._all_connected():
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
