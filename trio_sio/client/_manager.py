"""The client's connection manager (the JS ``Manager``): open the Engine.IO connection,
connect the wanted namespaces, route packets, reconnect with back-off, and close the
connection when no namespace wants it any more.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, overload

import trio

from .._handlers import Handler
from ..engineio._cookies import CookieJar
from ..engineio._exceptions import single_leaf
from ..engineio.client import ConnectError
from ..protocol.errors import ConnectionClosed, ConnectionRefused, RemoteProtocolError
from ..protocol.socketio import JsonParser, Packet, PacketType, Parser
from ._backoff import Backoff
from ._connecting import Transports, open_engine
from ._link import Session
from ._namespace import DRAIN_GRACE
from ._options import MANAGER_EVENTS, REASONS, ClientOptions, wire_auth
from ._reader import OnWait, Reader

if TYPE_CHECKING:
    from .socket import ClientSocket

__all__ = ["Manager"]

log = logging.getLogger("trio_sio.client")

F = TypeVar("F", bound=Callable[..., Any])


class _Refused(Exception):
    """A namespace given at construction was refused while the client was connecting."""

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        info = data if isinstance(data, dict) else {"message": data}
        self.error = ConnectionRefused(str(info.get("message", "refused")), info.get("data"))


class Manager:
    """The connection-level part of a client (the JS ``Manager``): one Engine.IO
    connection at a time, the namespace sockets on it, reconnection, manager events.

    The :class:`~trio_sio.Client` owns one and delegates to it; the sockets call the
    methods of the section "for the sockets".

    Args:
        options: the client's options.
        parser: the packet codec.
    """

    def __init__(self, options: ClientOptions, parser: Parser | None) -> None:
        self.options = options
        self.parser: Parser = parser or JsonParser()
        #: The cookies of every request, kept across reconnections (None: cookies=False).
        self.cookies: CookieJar | None = CookieJar() if options.cookies else None
        self.backoff = Backoff(
            options.reconnection_delay,
            options.reconnection_delay_max,
            2.0,
            options.randomization_factor,
        )
        self.sockets: dict[str, ClientSocket] = {}
        self.handlers: dict[str, list[Handler]] = {}  # manager event → handlers
        self._transports = Transports(options)
        self._session: Session | None = None
        self._running = False  # entered (``async with``)
        self._started = False  # the namespaces given at construction connected once
        self._closing = False
        self._ended = False  # the manager task ended (closed, or gave up)
        self._initial: set[str] = set()
        self._wake_event = trio.Event()
        self._nursery: trio.Nursery

    @overload
    def on(self, event: str, handler: None = None) -> Callable[[F], F]: ...
    @overload
    def on(self, event: str, handler: F) -> F: ...
    def on(self, event: str, handler: F | None = None) -> F | Callable[[F], F]:
        """Register a handler for a manager event, with socket.io-client's names, arguments
        and order: ``"open"`` (the Engine.IO connection opened), ``"close"`` (it closed:
        the reason), ``"error"`` (a connection attempt, or the transport, failed: the
        error), ``"ping"`` (the server's ping came), ``"packet"`` (a Socket.IO packet came:
        the :class:`~trio_sio.protocol.socketio.Packet`), ``"reconnect_attempt"`` (attempt
        number), ``"reconnect"`` (attempts it took), ``"reconnect_error"`` (the error),
        ``"reconnect_failed"`` (no arguments).

        Handlers (sync or async) run one at a time in the client's connecting or reading
        task: keep them short. One that raises is logged and skipped.

        Raises:
            ValueError: not a manager event.
        """
        if event not in MANAGER_EVENTS:
            raise ValueError(f"not a manager event: {event!r} (see Client.on for events)")

        def register(fn: F) -> F:
            self.handlers.setdefault(event, []).append(Handler(fn))
            return fn

        return register(handler) if handler is not None else register

    # -- lifetime -------------------------------------------------------------------------
    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Connect; the block runs once every wanted namespace is connected; leaving it
        disconnects and ends every task (handlers still running are cancelled). May be
        entered again once a previous block ended (handlers and cookies kept).

        Raises:
            ConnectionRefused: a namespace was refused by the server.
            ConnectError: the server could not be reached and reconnection is off or
                gave up. (An ``ExceptionGroup`` only when several happen at once.)

        Cancellation: cancelling while connecting leaves nothing running; leaving the
        block shields the goodbye (bounded: a few seconds).
        """
        if self._running:
            self._reset()
        self._running = True
        self._initial = set(self.sockets)
        single: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for socket in list(self.sockets.values()):
                    socket._start_tasks(nursery)
                try:
                    await nursery.start(self._manager)
                    yield
                finally:
                    with trio.CancelScope(shield=True):
                        await self.aclose()  # bounded: at most a few seconds
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            single = single_leaf(group)
            if single is None:
                raise
        if single is not None:
            raise single

    def _reset(self) -> None:
        """Make a manager that ran (and ended) ready to connect again."""
        self._session = None
        self._started = self._closing = self._ended = False
        self._wake_event = trio.Event()
        for name, socket in self.sockets.items():
            socket._reopen(want=name in self.options.namespaces)

    def add_socket(self, socket: ClientSocket) -> None:
        """A namespace socket made with ``client.of()``: started if the client runs."""
        self.sockets[socket.namespace] = socket
        if self._closing or self._ended:
            socket._shutdown("io client disconnect")
        elif self._running:
            socket._start_tasks(self._nursery)

    @property
    def transport(self) -> str | None:
        """The current transport, while connected."""
        return self._session.engine.transport if self._session is not None else None

    @property
    def compressed(self) -> bool:
        """Whether the connection runs with permessage-deflate."""
        return self._session is not None and self._session.engine.deflate

    async def aclose(self) -> None:
        """Disconnect (sending DISCONNECT for each namespace) and stop reconnecting; see
        :meth:`Client.aclose <trio_sio.Client.aclose>`."""
        if not self._running or (self._closing and self._ended):
            await trio.lowlevel.checkpoint()
            return
        self._closing = True
        self.wake()
        session = self._session
        with trio.move_on_after(DRAIN_GRACE):
            if session is not None:
                connected = [s._state for s in self.sockets.values() if s.connected]
                for state in connected:
                    await state.drain("io client disconnect")
                for state in connected:
                    if not await state.say_goodbye():
                        break
                await session.engine.aclose()
        sockets = list(self.sockets.values())
        for socket in sockets:
            socket._shutdown("io client disconnect")
        # Let the disconnect handlers run, then stop every task.
        with trio.move_on_after(DRAIN_GRACE):
            for socket in sockets:
                socket._dispatcher.queue.close()
            for socket in sockets:
                await socket._dispatcher.wait_idle()
        self._nursery.cancel_scope.cancel()

    async def _fire(self, event: str, *args: Any) -> None:
        """Call the handlers of a manager event (``reconnect_attempt``, ...), in order."""
        for handler in self.handlers.get(event, []):
            try:
                await handler(*args)
            except Exception:
                log.exception("%s handler failed", event)

    async def auth(self) -> dict[str, Any] | None:
        """The CONNECT payload, evaluated now (see :func:`wire_auth`)."""
        return await wire_auth(self.options.auth)

    def _has(self, event: str) -> bool:
        return bool(self.handlers.get(event))

    # -- for the sockets ----------------------------------------------------------------
    def encode(self, packet: Packet) -> list[str | bytes]:
        """Encode a packet with the client's parser."""
        return self.parser.encode(packet)

    @property
    def is_running(self) -> bool:
        """Whether the client was entered (and not closed since)."""
        return self._running

    @property
    def session(self) -> Session | None:
        """The current Engine.IO connection, if any."""
        return self._session

    def running_nursery(self) -> trio.Nursery:
        """The client's nursery, for tasks of a running client."""
        if self._closing or self._ended:
            raise ConnectionClosed("client is closed")
        if not self._running:
            raise RuntimeError("an emit with a callback needs a running client (async with)")
        return self._nursery

    def _wanted(self) -> bool:
        return any(socket._state.want for socket in self.sockets.values())

    def wake(self) -> None:
        """A namespace wants connecting (or the client is closing): wake an idle manager."""
        self._wake_event.set()

    def release_if_unused(self) -> None:
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
                    async with open_engine(self.options, self._transports, self.cookies) as engine:
                        if self._has("ping"):
                            engine.on_ping = partial(self._fire, "ping")
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
                    for socket in list(self.sockets.values()):
                        if socket._state.want and not socket.connected:
                            socket._dispatcher.lifecycle("connect_error", exc)
                    await self._fire("error", exc)
                    if attempt:
                        await self._fire("reconnect_error", exc)
                if self._closing:
                    break
                if released or not self._wanted():
                    continue  # closed for want of namespaces: not a lost connection
                if not self.options.reconnection:
                    break
                attempt += 1
                if attempt > self.options.reconnection_attempts:
                    await self._fire("reconnect_failed")
                    break
                await trio.sleep(self.backoff.duration())
                if self._closing:
                    break
                await self._fire("reconnect_attempt", attempt)  # as JS: after the delay
        finally:
            self._ended = True
            for socket in list(self.sockets.values()):
                socket._shutdown("io client disconnect" if self._closing else "transport close")
        if not self._started:
            if last_error is not None:
                raise last_error
            raise ConnectError("could not connect")

    def _end_session(self, session: Session) -> bool:
        """The session's connection ended: forget it; returns whether it was released."""
        self._session = None
        if session.engine.transport == "websocket":
            self._transports.websocket_worked = True
        session.close()
        return session.released

    def _lose(self, reason: str) -> None:
        for socket in list(self.sockets.values()):
            socket._state.on_transport_lost(reason)

    def _all_connected(self) -> bool:
        wanted = [s for s in self.sockets.values() if s._state.want]
        return bool(wanted) and all(s.connected for s in wanted)

    async def _serve(self, session: Session, task_status: trio.TaskStatus[None] | None) -> str:
        """Connect the wanted namespaces on this session, then route its packets until it
        ends; returns the disconnect reason."""
        auth = await self.auth()
        for socket in list(self.sockets.values()):
            if socket._state.want:
                await socket._state.request_connect(session, auth)
        packet_hook = partial(self._fire, "packet") if self._has("packet") else None
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
        return REASONS.get(reader.reason, "transport close")

    async def _route(self, packet: Packet, session: Session, on_wait: OnWait) -> None:
        socket = self.sockets.get(packet.namespace)
        if socket is None:
            return
        state = socket._state
        ptype = packet.type
        if ptype is PacketType.EVENT:
            await state.on_event(packet, on_wait)
        elif ptype is PacketType.ACK:
            if state.acks.turn_pending:
                # The waiter of the previous ack runs first: waiters go on in the order
                # the acks came (Trio may run the tasks woken in one step in any order).
                await trio.lowlevel.cancel_shielded_checkpoint()
            state.on_ack(packet)
        elif ptype is PacketType.CONNECT:
            data = packet.data if isinstance(packet.data, dict) else {}
            sid, pid = data.get("sid"), data.get("pid")
            if not isinstance(sid, str):
                raise RemoteProtocolError("CONNECT without a sid")
            await state.on_connect(sid, session, pid if isinstance(pid, str) else None)
        elif ptype is PacketType.CONNECT_ERROR:
            if not self._started and packet.namespace in self._initial:
                raise _Refused(packet.data)
            state.on_connect_error(packet.data)
            self.release_if_unused()
        elif ptype is PacketType.DISCONNECT:
            state.on_server_disconnect()
            self.release_if_unused()  # no namespace left: close, do not reconnect
