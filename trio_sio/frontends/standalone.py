"""The standalone front end: one TCP (or TLS) port serves HTTP long-polling and WebSocket.

:func:`serve` listens and runs the engine; :func:`serve_listeners` accepts connections and
runs :func:`handle_stream` for each, which reads it with h11. A WebSocket upgrade is served
by :class:`~trio_sio.engineio.websocket.NativeWebSocket` (or handed to trio-websocket, which
first replays the request bytes h11 consumed); anything else goes to
:meth:`EngineServer.handle_http <trio_sio.engineio.EngineServer.handle_http>`. Keep-alive
is honoured.

A client's hold on the server is bounded in time as well as in size (the ``http_*`` settings
of :class:`~trio_sio.engineio.config.EngineConfig`), and nothing it sends is logged above INFO.
"""

from __future__ import annotations

import logging
import os
import re
import socket as socket_module
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11
import trio
import trio_websocket

from .._streams import close_now, drain_input, read_now, write_now
from ..engineio.config import EngineConfig, HttpResponse, RequestHead
from ..engineio.server import EngineServer
from ..engineio.transports import TrioWebSocketChannel
from ..engineio.websocket import NativeWebSocket
from ..protocol.deflate import DeflateOptions, negotiate_deflate
from ..protocol.errors import ConnectionClosed, RemoteProtocolError
from ..protocol.websocket import accept_key, is_valid_key
from ._accept import accept_connections
from ._poll import answer_poll, is_poll
from ._static import not_found, static_response

_Handler = Callable[[EngineServer, trio.abc.Stream], Awaitable[None]]

__all__ = ["handle_stream", "serve", "serve_listeners"]

log = logging.getLogger("trio_sio.frontends.standalone")

MAX_HEADER_BYTES = 16 * 1024
#: header lines in one request head, at most (431 beyond).
MAX_HEADERS = 100
#: what each chunk of a chunked request body counts towards ``max_http_buffer_size``, on top
#: of its bytes: a body of 1-byte chunks costs the parser per chunk, not per byte.
CHUNK_COST = 64
#: body events parsed from buffered data between two checkpoints (so that a request whose
#: bytes are all there already cannot hold the loop while it is parsed).
_EVENTS_PER_CHECKPOINT = 64
#: a request body is handed on in pieces of about this size (small chunks are joined).
_BODY_PIECE = 64 * 1024
READ_SIZE = 64 * 1024
_HEAD_END = re.compile(rb"\n\r?\n")  # where h11 ends a head too
#: seconds spent dropping the rest of a refused request before closing.
LINGER_SECONDS = 1.0
_REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


class _Timeout(Exception):
    """The client was too slow: ``phase`` is ``idle``, ``head``, ``body`` or ``write``."""

    def __init__(self, phase: str) -> None:
        super().__init__(phase)
        self.phase = phase


#: what a peer can make happen: these end its connection with an INFO line at most.
_PEER_ERRORS: tuple[type[Exception], ...] = (_Timeout, ConnectionClosed, RemoteProtocolError)
_PEER_ERRORS += (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError)
_PEER_ERRORS += (trio_websocket.ConnectionClosed, trio_websocket.HandshakeError)


