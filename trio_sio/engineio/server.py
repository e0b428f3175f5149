"""The Engine.IO server: sessions, and the HTTP/WebSocket request handling they need.

:class:`EngineServer` knows requests only as :class:`~trio_sio.engineio.config.RequestHead`
plus a body iterator (polling) or a :class:`~trio_sio.engineio.transports.WebSocketChannel`
(WebSocket). It does not listen: the front ends above it do, and drive it the same way
(:mod:`trio_sio.frontends.standalone`, the h11 server, and :mod:`trio_sio.frontends.asgi`,
the ASGI application). Nothing here imports them.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast, overload

import trio

from .._ids import random_id
from ..protocol.engineio import (
    NOOP,
    CloseReason,
    HandshakeError,
    HandshakeErrorCode,
    OpenInfo,
    Packet,
    Transport,
    decode_payload,
    decode_payload_v3,
    encode_open,
    encode_payload,
    encode_payload_v3,
    validate_request,
)
from ..protocol.errors import RemoteProtocolError
from ._compression import HttpCompression, compress_poll_response
from ._edge import HttpEdge
from ._eio3 import Eio3Channel
from .config import EngineConfig, HttpResponse, RequestHead
from .socket import EngineSocket, Handler
from .transports import PollingTransport, WebSocketChannel, WebSocketTransport

__all__ = ["EngineConnectionError", "EngineServer", "HeadersHook", "HttpResponse"]

log = logging.getLogger("trio_sio.engineio")

_TEXT = ("Content-Type", "text/plain; charset=UTF-8")


#: ``hook(headers, head)``: may change ``headers``, the response's ``(name, value)`` list,
#: in place (append a ``Set-Cookie``, for instance).
HeadersHook = Callable[[list[tuple[str, str]], RequestHead], None]


@dataclass(frozen=True, slots=True)
class EngineConnectionError:
    """A request the server refused (the JS server's ``connection_error`` event).

    Attributes:
        request: the refused request.
        code: the error code sent in the JSON body (``4``: forbidden, ...).
        message: the code's standard message (``"Forbidden"``).
        context: more about it: ``{"message": ...}`` with the reason sent, when it is not
            the standard message (an ``allow_request`` reason, for instance).
    """

    request: RequestHead
    code: HandshakeErrorCode
    message: str
    context: Mapping[str, str] = field(default_factory=dict)


ConnectionErrorHook = Callable[[EngineConnectionError], None]


class PayloadTooLarge(RemoteProtocolError):
    """The request body is larger than ``max_http_buffer_size``."""

    def __init__(self) -> None:
        super().__init__("payload too large", error_status_hint=413)


class EngineServer:
    """An Engine.IO v4 server.

    Args:
        handler: ``async def handler(socket)``, run once per session inside the session's
            nursery; it is cancelled when the session closes, and the session closes when it
            returns.
        config: settings; or pass them as keyword arguments.
        on_open: called with each new session before its tasks start (to
            :meth:`~trio_sio.engineio.EngineSocket.attach` a
            :class:`~trio_sio.engineio.SessionHandler`, for instance).

    :meth:`run` hosts the sessions; a front end brings the requests: listen on a TCP port
    with :func:`trio_sio.frontends.standalone.serve`, or mount
    :class:`trio_sio.ASGIApp` in an ASGI server.

    A session opened by a polling handshake starts when its client comes back: the
    handshake is answered with the OPEN packet and leaves only a small record (its sid,
    request and time); the first request naming that sid (a GET, a POST or the WebSocket
    of an upgrade) starts the session, as if it had started at the handshake (its
    heartbeat counts from the handshake). A record never claimed is forgotten ``ping_interval +
    ping_timeout`` seconds after the handshake, when the session would have timed out,
    by one timer for all of them (or after :attr:`claim_timeout`, if shorter). So a
    handshake that is never followed up costs no task and no queue, and ``on_open`` and
    ``handler`` are not called for it. Engine.IO v3 handshakes (``allow_eio3``) and
    WebSocket ones start their session at once.

    Attributes:
        claim_timeout: the longest a polling handshake not followed up is kept, in
            seconds, if shorter than ``ping_interval + ping_timeout`` (None: that). The
            Socket.IO server sets its ``connect_timeout``, which would end such a session.
    """

    def __init__(
        self,
        handler: Handler | None = None,
        config: EngineConfig | None = None,
        *,
        on_open: Callable[[EngineSocket], None] | None = None,
        **options: Any,
    ) -> None:
        if config is not None and options:
            raise TypeError("pass either config or keyword options, not both")
        self.config = config or EngineConfig(**options)
        self._http_compression = HttpCompression.from_setting(self.config.http_compression)
        self._edge = HttpEdge(self.config)
        self._initial_headers_hooks: list[HeadersHook] = []
        self._headers_hooks: list[HeadersHook] = []
        self._connection_error_hooks: list[ConnectionErrorHook] = []
        self._handler = handler
        self._on_open = on_open
        self._sessions: dict[str, EngineSocket] = {}
        # Polling handshakes not followed up yet (see the class's docstring), and their
        # (deadline, sid) in the order they came: oldest first, which is the order in
        # which they expire (one lifetime for all), kept by one task while there are any.
        self._pending: dict[str, _Pending] = {}
        self._expiries: deque[tuple[float, str]] = deque()
        self._expiring = False
        self.claim_timeout: float | None = None
        self._nursery: trio.Nursery | None = None
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self._stopped.set()

    # -- hooks ----------------------------------------------------------------------------
    @overload
    def on(
        self, event: Literal["initial_headers", "headers"], hook: HeadersHook
    ) -> HeadersHook: ...
    @overload
    def on(
        self, event: Literal["initial_headers", "headers"], hook: None = None
    ) -> Callable[[HeadersHook], HeadersHook]: ...
    @overload
    def on(
        self, event: Literal["connection_error"], hook: ConnectionErrorHook
    ) -> ConnectionErrorHook: ...
    @overload
    def on(
        self, event: Literal["connection_error"], hook: None = None
    ) -> Callable[[ConnectionErrorHook], ConnectionErrorHook]: ...
    def on(self, event: str, hook: Callable[..., None] | None = None) -> Any:
        """Add a hook, as the JS server's ``engine.on(...)``; usable as a decorator.

        Events:
            ``"initial_headers"``: ``hook(headers, head)`` before the answer to a handshake
            (the first polling response, or the WebSocket's ``101``) is written.
            ``"headers"``: the same for every successful polling response and WebSocket
            ``101``, handshake included.
            ``"connection_error"``: ``hook(error)`` with an :class:`EngineConnectionError`
            for each request refused (bad query, unknown sid, origin or ``allow_request``
            refusal).

        Hooks are plain functions, called in order, and must not block. One that raises is
        logged (the answer goes out without its change).
        """
        hooks: dict[str, list[Any]] = {
            "initial_headers": self._initial_headers_hooks,
            "headers": self._headers_hooks,
            "connection_error": self._connection_error_hooks,
        }
        if event not in hooks:
            raise ValueError(f"unknown event {event!r}: {', '.join(hooks)}")

        def add(fn: Callable[..., None]) -> Callable[..., None]:
            hooks[event].append(fn)
            return fn

        return add if hook is None else add(hook)

    def _run_hooks(self, hooks: Sequence[Callable[..., None]], *args: Any) -> None:
        for hook in hooks:
            try:
                hook(*args)
            except Exception:
                log.exception("the hook %r failed", hook)

    def _success_headers(self, headers: list[tuple[str, str]], head: RequestHead) -> None:
        """Run the headers hooks on a successful answer's headers."""
        if "sid" not in head.query:
            self._run_hooks(self._initial_headers_hooks, headers, head)
        self._run_hooks(self._headers_hooks, headers, head)

    def accept_headers(self, head: RequestHead) -> list[tuple[str, str]]:
        """The headers a front end adds to the ``101`` accepting the WebSocket ``head``
        (what the ``initial_headers`` and ``headers`` hooks add). Does not block."""
        headers: list[tuple[str, str]] = []
        self._success_headers(headers, head)
        return headers

    def client_address(self, head: RequestHead) -> str | None:
        """The client's IP address, following ``X-Forwarded-For`` from ``trusted_proxies``
        only. Does not block."""
        return self._edge.client_address(head)

    # -- lifetime -------------------------------------------------------------------------
    async def run(
        self,
        *,
        front_end: Callable[[trio.Nursery], Awaitable[object]] | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Host sessions until cancelled or :meth:`shutdown`; ``nursery.start(server.run)``.

        A front end calls :meth:`handle_http`, :meth:`check_websocket` and
        :meth:`serve_websocket` while this runs (the ASGI app starts it on ``lifespan``).

        Args:
            front_end: for a front end that owns its connections (the standalone server):
                ``await front_end(nursery)`` is called before this reports started, with the
                nursery the sessions live in, so that the connections it starts there stay
                open until the sessions have closed.

        Resource handling: on cancellation or :meth:`shutdown`, every session is closed
        gracefully (a CLOSE packet, bounded by ``close_timeout``) before the front end's
        tasks are cancelled.

        Error handling: a failing session is logged and closed; it never reaches this task.
        """
        await self._run(front_end, task_status)

    @property
    def running(self) -> bool:
        """True while :meth:`run` hosts sessions (until it has closed them all)."""
        return self._nursery is not None

    @property
    def accepting(self) -> bool:
        """True while new sessions are accepted: running, and :meth:`shutdown` not called.
        Handshakes are otherwise answered 503."""
        return self._nursery is not None and not self._stop.is_set()

    async def _run(
        self,
        start: Callable[[trio.Nursery], Awaitable[object]] | None,
        task_status: trio.TaskStatus[None],
    ) -> None:
        if self._nursery is not None:
            raise RuntimeError("the server is already running")
        self._stopped = trio.Event()
        children = trio.CancelScope(shield=True)

        async def run_children(*, task_status: trio.TaskStatus[None]) -> None:
            with children:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    if start is not None:
                        await start(nursery)
                    task_status.started()
                    await trio.sleep_forever()  # until children.cancel()

        try:
            async with trio.open_nursery() as outer:
                await outer.start(run_children)
                task_status.started()
                try:
                    await self._stop.wait()
                finally:
                    with trio.CancelScope(shield=True):
                        await self._close_sessions()
                        children.cancel()
        finally:
            self._nursery = None
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop :meth:`run`: close every session gracefully, then return. Does not block;
        see :meth:`wait_stopped`."""
        self._stop.set()

    async def wait_stopped(self) -> None:
        """Block until :meth:`run` has returned (at once if it is not running)."""
        await self._stopped.wait()

    async def _close_sessions(self) -> None:
        # Handshakes not followed up: nothing runs for them, so forgetting them is their
        # close (their client's next request gets "Session ID unknown").
        self._pending.clear()
        self._expiries.clear()
        sessions = list(self._sessions.values())
        for socket in sessions:
            socket.close(CloseReason.SERVER_SHUTDOWN)
        with trio.move_on_after(self.config.close_timeout + 1.0):
            for socket in sessions:
                await socket.wait_closed()

    @property
    def sessions(self) -> dict[str, EngineSocket]:
        """The open sessions by sid (a copy).

        Polling handshakes not followed up yet are sessions too: reading this starts them
        (with their memory and tasks, see the class's docstring). To count sessions
        without that, use :attr:`session_count`.
        """
        for record in list(self._pending.values()):
            self._claim_soon(record)
        return dict(self._sessions)

    def started_session(self, sid: str) -> EngineSocket | None:
        """The session ``sid`` if it has started (None for an unknown sid, or a polling
        handshake not followed up yet: this does not start it). Does not block."""
        return self._sessions.get(sid)

    @property
    def session_count(self) -> int:
        """How many sessions are open, handshakes not followed up yet included."""
        return len(self._sessions) + len(self._pending)

    @property
    def polling_session_count(self) -> int:
        """How many open sessions are on long-polling (handshakes not followed up yet
        included)."""
        polling = sum(1 for s in self._sessions.values() if s.transport is Transport.POLLING)
        return polling + len(self._pending)

    # -- sessions -------------------------------------------------------------------------
    async def _open_session(
        self, head: RequestHead, transport: PollingTransport | WebSocketTransport
    ) -> EngineSocket:
        """Create a session and start it in a task of its own in the sessions nursery."""
        socket = self._new_session(head, transport)
        assert self._nursery is not None
        await self._nursery.start(self._run_session, socket)
        log.info("session %s opened over %s", socket.sid, transport.name.value)
        return socket

    def _new_session(
        self,
        head: RequestHead,
        transport: PollingTransport | WebSocketTransport,
        claimed: _Pending | None = None,
    ) -> EngineSocket:
        """Create and register a session (not started): a new one, or the one of a polling
        handshake answered already (``claimed``)."""
        if self._nursery is None:
            raise RuntimeError("the server is not running: start run() (or a front end)")
        config = self.config
        if claimed is None:
            sid = random_id()  # 120 random bits
            open_packet = self._open_packet(sid, transport.name)
            socket = EngineSocket(sid, transport, config, head, open_packet)
        else:
            socket = EngineSocket(
                claimed.sid, transport, config, head, None, opened_at=claimed.opened
            )
        sid = socket.sid
        if config.allow_eio3 and head.query.get("EIO") == "3":
            socket.protocol = 3  # before any task of the session runs
        if self._on_open is not None:
            self._on_open(socket)  # before any task of the session runs
        self._sessions[sid] = socket
        return socket

    def _open_packet(self, sid: str, transport: Transport) -> Packet:
        """The OPEN packet of a new session."""
        config = self.config
        upgrades: tuple[str, ...] = ()
        if (
            transport is Transport.POLLING
            and config.allow_upgrades
            and Transport.WEBSOCKET in config.transports
        ):
            upgrades = ("websocket",)
        return encode_open(
            OpenInfo(
                sid=sid,
                upgrades=upgrades,
                ping_interval=round(config.ping_interval * 1000),
                ping_timeout=round(config.ping_timeout * 1000),
                max_payload=config.max_http_buffer_size,
            )
        )

    # -- polling handshakes not followed up yet ---------------------------------------------
    def _record_handshake(self, head: RequestHead) -> tuple[str, Packet]:
        """Answer a polling handshake with a record instead of a session (see the class's
        docstring); returns its sid and OPEN packet."""
        nursery = self._nursery
        if nursery is None:
            raise RuntimeError("the server is not running: start run() (or a front end)")
        sid = random_id()  # 120 random bits
        now = trio.current_time()
        self._pending[sid] = _Pending(sid, head, now)
        config = self.config
        lifetime = config.ping_interval + config.ping_timeout
        if self.claim_timeout is not None:
            lifetime = min(lifetime, self.claim_timeout)
        self._expiries.append((now + lifetime, sid))
        if not self._expiring:
            self._expiring = True
            nursery.start_soon(self._expire_pending)
        log.debug("handshake %s answered; its session starts when the client comes back", sid)
        return sid, self._open_packet(sid, Transport.POLLING)

    async def _expire_pending(self) -> None:
        """The one timer of the handshakes not followed up: forget each at its deadline.
        Runs while there are any (in the sessions nursery)."""
        expiries = self._expiries
        try:
            while expiries:
                await trio.sleep_until(expiries[0][0])
                now = trio.current_time()
                while expiries and expiries[0][0] <= now:
                    _, sid = expiries.popleft()
                    if self._pending.pop(sid, None) is not None:
                        log.debug("handshake %s was never followed up: forgotten", sid)
        finally:
            self._expiring = False

    def _claim_soon(self, record: _Pending) -> EngineSocket:
        """Start the session of a recorded handshake, in a task that starts soon."""
        socket = self._claimed(record)
        assert self._nursery is not None
        self._nursery.start_soon(self._run_session, socket)
        return socket

    def _claimed(self, record: _Pending) -> EngineSocket:
        del self._pending[record.sid]
        socket = self._new_session(record.head, PollingTransport(), record)
        log.info("session %s opened over polling", socket.sid)
        return socket

    async def _claim(self, sid: str) -> EngineSocket | None:
        """The session ``sid``: started now if it is a recorded handshake, None if unknown."""
        socket = self._sessions.get(sid)
        if socket is not None:
            return socket
        record = self._pending.get(sid)
        if record is None or not self.accepting:
            return None
        socket = self._claimed(record)  # registered before this yields: claimed once
        assert self._nursery is not None
        with trio.CancelScope(shield=True):  # (started() comes without a wait)
            await self._nursery.start(self._run_session, socket)
        return socket

    def _hosts_current_task(self) -> bool:
        """Whether the calling task runs inside the sessions nursery, as the standalone front
        end's connections do (see ``run(front_end=...)``): shutdown then closes every session
        before it cancels that task."""
        sessions = self._nursery
        task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
        while task is not None:
            nursery = task.parent_nursery
            if nursery is None:
                return False
            if nursery is sessions:
                return True
            task = nursery.parent_task
        return False

    async def _run_session(
        self,
        socket: EngineSocket,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The failure boundary of one session: whatever its tasks raise ends that session
        (logged once, with the reason) and goes no further."""
        # Trio's status object holds the nursery start() made until it is freed: only the
        # wrapper keeps it, and only until started() (a whole nursery per session otherwise).
        status = _Started(task_status)
        del task_status
        try:
            await socket.run(self._handler, task_status=cast("trio.TaskStatus[None]", status))
        except Exception:
            # Peer mistakes close a session without raising, so this is a bug in a layer of
            # the session (ours or the application's): worth a traceback, once.
            log.exception("session %s ended by an unexpected error", socket.sid)
        finally:
            self._sessions.pop(socket.sid, None)
            status.started()  # if it was not yet: the failed start ends

    async def _check(
        self, head: RequestHead, *, is_upgrade: bool, origin_allowed: bool
    ) -> EngineSocket | None:
        """Validate a request; return its session (None for a handshake), started if it was
        a recorded handshake. Raises HandshakeError."""
        config = self.config
        info = validate_request(
            head.query,
            method=head.method,
            is_upgrade=is_upgrade,
            allowed_transports=config.transports,
            allow_eio3=config.allow_eio3,
        )
        if not origin_allowed:
            raise HandshakeError(HandshakeErrorCode.FORBIDDEN, "Origin not allowed")
        if info.sid is None:
            if config.allow_request is not None:
                verdict = config.allow_request(head)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
                if isinstance(verdict, str):
                    raise HandshakeError(HandshakeErrorCode.FORBIDDEN, verdict or None)
                if not verdict:
                    raise HandshakeError(HandshakeErrorCode.FORBIDDEN)
            return None
        socket = self._sessions.get(info.sid)
        if socket is None:
            record = self._pending.get(info.sid)
            if record is not None and not is_upgrade and info.transport is not Transport.POLLING:
                raise HandshakeError(HandshakeErrorCode.BAD_REQUEST, "Transport mismatch")
            socket = await self._claim(info.sid)
        if socket is None or not socket.accepts_requests:
            raise HandshakeError(HandshakeErrorCode.UNKNOWN_SID)
        if not is_upgrade and socket.transport is not info.transport:
            raise HandshakeError(HandshakeErrorCode.BAD_REQUEST, "Transport mismatch")
        return socket

    def _refuse(
        self, head: RequestHead, exc: HandshakeError, cors: list[tuple[str, str]] | None
    ) -> HttpResponse:
        """The answer to a request :meth:`_check` refused; tells the ``connection_error``
        hooks. The CORS headers let an allowed page read the reason."""
        response = self._error(head, exc, cors)
        standard = HandshakeError(exc.code).message
        context = {} if exc.message == standard else {"message": exc.message}
        error = EngineConnectionError(head, exc.code, standard, context)
        self._run_hooks(self._connection_error_hooks, error)
        return response

    def _error(
        self, head: RequestHead, exc: HandshakeError, cors: list[tuple[str, str]] | None
    ) -> HttpResponse:
        log.info("refused %s %s: %s", head.method, head.path, exc.message)
        headers = [("Content-Type", "application/json"), *(cors or ())]
        return HttpResponse(exc.status, headers, exc.body())

    def _unavailable(self, cors: list[tuple[str, str]] | None) -> HttpResponse:
        log.info("refused a handshake: the server is not running")
        return HttpResponse(503, [_TEXT, *(cors or ())], b"Service Unavailable")

    # -- HTTP long-polling ----------------------------------------------------------------
    async def handle_http(
        self, head: RequestHead, body: AsyncIterable[bytes], content_length: int | None = None
    ) -> HttpResponse:
        """Answer one Engine.IO HTTP request (handshake, GET poll, POST, CORS preflight).

        Args:
            head: the request line and headers.
            body: the request body, chunk by chunk; read only as far as the limit allows.
            content_length: the declared length, if any (checked before reading).

        Blocks: a GET waits until the session has something to send (or closes).

        Cancellation: a cancelled GET takes no packets; a cancelled POST may have passed some
        of its packets to the session.
        """
        cors = await self._edge.cors(head)
        if head.method == "OPTIONS":
            return self._edge.preflight(head, cors is not None)
        try:
            socket = await self._check(head, is_upgrade=False, origin_allowed=cors is not None)
        except HandshakeError as exc:
            return self._refuse(head, exc, cors)
        assert cors is not None
        if socket is None:
            if not self.accepting:
                return self._unavailable(cors)
            if self.config.allow_eio3 and head.query.get("EIO") == "3":
                # Engine.IO v3: the Socket.IO layer connects "/" at once (see on_started).
                socket = await self._open_session(head, PollingTransport())
                sid = socket.sid
                response = await self._poll(socket, head, cors)
            else:
                sid, open_packet = self._record_handshake(head)
                response = await self._answer((open_packet,), 4, head, cors)
            cookie = self._edge.cookie
            if cookie is not None and response.status == 200:
                response.headers.append(("Set-Cookie", cookie.header(sid)))
        elif head.method == "GET":
            response = await self._poll(socket, head, cors)
        else:
            response = await self._post(socket, head, body, content_length, cors)
        if response.status == 200:
            self._success_headers(response.headers, head)
        return response

    async def _poll(
        self, socket: EngineSocket, head: RequestHead, cors: list[tuple[str, str]]
    ) -> HttpResponse:
        transport = socket._transport

        def bad() -> HttpResponse:
            return self._error(head, HandshakeError(HandshakeErrorCode.BAD_REQUEST), cors)

        if not isinstance(transport, PollingTransport):
            return bad()
        if transport.get_active:
            log.info("session %s: overlapping GET requests", socket.sid)
            socket._request_close(CloseReason.TRANSPORT_ERROR, graceful=False)
            return bad()
        packets: Sequence[Packet]
        if socket.upgrading:
            # Mid-upgrade: give the upgrade a moment (the JS server answers a poll with a noop
            # within 100 ms); once it is complete, polling requests are refused.
            with trio.move_on_after(0.1):
                await socket.upgrade_settled.wait()
            if socket.transport is not Transport.POLLING:
                return bad()
        if socket.probe_done:
            packets = (NOOP,)
        else:
            transport.get_active = True
            try:
                packets = await transport.poll()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return bad()
            finally:
                transport.get_active = False
        return await self._answer(packets, socket.protocol, head, cors, socket.request)

    async def _answer(
        self,
        packets: Sequence[Packet],
        protocol: int,
        head: RequestHead,
        cors: list[tuple[str, str]],
        handshake: RequestHead | None = None,
    ) -> HttpResponse:
        """The response of a GET carrying ``packets`` (``handshake``: the session's first
        request, if not ``head``)."""
        if protocol == 3:
            # The client takes binary bodies unless it asked for base64 at the handshake.
            query = (handshake or head).query
            encoded = encode_payload_v3(packets, binary=not query.get("b64"))
            if isinstance(encoded, bytes):
                headers = [("Content-Type", "application/octet-stream"), *cors]
                return HttpResponse(200, headers, encoded)
            body = encoded.encode()
        else:
            body = encode_payload(packets).encode()
        response = HttpResponse(200, [_TEXT, *cors], body)
        return await compress_poll_response(response, head, packets, self._http_compression)

    async def _post(
        self,
        socket: EngineSocket,
        head: RequestHead,
        body: AsyncIterable[bytes],
        content_length: int | None,
        cors: list[tuple[str, str]],
    ) -> HttpResponse:
        transport = socket._transport

        def bad() -> HttpResponse:
            return self._error(head, HandshakeError(HandshakeErrorCode.BAD_REQUEST), cors)

        if not isinstance(transport, PollingTransport):
            return bad()
        if transport.post_active:
            log.info("session %s: overlapping POST requests", socket.sid)
            socket._request_close(CloseReason.TRANSPORT_ERROR, graceful=False)
            return bad()
        transport.post_active = True
        try:
            data = await _read_limited(body, self.config.max_http_buffer_size, content_length)
            limit = self.config.max_packets_per_payload
            if socket.protocol == 3:
                binary = head.headers.get("content-type", "").startswith("application/octet-stream")
                packets = decode_payload_v3(data if binary else _utf8(data), max_packets=limit)
            else:
                packets = decode_payload(data, max_packets=limit)
            await transport.feed(packets)
        except PayloadTooLarge:
            log.info("session %s: POST body over the size limit", socket.sid)
            return HttpResponse(413, [_TEXT, *cors], b"Payload Too Large", close=True)
        except RemoteProtocolError as exc:
            log.info("session %s: bad payload: %s", socket.sid, exc)
            socket._request_close(CloseReason.PARSE_ERROR, graceful=False)
            return bad()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return bad()
        finally:
            transport.post_answered()
        return HttpResponse(200, [_TEXT, *cors], b"ok")

    # -- WebSocket ------------------------------------------------------------------------
    async def check_websocket(self, head: RequestHead) -> HttpResponse | None:
        """Decide on a WebSocket upgrade request before accepting it.

        Returns:
            None to accept (then add :meth:`accept_headers` to the ``101``), or the error
            response to refuse it with.

        Blocks while an async ``allow_request`` or origin check decides.
        """
        allowed = await self._edge.origin_allowed(head)
        try:
            socket = await self._check(head, is_upgrade=True, origin_allowed=allowed)
        except HandshakeError as exc:
            return self._refuse(head, exc, None)
        if socket is None and not self.accepting:
            return self._unavailable(None)
        return None

    async def serve_websocket(self, head: RequestHead, channel: WebSocketChannel) -> None:
        """Serve an accepted WebSocket: a new session, or the upgrade of a polling one.

        Blocks until the session over this WebSocket is over (or the upgrade failed). The
        caller closes the WebSocket afterwards.

        A new session runs in the calling task when that task is inside the sessions
        nursery (the standalone front end's connections are): it would only wait for the
        session otherwise, and a task costs memory in every idle connection. Other callers
        (an ASGI server's tasks) get it in a task of its own.

        Cancellation: the front end stops serving this WebSocket (an ASGI server shutting
        down cancels its connections): the session is closed as in a server shutdown, with
        a CLOSE packet if the WebSocket still takes it; that wait is shielded and bounded by
        ``close_timeout`` (plus a second for the closing handshake). A session run in the
        calling task is cancelled with it (a server shutdown has closed it before).
        """
        sid = head.query.get("sid")
        socket: EngineSocket | None = None
        try:
            if not sid:
                if not self.accepting:
                    return
                if self.config.allow_eio3 and head.query.get("EIO") == "3":
                    channel = Eio3Channel(channel)
                transport = WebSocketTransport(channel)
                if self._hosts_current_task():
                    socket = self._new_session(head, transport)
                    log.info("session %s opened over %s", socket.sid, transport.name.value)
                    await self._run_session(socket)
                    return
                socket = await self._open_session(head, transport)
                await socket.wait_closed()
                return
            socket = await self._claim(sid)  # (check_websocket started it already)
            if socket is None:
                return
            if socket.protocol == 3:
                channel = Eio3Channel(channel)
            await socket.upgrade(channel)
        except trio.Cancelled:
            if socket is not None and socket.transport is Transport.WEBSOCKET:
                socket.close(CloseReason.SERVER_SHUTDOWN)
                with trio.CancelScope(shield=True), trio.move_on_after(self._closing_time()):
                    await socket.wait_closed()
            raise

    def _closing_time(self) -> float:
        """The longest a graceful close of one session takes: the CLOSE packet and the
        handler, ``close_timeout`` each, then the closing handshake."""
        return 2 * self.config.close_timeout + 1.0


class _Pending:
    """A polling handshake not followed up yet: what its session needs to start."""

    __slots__ = ("head", "opened", "sid")

    def __init__(self, sid: str, head: RequestHead, opened: float) -> None:
        self.sid = sid
        self.head = head
        self.opened = opened  # Trio time: when the handshake was answered


class _Started:
    """A ``task_status`` that forwards the first ``started()`` and ignores the others, and
    drops trio's status object once it was used."""

    __slots__ = ("_status",)

    def __init__(self, status: trio.TaskStatus[None]) -> None:
        self._status: trio.TaskStatus[None] | None = status

    def started(self, value: None = None) -> None:
        status, self._status = self._status, None
        if status is not None:
            status.started(value)


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("payload is not valid UTF-8") from None


async def _read_limited(body: AsyncIterable[bytes], limit: int, declared: int | None) -> bytes:
    if declared is not None and declared > limit:
        raise PayloadTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
