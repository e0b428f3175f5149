"""One Engine.IO session seen by the Socket.IO server: it multiplexes namespace sockets.

The session's receive task hands each message to :meth:`Connection.on_message`, which decodes
and routes it: CONNECT runs the namespace's middleware and then the connection handlers;
EVENT runs its handler right there, in the receive task, until the handler waits for
something: the reading then goes on in a new task (bounded per socket: at the bound, reading
pauses); ACK is resolved right here, so a handler waiting for an ack never blocks the reading
of its own ack.
"""

from __future__ import annotations

import datetime
import logging
import math
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import parse_qsl, urlencode

import trio

from .._ids import random_id
from ..engineio.socket import HEAVY_BYTES, EngineSocket
from ..protocol.engineio import CloseReason
from ..protocol.errors import ConnectionClosed, ConnectionRefused, RemoteProtocolError
from ..protocol.serialize import to_wire
from ..protocol.socketio import NEED_DATA, Packet, PacketType
from .namespace import Namespace, frames_to_engine
from .socket import Handshake, Socket

if TYPE_CHECKING:
    from ..adapters.recovery import RecoveredSession
    from ..engineio.socket import Reader
    from ..protocol.engineio import Packet as EnginePacket
    from .server import Server

__all__ = ["Connection"]

log = logging.getLogger("trio_sio.server")

#: Engine.IO close reasons → the Socket.IO disconnect reasons of the JS server.
_REASONS = {
    CloseReason.TRANSPORT_CLOSE: "transport close",
    CloseReason.TRANSPORT_ERROR: "transport error",
    CloseReason.PING_TIMEOUT: "ping timeout",
    CloseReason.PARSE_ERROR: "parse error",
    CloseReason.FORCED_CLOSE: "forced server close",
    CloseReason.SERVER_SHUTDOWN: "server shutting down",
    CloseReason.SLOW_CONSUMER: "slow consumer",
}