class _Connection:
    """One HTTP connection: its h11 state machine, and the deadline of the current read."""

    __slots__ = (
        "_h11",
        "client",
        "config",
        "deadline",
        "head",
        "phase",
        "request_deadline",
        "stream",
    )

    def __init__(
        self, config: EngineConfig, stream: trio.abc.Stream, client: tuple[str, int] | None
    ) -> None:
        self.config = config
        self.stream = stream
        self.client = client
        self._h11: h11.Connection | None = h11.Connection(
            h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES
        )
        self.phase = "idle"
        self.deadline = 0.0
        self.request_deadline = 0.0
        #: the bytes of the request head being received (None while a body is read): it is
        #: checked (:func:`_check_head`) before h11 parses it.
        self.head: bytearray | None = bytearray()

    @property
    def h11(self) -> h11.Connection:
        """The HTTP state machine.

        Raises:
            RuntimeError: the connection is a WebSocket now (see :meth:`end_http`).
        """
        if self._h11 is None:
            raise RuntimeError("the connection no longer speaks HTTP")
        return self._h11

    @property
    def speaks_http(self) -> bool:
        """False once :meth:`end_http` was called."""
        return self._h11 is not None

    def end_http(self) -> None:
        """The connection became a WebSocket: drop the HTTP parser's state (a WebSocket
        session may last for hours)."""
        self._h11 = None

    def wait_request(self) -> None:
        """Between requests: idle until a byte of the next one arrives.

        Raises:
            h11.RemoteProtocolError: a pipelined request's head, received already, is refused
                (see :func:`_check_head`).
        """
        trailing = self.h11.trailing_data[0]
        self.head = bytearray()
        if trailing:
            self._head_started()  # a pipelined request has begun already
            self._take_head(trailing)
        else:
            self.phase = "idle"
            self.deadline = trio.current_time() + self.config.http_keepalive_timeout

    def _head_started(self) -> None:
        config = self.config
        now = trio.current_time()
        self.phase = "head"
        self.request_deadline = now + config.http_request_timeout
        self.deadline = now + min(config.http_headers_timeout, config.http_request_timeout)

    def reading_body(self, server_time: float = 0.0) -> None:
        """The head is in: the body is bounded by the request deadline, pushed back by
        ``server_time`` (seconds the server took before reading it)."""
        self.phase = "body"
        self.deadline = self.request_deadline + server_time

    def _take_head(self, data: bytes | bytearray) -> None:
        """Keep ``data`` of the request head; once the head is complete, check it.

        Raises:
            h11.RemoteProtocolError: the head is refused, or longer than
                ``MAX_HEADER_BYTES`` (431).
        """
        head = self.head
        assert head is not None
        searched = max(len(head) - 2, 0)
        head += data
        end = _HEAD_END.search(head, searched)
        if end is None:
            if len(head) > MAX_HEADER_BYTES:
                raise h11.RemoteProtocolError("request head too large", 431)
            return
        if end.end() > MAX_HEADER_BYTES:
            raise h11.RemoteProtocolError("request head too large", 431)
        self.head = None
        _check_head(bytes(head[: end.end()]))

    async def next_event(self) -> Any:
        """The next h11 event, reading as needed. A request head is checked by
        :func:`_check_head` before h11 parses it.

        Raises:
            _Timeout: the current deadline passed first.
            h11.RemoteProtocolError: the request is malformed or refused.
        """
        conn = self.h11
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data: bytes | bytearray | None = read_now(self.stream)
            if data is None:  # (most requests are there already: then no deadline is set)
                with trio.move_on_at(self.deadline) as scope:
                    data = await self.stream.receive_some(READ_SIZE)
                if scope.cancelled_caught:
                    raise _Timeout(self.phase)
            else:
                await trio.lowlevel.checkpoint()
            assert data is not None
            if data and self.phase == "idle":
                self._head_started()
            if self.head is not None and data:
                self._take_head(data)
            conn.receive_data(bytes(data))

    async def send(self, data: bytes) -> None:
        """Write ``data`` within ``http_request_timeout`` seconds (a client that does not read
        cannot hold a response, and the connection, forever).

        Raises:
            _Timeout: the write took too long (the stream is then unusable).
        """
        stream = self.stream
        if type(stream) is trio.SocketStream:  # most answers fit the socket's buffer at once
            try:
                sent = write_now(stream.socket, data)
            except OSError as exc:
                raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
            if sent == len(data):
                await trio.lowlevel.checkpoint_if_cancelled()
                return
            data = data[sent:]
        with trio.move_on_after(self.config.http_request_timeout) as scope:
            await stream.send_all(data)
        if scope.cancelled_caught:
            raise _Timeout("write")


