"""The Admin UI's server protocol on a :class:`~trio_sio.Server` (``sio.instrument()``)."""

from __future__ import annotations

import copy
import datetime
import logging
import os
import secrets
import socket as _socket
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Literal
from weakref import WeakKeyDictionary

import trio

from ..adapters.base import RemoteSocket
from ..protocol.errors import ConnectionRefused, SocketIOError
from ..server.broadcast import BroadcastOperator
from ..server.socket import Socket
from ._auth import InMemorySessionStore, SessionStore, parse_auth
from ._serialize import ADMIN_KEY, client_id, serialize, visible_data
from ._stats import Traffic

if TYPE_CHECKING:
    from ..server.namespace import Namespace, ParentNamespace
    from ..server.server import Server

__all__ = ["Instrumentation"]

log = logging.getLogger("trio_sio.admin")

#: What the UI may offer (``config.supportedFeatures``); the first seven are commands.
COMMANDS = ("EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT")

#: Notifications that may wait for the forwarding task; more are dropped (and counted).
QUEUE_SIZE = 10_000


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)  # sent as JS's Date.toISOString() writes it


class Instrumentation:
    """The Admin UI's side of a server: made by :meth:`trio_sio.Server.instrument`.

    While the server runs (``serve()`` or ``run()``), a task of the server sends
    ``server_stats`` to the admin namespace every ``stats_interval`` seconds and forwards the
    socket, room and event notifications, which the hooks only queue (they never block the
    code that triggered them; beyond ``QUEUE_SIZE`` waiting notifications, new ones are
    dropped and counted in :attr:`dropped`).

    Attributes:
        namespace: the admin namespace the UI connects to.
        features: the ``supportedFeatures`` sent to the UI.
        server_id: how the UI names this server.
        traffic: the counters behind ``aggregatedEvents``.
        dropped: notifications dropped because the queue was full.
    """

    def __init__(
        self,
        server: Server,
        *,
        auth: Any,
        mode: Literal["development", "production"] = "development",
        readonly: bool = False,
        namespace: str = "/admin",
        server_id: str | None = None,
        store: SessionStore | None = None,
        stats_interval: float = 2.0,
    ) -> None:
        if mode not in ("development", "production"):
            raise ValueError('mode must be "development" or "production"')
        if server._admin is not None:
            raise RuntimeError("this server is already instrumented")
        if server.engine.running:
            raise RuntimeError("instrument() must be called before serve() or run()")
        self.server = server
        self.auth = parse_auth(auth)
        self.store: SessionStore = store if store is not None else InMemorySessionStore()
        self.development = mode == "development"
        self.readonly = readonly
        self.stats_interval = stats_interval
        self.features = [] if readonly else list(COMMANDS)
        self.features.append("AGGREGATED_EVENTS")
        if self.development:
            self.features.append("ALL_EVENTS")
        self.hostname = _socket.gethostname()
        self.server_id = server_id or f"{self.hostname}#{os.getpid()}"
        self.traffic = Traffic()
        self.dropped = 0
        self._started = time.monotonic()
        self._send: trio.MemorySendChannel[tuple[str, tuple[Any, ...]]] | None = None
        self._hooked: set[Namespace | ParentNamespace] = set()
        self._polling: dict[Socket, None] = {}  # sockets not upgraded yet, checked each tick
        self._fresh: dict[Socket, Any] = {}  # new sockets -> their data when they connected
        self._new_sessions: WeakKeyDictionary[Socket, str] = WeakKeyDictionary()

        self.namespace = admin = server.of(namespace)
        if self.auth is not None:
            admin.use(self._authenticate)
        admin.on("connection", self._admin_connected)
        if not readonly:
            admin.on("emit", self._on_emit)
            admin.on("join", partial(self._on_rooms, join=True))
            admin.on("leave", partial(self._on_rooms, join=False))
            admin.on("_disconnect", self._on_disconnect)
        server.add_hook(self)  # watches the namespaces that exist, then each new one

    # -- hooks ----------------------------------------------------------------------------
    def watch(self, namespace: Namespace) -> None:
        """Report the sockets, rooms and events of ``namespace`` (called for every namespace,
        as it is created; only development mode reports them)."""
        if not self.development:
            return
        namespace.adapter.room_listener = partial(self._room_changed, namespace.name)
        table: Namespace | ParentNamespace = namespace.parent or namespace
        if table in self._hooked:
            return  # a child of a parent namespace hooked already
        self._hooked.add(table)
        if table is not self.namespace:
            table.on_any(self._event_received)
            table.on_any_outgoing(self._event_sent)

    def _queue(self, event: str, *args: Any) -> None:
        send = self._send
        if send is None:
            return  # not running: nobody to tell
        try:
            send.send_nowait((event, args))
        except trio.WouldBlock:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("admin notifications dropped (%d so far)", self.dropped)

    def socket_connected(self, socket: Socket) -> None:
        """Called by the server before the application's connection handlers (as the Node
        server's ``prependListener``): the socket is known to the UI first."""
        if not self.development:
            return
        transport = socket.transport
        if isinstance(socket.data, dict):  # for other nodes' fetch_sockets, as in Node
            socket.data[ADMIN_KEY] = {"clientId": client_id(socket), "transport": transport}
        if transport == "polling":
            self._polling[socket] = None
        found = serialize(socket, socket.namespace.name)
        self._fresh[socket] = copy.deepcopy(found["data"])
        self._queue("socket_connected", found, _now())

    def socket_leaving(self, socket: Socket, reason: str) -> None:
        """Called by the server after the application's ``disconnecting`` handlers."""
        if not self.development:
            return
        self._polling.pop(socket, None)
        self._fresh.pop(socket, None)
        self._queue("socket_disconnected", socket.namespace.name, socket.id, reason, _now())

    def _room_changed(self, nsp: str, room: str, sid: str, joined: bool) -> None:
        self._queue("room_joined" if joined else "room_left", nsp, room, sid, _now())

    def _event_received(self, socket: Socket, event: str, *args: Any) -> None:
        self._queue("event_received", socket.namespace.name, socket.id, [event, *args], _now())

    def _event_sent(self, socket: Socket, event: str, *args: Any) -> None:
        self._queue("event_sent", socket.namespace.name, socket.id, [event, *args], _now())

    # -- the admin namespace ----------------------------------------------------------------
    async def _authenticate(self, socket: Socket, auth: dict[str, Any]) -> None:
        assert self.auth is not None
        session_id = auth.get("sessionId")
        if isinstance(session_id, str) and session_id and await self.store.exists(session_id):
            log.debug("admin login with a valid session id")
            return
        if await self.auth.check(auth.get("username"), auth.get("password")):
            session_id = secrets.token_hex(8)
            await self.store.save(session_id)
            self._new_sessions[socket] = session_id  # sent once it is connected
            log.info("admin login of %r", self.auth.username)
            return
        log.info("admin login refused (from %s)", socket.handshake.address)
        raise ConnectionRefused("invalid credentials")

    async def _admin_connected(self, socket: Socket) -> None:
        # The Node server emits `session` from its middleware, before the CONNECT packet;
        # its own UI then misses it (the client hands buffered events out before `connect`,
        # where the UI adds its listeners). Sent first thing after CONNECT, the UI keeps it.
        session_id = self._new_sessions.pop(socket, None)
        if session_id is not None:
            await socket.emit("session", session_id)
        await socket.emit("config", {"supportedFeatures": self.features})
        if self.development:
            await socket.emit("all_sockets", await self.all_sockets())

    def _target(self, nsp: Any, room: Any) -> BroadcastOperator | None:
        """The sockets of namespace ``nsp`` (in ``room``, if given) the UI acts on."""
        namespace = self.server.namespaces.get(nsp) if isinstance(nsp, str) else None
        if namespace is None:
            log.debug("admin command for an unknown namespace %r", nsp)
            return None
        if room is None or room == "":
            return namespace.to()
        return namespace.to(room) if isinstance(room, str) else None

    async def _on_emit(self, socket: Socket, *args: Any) -> None:
        """``emit(nsp, filter, event, *args)``: emit to a namespace, or a room of it."""
        if len(args) < 3 or not isinstance(args[2], str):
            return
        target = self._target(args[0], args[1])
        if target is not None:
            await target.emit(args[2], *args[3:])

    async def _on_rooms(self, socket: Socket, *args: Any, join: bool) -> None:
        """``join(nsp, room, filter)`` / ``leave(...)``: the selected sockets join/leave."""
        if len(args) < 2 or not isinstance(args[1], str):
            return
        target = self._target(args[0], args[2] if len(args) > 2 else None)
        if target is None:
            return
        if join:
            await target.sockets_join(args[1])
        else:
            await target.sockets_leave(args[1])

    async def _on_disconnect(self, socket: Socket, *args: Any) -> None:
        """``_disconnect(nsp, close, filter)``: disconnect the selected sockets."""
        if not args:
            return
        target = self._target(args[0], args[2] if len(args) > 2 else None)
        if target is not None:
            await target.disconnect_sockets(bool(args[1]) if len(args) > 1 else False)

    async def all_sockets(self) -> list[dict[str, Any]]:
        """Every socket of every namespace, on every node (``fetch_sockets``).

        Blocks: while other nodes are asked (at most the adapter's request timeout); a node
        that does not answer in time is left out.
        """
        namespaces = list(self.server.namespaces.values())
        found: list[list[dict[str, Any]]] = [[] for _ in namespaces]

        async def fetch(index: int, namespace: Namespace) -> None:
            sockets: list[Any]
            try:
                sockets = list(await namespace.fetch_sockets())
            except SocketIOError as exc:  # a cluster timeout carries what did come
                log.warning("admin: sockets of %s: %s", namespace.name, exc)
                sockets = list(getattr(exc, "partial", None) or [])
            found[index] = [
                serialize(s, namespace.name)
                for s in sockets
                if isinstance(s, Socket | RemoteSocket)
            ]

        async with trio.open_nursery() as nursery:
            for index, namespace in enumerate(namespaces):
                nursery.start_soon(fetch, index, namespace)
        return [item for group in found for item in group]

    # -- running --------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """This node's ``server_stats`` (taking the traffic counted since the last call)."""
        engine = self.server.engine  # (counted: reading its sessions would start them all)
        return {
            "serverId": self.server_id,
            "hostname": self.hostname,
            "pid": os.getpid(),
            "uptime": time.monotonic() - self._started,
            "clientsCount": engine.session_count,
            "pollingClientsCount": engine.polling_session_count,
            "aggregatedEvents": self.traffic.take(),
            "namespaces": [
                {"name": ns.name, "socketsCount": len(ns.sockets)}
                for ns in self.server.namespaces.values()
            ],
        }

    async def run(self) -> None:
        """Send ``server_stats`` every ``stats_interval`` seconds and forward the queued
        notifications to the admin namespace, until cancelled (the server runs this while
        it serves). A failing emit is logged and the loop goes on."""
        send, receive = trio.open_memory_channel[tuple[str, tuple[Any, ...]]](QUEUE_SIZE)
        self._send = send
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._forward, receive)
                while True:
                    try:
                        self._check_sockets()
                        stats = self.stats()
                    except Exception:
                        log.exception("admin: the stats could not be made")
                    else:
                        await self._emit("server_stats", stats)
                    await trio.sleep(self.stats_interval)
        finally:
            self._send = None
            send.close()

    async def _forward(
        self, receive: trio.MemoryReceiveChannel[tuple[str, tuple[Any, ...]]]
    ) -> None:
        async with receive:
            async for event, args in receive:
                await self._emit(event, *args)

    async def _emit(self, event: str, *args: Any) -> None:
        try:
            await self.namespace.emit(event, *args)
        except Exception:
            log.exception("admin: %s could not be sent", event)

    def _check_sockets(self) -> None:
        """Tell the UI about the ``data`` the connection handlers gave to new sockets (the
        Node server sees every change through a Proxy; Python has none), and about sockets
        whose connection moved from polling to WebSocket."""
        fresh, self._fresh = self._fresh, {}
        for socket, before in fresh.items():
            if not socket.connected:
                continue
            data = visible_data(socket.data)
            if data != before:
                update = {"id": socket.id, "nsp": socket.namespace.name, "data": data}
                self._queue("socket_updated", update)
        for socket in list(self._polling):
            if not socket.connected:
                del self._polling[socket]
                continue
            transport = socket.transport
            if transport == "polling":
                continue
            del self._polling[socket]
            admin = socket.data.get(ADMIN_KEY) if isinstance(socket.data, dict) else None
            if isinstance(admin, dict):
                admin["transport"] = transport
            update = {"id": socket.id, "nsp": socket.namespace.name, "transport": transport}
            self._queue("socket_updated", update)