class Connection:
    """The namespace sockets of one client connection."""

    def __init__(self, server: Server, engine: EngineSocket) -> None:
        self.server = server
        self.engine = engine
        self.decoder = server.parser.decoder()
        self.sockets: dict[str, Socket] = {}
        # Until a first namespace connects: the connect timeout, kept by the session and
        # counted from the handshake (a polling session starts only when its client comes
        # back after the handshake: see EngineServer).
        self._connect_pending = engine.protocol != 3  # (see on_started)
        if self._connect_pending:
            engine.close_at(engine.opened_at + server.connect_timeout)
        self._close_reason: str | None = None
        #: True once the connection is ending: no new handler starts.
        self.closing = False
        # Bytes of the messages being handled (see on_message), and the event the reader
        # waits on while that is over the server's max_inflight_bytes.
        self._inflight = 0
        self._room: trio.Event | None = None
        #: the Admin UI's traffic counters, when the server is instrumented
        self._traffic = server._admin.traffic if server._admin is not None else None
        if self._traffic is not None:
            self._traffic.opened()

    # -- sending --------------------------------------------------------------------------
    async def send_packet(
        self, packet: Packet, *, volatile: bool = False, compress: bool = True
    ) -> bool:
        """Encode and queue one packet (its frames stay together); ``compress=False`` sends
        it uncompressed. Returns whether it was queued: always, but for a ``volatile``
        packet that the connection could not take right away (dropped).

        Raises:
            ConnectionClosed: the connection is closed (not for volatile packets).
        """
        group = frames_to_engine(self.server.parser.encode(packet), compress)
        if volatile:
            return self.send_group_nowait(group, volatile=True)
        await self.send_group(group)
        return True

    async def send_group(self, group: tuple[EnginePacket, ...]) -> None:
        """Queue already encoded frames; waits while the send queue is full."""
        await self.engine.send_packets(group)
        if self._traffic is not None:
            self._traffic.sent(group)

    def send_group_nowait(
        self, group: tuple[EnginePacket, ...], *, volatile: bool, force: bool = False
    ) -> bool:
        """Queue frames if that can be done right now; returns whether it was.

        With ``volatile``, the packet is sent only if the connection is writable right now
        (see ``EngineSocket.writable``), as the JS server does. With ``force`` it is queued
        even over the send queue's bound (a broadcast never waits): the session is closed
        as a slow consumer if it stays over it.
        """
        if volatile and not self.engine.writable:
            return False
        try:
            self.engine.send_packets_nowait(group, force=force)
        except (trio.WouldBlock, ConnectionClosed):
            return False
        if self._traffic is not None:
            self._traffic.sent(group)
        return True

    # -- lifetime (the session calls these: see ``SessionHandler``) ------------------------
    @property
    def nursery(self) -> trio.Nursery:
        """Where the namespace sockets' tasks run: the session's own nursery (cancelled when
        the session closes). An idle connection holds no task or nursery of its own."""
        return self.engine.nursery

    def on_started(self) -> None:
        """The session's nursery exists. A Socket.IO v2 client (Engine.IO v3) is in "/"
        from the start, as the JS server's allowEIO3 has it: no CONNECT from it, and no
        connect timeout."""
        if self.engine.protocol == 3:
            self.nursery.start_soon(self._connect, "/", {})

    def on_closing(self) -> None:
        """The session is closing: no new handler starts."""
        self.closing = True

    async def on_closed(self) -> None:
        """The session is over: run each socket's disconnect sequence (at most
        ``close_grace`` seconds in all)."""
        self.closing = True
        if self._traffic is not None:
            self._traffic.closed(str(self.engine.close_reason or CloseReason.TRANSPORT_CLOSE))
        reason = self._close_reason or _REASONS.get(
            self.engine.close_reason or CloseReason.TRANSPORT_CLOSE, "transport close"
        )
        with trio.move_on_after(self.server.close_grace):
            for socket in list(self.sockets.values()):
                await socket._close(reason)

    async def on_message(self, message: str | bytes, reader: Reader) -> None:
        """Decode one Engine.IO message and route its packets (called by the receive task
        ``reader``: see ``SessionHandler``).

        Blocks while the target socket's event queue is full, while the events being
        handled came in more than ``max_inflight_bytes`` (backpressure on the reading), or
        for a while after decoding a message held the event loop (see ``Reader.pause``).
        An event's handler runs here, in the reading task, until it waits for something;
        reading then goes on in another task (see ``Reader.run_handler``) and this call
        returns once the handler is done.
        """
        if self._traffic is not None:
            self._traffic.received(message)
        decoder = self.decoder
        try:
            decoder.feed(message)
            if len(message) >= HEAVY_BYTES and reader.should_pause():  # decoding held the loop
                await reader.pause()
            while not self.closing:
                packet = decoder.next_packet()
                if packet is NEED_DATA:
                    return
                await self._on_packet(packet, reader, len(message))
                if reader.handed_over:
                    return  # the new reader goes on with the decoder
        except RemoteProtocolError as exc:
            log.info("session %s: bad packet: %s", self.engine.sid, exc)
            self._close_reason = "parse error"
            self.closing = True
            self.engine.close(CloseReason.PARSE_ERROR)
        except ConnectionClosed:
            pass  # the session closed while a reply was being queued: nothing more to do

    async def close(self, reason: str) -> None:
        """Disconnect every namespace socket with ``reason`` and close the session."""
        self._close_reason = reason
        for socket in list(self.sockets.values()):
            await socket._close(reason)
        self.engine.close(CloseReason.FORCED_CLOSE)

    def forget(self, socket: Socket) -> None:
        """Drop a socket that disconnected from its namespace."""
        if self.sockets.get(socket.namespace.name) is socket:
            del self.sockets[socket.namespace.name]

    async def _on_packet(self, packet: Packet, reader: Reader, size: int) -> None:
        ptype = packet.type
        if ptype is PacketType.EVENT:
            socket = self.sockets.get(packet.namespace)
            if socket is None:
                log.debug("session %s: event for unconnected %s", self.engine.sid, packet.namespace)
                return
            limit = self.server.max_inflight_bytes
            while self._inflight and self._inflight + size > limit:
                # Handlers still hold what earlier events decoded to: read on (events; acks
                # are never held back) once some let go.
                self._room = trio.Event()
                await self._room.wait()
            self._inflight += size
            try:
                await socket._on_event(packet, reader)
            finally:
                self._inflight -= size
                if self._room is not None:
                    self._room.set()
                    self._room = None
        elif ptype is PacketType.ACK:
            socket = self.sockets.get(packet.namespace)
            if socket is not None:
                if socket._acks.turn_pending:
                    # The previous ack's callback runs first: callbacks go on in the order
                    # the acks came (Trio may run the tasks woken in one step in any order).
                    await trio.lowlevel.cancel_shielded_checkpoint()
                if not socket._acks.resolve(packet.id, packet.data):
                    log.debug("%r: ack %s matches no emit", socket, packet.id)
        elif ptype is PacketType.CONNECT:
            # Middleware may wait (a database, a token check): reading goes on meanwhile,
            # so pongs and other namespaces' packets are not held up.
            name, auth = packet.namespace, packet.data
            if self.engine.protocol == 3:
                # Socket.IO v2: the auth travels as the namespace's query string.
                name, _, query = name.partition("?")
                auth = dict(parse_qsl(query))
            await reader.run_handler(self._connect(name, auth))
        elif ptype is PacketType.DISCONNECT:
            socket = self.sockets.get(packet.namespace)
            if socket is not None:
                await socket._close("client namespace disconnect")
        else:
            raise RemoteProtocolError(f"a client may not send {ptype.name}")

    # -- namespace connection -------------------------------------------------------------
    async def _connect(self, name: str, auth: Any) -> None:
        auth = auth if isinstance(auth, dict) else {}
        if name in self.sockets:
            log.info("session %s: already connected to %s", self.engine.sid, name)
            return
        try:
            namespace = await self.server._namespace_for(name, auth)
        except Exception:
            log.exception("session %s: the namespace matcher failed for %s", self.engine.sid, name)
            namespace = None
        if self.closing:
            return
        if namespace is None:
            await self._refuse(name, {"message": "Invalid namespace"})
            return
        session = await self._restore(namespace, auth)
        sid = random_id() if session is None else session.sid
        socket = Socket(namespace, self, sid, self._handshake(auth))
        recovery = self.server.connection_state_recovery
        if recovery is not None and self.engine.protocol == 3:
            recovery = None  # no recovery in Socket.IO v2
        if recovery is not None:
            socket._pid = random_id() if session is None else session.pid
        if session is not None:
            socket.data, socket.recovered = session.data, True
        try:
            if session is None or not (recovery and recovery.skip_middlewares):
                await namespace._run_middlewares(socket, auth)
        except ConnectionRefused as exc:
            refusal: Any = {"message": exc.message}
            if exc.data is not None:
                refusal["data"] = to_wire((exc.data,))[0]
            if self.engine.protocol == 3:  # Socket.IO v2: the data, or else the message
                refusal = refusal.get("data", exc.message)
            await self._refuse(name, refusal)
            return
        except Exception:
            log.exception("session %s: middleware of %s failed", self.engine.sid, name)
            await self._refuse(name, {"message": "Internal server error"})
            return
        if self.closing or name in self.sockets:
            return  # the connection ended, or the same namespace connected, meanwhile
        socket.connected = True
        self.sockets[name] = socket
        namespace._add(socket)
        reply: dict[str, Any] | None
        if self.engine.protocol == 3:
            reply = None  # Socket.IO v2: a bare CONNECT
        elif socket._pid is None:
            reply = {"sid": socket.id}
        else:
            reply = {"sid": sid, "pid": socket._pid}
        connect = Packet(PacketType.CONNECT, name, reply)
        if session is None:
            socket._recovery_offset = namespace.adapter.last_offset()
            await self.send_packet(connect)
        else:
            # Without yielding since the restore: no packet kept meanwhile can be missed.
            # The missed packets go first, then the CONNECT reply, as the JS server does.
            socket.join(session.rooms)
            socket._recovery_offset = session.offset
            for data in session.missed_packets:
                self._send_now(Packet(PacketType.EVENT, name, data))
            self._send_now(connect)
        if self._connect_pending:
            self._connect_pending = False
            self.engine.close_at(math.inf)  # the connect timeout is over
        self.nursery.start_soon(socket._guarded, socket._run, auth)

    async def _restore(self, namespace: Namespace, auth: dict[str, Any]) -> RecoveredSession | None:
        """The session the client asks to recover (``auth.pid``, ``auth.offset``), if the
        adapter still has it; None otherwise (the client connects as a new socket).

        The pid of a socket that is still connected is not honoured (as in JavaScript): a
        pid seen by someone else cannot take over a live socket, its id or its rooms. The
        client of a dead connection is recovered once the server has noticed the death,
        which a WebSocket or a parked long-poll GET does at once when the TCP connection
        closes. Malformed values (not strings, too long, an offset of another store) are a
        new socket, logged at debug at most; a wrong offset leaves the session kept.
        """
        pid, offset = auth.get("pid"), auth.get("offset")
        if self.server.connection_state_recovery is None or not _is_token(pid):
            return None
        if offset is not None and not _is_token(offset):
            log.debug("session %s: malformed recovery offset", self.engine.sid)
            return None
        live = namespace._pid_sockets.get(pid)
        if live is not None and live.connected:
            log.debug("session %s: the pid of connected socket %s", self.engine.sid, live.id)
            return None
        try:
            session = await namespace.adapter.restore_session(pid, offset)
        except Exception:
            log.exception("session %s: restoring a session failed", self.engine.sid)
            return None
        if session is None or session.sid in namespace.sockets:
            return None
        log.debug("session %s: socket %s recovered", self.engine.sid, session.sid)
        return session

    def _send_now(self, packet: Packet) -> None:
        """Queue a packet at once, as a broadcast does (over the bound if need be)."""
        group = frames_to_engine(self.server.parser.encode(packet))
        self.send_group_nowait(group, volatile=False, force=True)

    async def _refuse(self, name: str, data: Any) -> None:
        await self.send_packet(Packet(PacketType.CONNECT_ERROR, name, data))

    def _handshake(self, auth: dict[str, Any]) -> Handshake:
        head = self.engine.request
        now = datetime.datetime.now(datetime.UTC)
        query = head.query
        return Handshake(
            # The request's own (read-only) mappings, shared by every socket of the
            # connection, as the JS server shares its request's headers.
            headers=head.headers,
            query=query,
            address=self.server.engine.client_address(head),
            time=_js_date_string(now),
            issued=int(now.timestamp() * 1000),
            url=f"{head.path}?{urlencode(query)}" if query else head.path,
            auth=auth,
            secure=head.headers.get("x-forwarded-proto") == "https",
            xdomain="origin" in head.headers,
        )


#: pids and offsets are short ASCII strings (ours: 20 and about 30 characters).
_MAX_TOKEN = 128


def _is_token(value: Any) -> TypeGuard[str]:
    """Whether ``value`` may be a pid or an offset: a short string (anything else is not
    looked up at all)."""
    return type(value) is str and 0 < len(value) <= _MAX_TOKEN and value.isascii()


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _js_date_string(moment: datetime.datetime) -> str:
    """What JavaScript's ``Date.prototype.toString()`` writes for a UTC time (the JS
    server's ``handshake.time``), whatever the process's locale."""
    day, month = _DAYS[moment.weekday()], _MONTHS[moment.month - 1]
    clock = moment.strftime("%d %Y %H:%M:%S")
    return f"{day} {month} {clock} GMT+0000 (Coordinated Universal Time)"