class _ReplayStream(trio.abc.Stream):
    """A stream that yields ``prefix`` before reading from the wrapped stream."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            n = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data
        return bytes(await self._stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


# -- listening ---------------------------------------------------------------------------
async def serve(
    engine: EngineServer,
    host: str | None,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` (port 0 picks one) and run ``engine`` until cancelled or
    :meth:`~trio_sio.engineio.EngineServer.shutdown`.

    Use as ``listeners = await nursery.start(serve, engine, "127.0.0.1", 0)``: the started
    value is the TCP listeners (with TLS, the ones under it), for their addresses.

    Args:
        engine: the Engine.IO server (``sio.engine`` for a Socket.IO server; prefer
            ``sio.serve``, which also runs the adapter).
        host: the address to bind (None: every interface).
        port: the TCP port.
        ssl_context: serve HTTPS/WSS with these TLS settings (a server context, e.g.
            ``ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)`` with
            ``load_cert_chain(...)``). The TLS handshake happens while the connection
            waits for its first request: it is bounded by ``http_keepalive_timeout``.
        reuse_port: set ``SO_REUSEPORT`` (Linux, BSD): several processes may listen on the
            same port, the kernel spreading new connections between them (see the
            Scaling out page: long-polling then needs a sticky proxy).

    Resource handling: on cancellation or shutdown, every session is closed gracefully (a
    CLOSE packet, bounded by ``close_timeout``) before the listeners and connections are.

    Error handling: a failing connection or session is logged and closed; it never reaches
    this task. A failed TLS handshake is logged at DEBUG.
    """
    if reuse_port:
        listeners = await _open_reuse_port_listeners(host, port)
    else:
        listeners = await trio.open_tcp_listeners(port, host=host)
    served: list[trio.abc.Listener[Any]] = list(listeners)
    if ssl_context is not None:
        served = [trio.SSLListener(tcp, ssl_context, https_compatible=True) for tcp in listeners]

    async def start_listening(nursery: trio.Nursery) -> None:
        await nursery.start(serve_listeners, engine, served, handle_stream)

    async def run_engine(*, task_status: trio.TaskStatus[None]) -> None:
        await engine.run(front_end=start_listening, task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(run_engine)
        task_status.started(listeners)


async def _open_reuse_port_listeners(host: str | None, port: int) -> list[trio.SocketListener]:
    """Like ``trio.open_tcp_listeners``, with ``SO_REUSEPORT`` set before binding.

    Raises:
        OSError: the platform has no ``SO_REUSEPORT``, or binding failed.
    """
    option = getattr(trio.socket, "SO_REUSEPORT", None)
    if option is None:
        raise OSError("SO_REUSEPORT is not available on this platform")
    addresses = await trio.socket.getaddrinfo(
        host, port, type=trio.socket.SOCK_STREAM, flags=trio.socket.AI_PASSIVE
    )
    listeners: list[trio.SocketListener] = []
    try:
        for family, kind, proto, _, address in addresses:
            sock = trio.socket.socket(family, kind, proto)
            try:
                sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
                sock.setsockopt(trio.socket.SOL_SOCKET, option, 1)
                if family == trio.socket.AF_INET6:
                    sock.setsockopt(trio.socket.IPPROTO_IPV6, trio.socket.IPV6_V6ONLY, 1)
                await sock.bind(address)
                sock.listen(socket_module.SOMAXCONN)
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    return listeners


# -- accepting connections --------------------------------------------------------------
async def serve_listeners(
    server: EngineServer,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    handler: _Handler | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections on ``listeners`` and serve each with ``handler`` (by default
    :func:`handle_stream`), in a task of its own.

    Use as ``await nursery.start(serve_listeners, server, listeners)``. Runs until cancelled;
    the listeners are closed on the way out, and the connections are cancelled.

    Resource handling: when ``accept()`` fails for lack of file descriptors or memory
    (EMFILE, ENFILE, ENOBUFS, ENOMEM), it is retried after 0.1 s, doubling up to 1 s, with one
    warning per episode and an info line when it works again. Past
    ``server.config.max_connections`` open connections, a new connection is closed at once.

    Error handling: a failing connection is logged and closed; it never ends the accept loop.
    Any other ``accept()`` error (the listening socket itself is broken) propagates.
    """
    await accept_connections(server, listeners, handler or handle_stream, task_status=task_status)


# -- one connection -----------------------------------------------------------------------
def _is_peer_error(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_peer_error(inner) for inner in exc.exceptions)
    return isinstance(exc, _PEER_ERRORS)


async def handle_stream(server: EngineServer, stream: trio.abc.Stream) -> None:
    """Serve HTTP requests on one connection until it closes, then close it.

    Blocks until the client or the server is done with the connection (for a WebSocket, until
    its session ends). Cancellation closes the connection.

    Error handling: any failure closes this connection only. What the client causes (bad
    requests, timeouts, resets) gets an HTTP error answer where one is still possible and an
    INFO line at most; only a bug of the server is logged as an error.
    """
    client: tuple[str, int] | None = None
    sock = getattr(stream, "socket", None) or getattr(
        getattr(stream, "transport_stream", None), "socket", None
    )
    if sock is not None:
        try:
            peer = sock.getpeername()
            client = (str(peer[0]), int(peer[1]))
        except (OSError, IndexError, TypeError, ValueError):
            pass
    c = _Connection(server.config, stream, client)
    try:
        await _serve(server, c)
    except _Timeout as exc:
        if exc.phase in ("head", "body"):
            log.info("request from %s not received in time (%s)", client, exc.phase)
            await _refuse(c, 408)
        else:
            log.debug("connection from %s closed: %s timeout", client, exc.phase)
    except h11.RemoteProtocolError as exc:
        log.info("bad HTTP request from %s: %s", client, exc)
        await _refuse(c, exc.error_status_hint)
    except Exception as exc:
        if not _is_peer_error(exc):
            log.exception("HTTP connection from %s failed", client)
        else:
            log.debug("connection from %s ended: %r", client, exc)
    finally:
        await close_now(stream)  # shielded


async def _serve(server: EngineServer, c: _Connection) -> None:
    path = server.config.path.rstrip("/")
    conn = c.h11
    while True:
        c.wait_request()
        event = await c.next_event()
        if not isinstance(event, h11.Request):
            return  # ConnectionClosed: the client is done
        c.reading_body()
        head = _head(event, c.client)
        if head.path.rstrip("/") != path:
            await _drain_body(c)
            await _respond(c, await _static(server, head), head.method)
        elif head.headers.get("upgrade", "").lower() == "websocket" and (
            "upgrade" in head.headers.get("connection", "").lower()
        ):
            # The session may last for hours: keep nothing of the HTTP parsing meanwhile.
            replay = b"" if server.config.websocket == "native" else _raw_head(event)
            del event, conn
            await _websocket(server, c, replay, head)
            return
        else:
            declared = _content_length(event)
            started = trio.current_time()
            if is_poll(head):
                watch = _client_gone if type(c.stream) is trio.SocketStream else _tls_client_gone
                gone = partial(watch, c)
                polled = await answer_poll(server, head, _body(c), declared, gone)
                if polled is None:
                    return  # the client closed the connection: its session is closed
                response = polled
            else:
                response = await server.handle_http(head, _body(c), declared)
            if conn.their_state is h11.SEND_BODY:
                c.reading_body(trio.current_time() - started)
            if response.close:
                response.headers.append(("Connection", "close"))
            await _respond(c, response, head.method)
            if response.close:
                await _linger(c.stream, server.config.max_http_buffer_size)
                return
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return
        if conn.their_state is h11.SEND_BODY:
            # A request whose body the handler did not need (a GET): read its end so that
            # the connection can be reused; a body over the limit closes the connection.
            await _drain_body(c, limit=server.config.max_http_buffer_size)
        if conn.their_state is not h11.DONE:
            return
        conn.start_next_cycle()


async def _client_gone(c: _Connection) -> bool:
    """Wait until the client closes the connection (True) or sends more (False: that is
    kept for the next request and watching stops). A plain TCP stream only.

    Blocks: until then. Cancellation stops the watch and loses nothing.
    """
    stream = c.stream
    assert type(stream) is trio.SocketStream
    sock = stream.socket
    while True:
        await trio.lowlevel.wait_readable(sock)
        fd = sock.fileno()
        if fd < 0:
            return True
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            continue
        except OSError:  # a reset
            return True
        if not data:
            return True
        c.h11.receive_data(data)  # a pipelined request: h11 holds it for its turn
        return False


async def _tls_client_gone(c: _Connection) -> bool:
    """:func:`_client_gone` for a TLS stream: the records are read and decrypted (a
    close_notify alert or an EOF is the client closing, a reset breaks the stream).

    Blocks: until the client closes or sends more. Cancellation stops the watch and loses
    nothing: the TLS handshake is over, and Trio's TLS stream then only ever hands over
    what it decrypted from a completed read.
    """
    try:
        data = await c.stream.receive_some(READ_SIZE)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return True
    if not data:
        return True
    c.h11.receive_data(bytes(data))  # a pipelined request: h11 holds it for its turn
    return False


def _head(request: h11.Request, client: tuple[str, int] | None) -> RequestHead:
    """The request as the server sees it.

    Raises:
        h11.RemoteProtocolError: the request target cannot be parsed (400).
    """
    target = request.target.decode("latin-1")
    try:
        parts = urlsplit(target)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError as exc:
        raise h11.RemoteProtocolError(f"bad request target: {exc}", 400) from None
    query: dict[str, str] = {}
    for name, value in pairs:
        query.setdefault(name, value)
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.headers:
        key = raw_name.decode("latin-1")
        text = raw_value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return RequestHead(request.method.decode("ascii"), parts.path, query, headers, client)


async def _static(server: EngineServer, head: RequestHead) -> HttpResponse:
    """A file of ``static_files`` for a GET/HEAD of its path; 404 otherwise."""
    response = await static_response(server.config.static_files, head)
    return response if response is not None else not_found()


def _content_length(request: h11.Request) -> int | None:
    value = dict(request.headers).get(b"content-length")  # digits: h11 checked it
    return None if value is None else int(value)


async def _body(c: _Connection) -> AsyncIterator[bytes]:
    """The request body, in pieces of up to about 64 KiB (small chunks are joined).

    Each chunk of a chunked body counts ``CHUNK_COST`` bytes towards
    ``max_http_buffer_size`` on top of its data, and parsing checkpoints every few events,
    so the parser's work per request is bounded by the limit and cannot hold the loop.

    Raises:
        h11.RemoteProtocolError: the chunks cost more than the limit (413), or the body is
            malformed.
    """
    limit = c.config.max_http_buffer_size
    piece = bytearray()
    cost = events = 0
    while True:
        event = await c.next_event()
        events += 1
        if events % _EVENTS_PER_CHECKPOINT == 0:
            await trio.lowlevel.checkpoint()
        if isinstance(event, h11.Data):
            data = event.data
            cost += len(data)
            if event.chunk_start:
                cost += CHUNK_COST
                if cost > limit:
                    raise h11.RemoteProtocolError("request body too large", 413)
            if not piece and len(data) >= _BODY_PIECE:
                yield bytes(data)
                continue
            piece += data
            if len(piece) >= _BODY_PIECE:
                yield bytes(piece)
                piece.clear()
        elif isinstance(event, h11.EndOfMessage):
            if piece:
                yield bytes(piece)
            return
        else:
            raise h11.RemoteProtocolError("unexpected event in request body")


def _check_head(head: bytes) -> None:
    """Refuse what llhttp (Node's parser) refuses and h11 lets through, so that no proxy in
    front of us can read the request's framing differently (request smuggling, RFC 9112
    section 6.1 and 11.2): both ``Content-Length`` and ``Transfer-Encoding``, a
    ``Transfer-Encoding`` other than ``chunked`` alone, ``Content-Length`` twice or with
    anything but digits (``5, 5``), a folded
    line (obs-fold), whitespace before a colon; and more than ``MAX_HEADERS`` lines.

    Raises:
        h11.RemoteProtocolError: 400 (431 for too many headers); the connection is closed.
    """
    lines = head.split(b"\n")[1:-2]  # the request line; the empty line and what follows it
    if len(lines) > MAX_HEADERS:
        raise h11.RemoteProtocolError(f"more than {MAX_HEADERS} header lines", 431)
    lengths = 0
    codings: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise h11.RemoteProtocolError("obsolete line folding in the request head", 400)
        name, colon, value = line.partition(b":")
        if not colon or name != name.rstrip(b" \t"):
            raise h11.RemoteProtocolError("malformed header line", 400)
        name = name.lower()
        if name == b"content-length":
            lengths += 1
            if not value.strip(b" \t\r").isdigit():  # (bytes: ASCII digits only)
                raise h11.RemoteProtocolError("malformed Content-Length", 400)
        elif name == b"transfer-encoding":
            codings.append(value.strip(b" \t\r"))
    if lengths > 1:
        raise h11.RemoteProtocolError("Content-Length more than once", 400)
    if codings and lengths:
        raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding", 400)
    if len(codings) > 1 or (codings and codings[0].lower() != b"chunked"):
        raise h11.RemoteProtocolError("Transfer-Encoding other than chunked", 400)


async def _linger(stream: trio.abc.Stream, budget: int) -> None:
    """Before closing on a refused request: half-close, then read and drop what the client
    is still sending (bounded in bytes and time), so that it reads our answer instead of a
    connection reset."""
    try:
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
        return
    with trio.move_on_after(LINGER_SECONDS):
        await drain_input(stream, budget)


async def _drain_body(c: _Connection, limit: int = MAX_HEADER_BYTES) -> None:
    size = 0
    async for chunk in _body(c):
        size += len(chunk)
        if size > limit:
            raise h11.RemoteProtocolError("request body too large", error_status_hint=413)


async def _respond(c: _Connection, response: HttpResponse, method: str = "GET") -> None:
    """Write ``response`` (headers only for a HEAD request; the length is still the body's).

    Raises:
        _Timeout: the client did not take it in time.
    """
    conn = c.h11
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers
    ]
    headers.append((b"Content-Length", str(len(response.body)).encode()))
    reason = _REASONS.get(response.status, b"")
    data = conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
    data = data or b""
    if response.body and method != "HEAD":
        data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await c.send(data)


async def _refuse(c: _Connection, status: int) -> None:
    """Answer an error status if no response was started, then close after a linger."""
    if not c.speaks_http or c.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    headers = [("Content-Type", "text/plain"), ("Connection", "close")]
    response = HttpResponse(status, headers, _REASONS.get(status, b"Bad Request"))
    try:
        with trio.move_on_after(LINGER_SECONDS):
            await _respond(c, response)
    except (_Timeout, h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        return
    await _linger(c.stream, c.config.max_http_buffer_size)


async def _websocket(
    server: EngineServer, c: _Connection, replay: bytes, head: RequestHead
) -> None:
    """Answer a WebSocket upgrade request and serve the WebSocket until its session ends.

    Args:
        replay: the request's head as received (for trio-websocket, which reads it again).
    """
    refusal = await server.check_websocket(head)
    if refusal is not None:
        await _respond(c, refusal)
        return
    key = head.headers.get("sec-websocket-key", "")
    if head.headers.get("sec-websocket-version") != "13" or not is_valid_key(key):
        log.info("bad WebSocket handshake from %s", c.client)
        headers = [("Content-Type", "text/plain"), ("Sec-WebSocket-Version", "13")]
        await _respond(c, HttpResponse(400, headers, b"Bad WebSocket handshake"))
        return
    while True:  # the end of the (empty) request body
        event = await c.next_event()
        if event is h11.PAUSED or isinstance(event, h11.EndOfMessage):
            break
    del event
    leftover = bytes(c.h11.trailing_data[0])
    c.end_http()
    if server.config.websocket == "native":
        await _native_websocket(server, c, key, leftover, head)
    else:
        await _trio_websocket(server, c, replay + leftover, head)


async def _native_websocket(
    server: EngineServer, c: _Connection, key: str, leftover: bytes, head: RequestHead
) -> None:
    options = DeflateOptions.from_setting(server.config.per_message_deflate)
    deflate = None
    if options is not None:
        deflate = negotiate_deflate(head.headers.get("sec-websocket-extensions"), options)
    extensions = b""
    if deflate is not None:
        extensions = b"Sec-WebSocket-Extensions: " + deflate.header.encode("ascii") + b"\r\n"
    extensions += _header_lines(server.accept_headers(head))
    await c.send(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key).encode("ascii") + b"\r\n" + extensions + b"\r\n"
    )
    ws = NativeWebSocket(c.stream, leftover, server.config.max_http_buffer_size, deflate=deflate)
    try:
        await server.serve_websocket(head, ws)
    finally:
        await ws.aclose()


def _header_lines(headers: list[tuple[str, str]]) -> bytes:
    """``Name: value`` lines for a hand-written response head."""
    if any("\r" in n + v or "\n" in n + v for n, v in headers):
        raise ValueError(f"a header hook added a line break: {headers!r}")
    return b"".join(b"%s: %s\r\n" % (n.encode("latin-1"), v.encode("latin-1")) for n, v in headers)


def _raw_head(request: h11.Request) -> bytes:
    """The request's head rebuilt from what h11 parsed (for trio-websocket to read again)."""
    raw = [b"%s %s HTTP/1.1\r\n" % (request.method, request.target)]
    raw.extend(b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw_items())
    raw.append(b"\r\n")
    return b"".join(raw)


async def _trio_websocket(
    server: EngineServer, c: _Connection, received: bytes, head: RequestHead
) -> None:
    # Let trio-websocket read the request h11 consumed again, then what followed it.
    replay = _ReplayStream(c.stream, received)
    max_size = server.config.max_http_buffer_size
    async with trio.open_nursery() as nursery:
        try:
            ws_request = await trio_websocket.wrap_server_stream(
                nursery, replay, message_queue_size=1, max_message_size=max_size
            )
            extra = [
                (n.encode("latin-1"), v.encode("latin-1")) for n, v in server.accept_headers(head)
            ]
            ws = await ws_request.accept(extra_headers=extra)
        except (trio_websocket.ConnectionClosed, trio_websocket.HandshakeError) as exc:
            log.info("WebSocket handshake with %s failed: %r", c.client, exc)
            nursery.cancel_scope.cancel()
            return
        try:
            await server.serve_websocket(head, TrioWebSocketChannel(ws))
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                await ws.aclose()
            nursery.cancel_scope.cancel()
