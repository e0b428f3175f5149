"""A standalone HTTP/1.1 front end on h11: one TCP port serves polling and WebSocket.

Each TCP connection is read with h11. A WebSocket upgrade request is handed to
trio-websocket on the same stream, which first replays the request bytes h11 consumed.
Anything else goes to :meth:`EngineServer.handle_http`. Keep-alive is honoured.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

import h11
import trio
import trio_websocket

from ..protocol.websocket import accept_key
from .config import HttpResponse, RequestHead
from .transports import TrioWebSocketChannel
from .websocket import NativeWebSocket

if TYPE_CHECKING:
    from .server import EngineServer

__all__ = ["handle_stream"]

log = logging.getLogger("trio_sio.engineio.http")

MAX_HEADER_BYTES = 16 * 1024
READ_SIZE = 64 * 1024
#: seconds an idle keep-alive connection, or a slow request head, may take.
IDLE_TIMEOUT = 60.0
#: seconds spent dropping the rest of a refused body before closing.
LINGER_SECONDS = 1.0


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


def _head(request: h11.Request, client: tuple[str, int] | None) -> RequestHead:
    target = request.target.decode("latin-1")
    parts = urlsplit(target)
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(name, value)
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.headers:
        key = raw_name.decode("latin-1")
        text = raw_value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return RequestHead(request.method.decode("ascii"), parts.path, query, headers, client)


def _is_websocket(head: RequestHead) -> bool:
    return (
        head.headers.get("upgrade", "").lower() == "websocket"
        and "upgrade" in head.headers.get("connection", "").lower()
    )


async def handle_stream(server: EngineServer, stream: trio.abc.Stream) -> None:
    """Serve HTTP requests on one TCP connection until it closes.

    Error handling: any failure closes this connection only, with a log line.
    """
    client: tuple[str, int] | None = None
    sock = getattr(stream, "socket", None)
    if sock is not None:
        try:
            peer = sock.getpeername()
            client = (str(peer[0]), int(peer[1]))
        except OSError:
            pass
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
    try:
        await _serve(server, stream, conn, client)
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
        pass
    except h11.RemoteProtocolError as exc:
        log.info("bad HTTP request from %s: %s", client, exc)
        await _try_send_error(stream, conn, exc.error_status_hint)
    except Exception:
        log.exception("HTTP connection from %s failed", client)
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


async def _next_event(
    stream: trio.abc.Stream, conn: h11.Connection
) -> h11.Event | type[h11.PAUSED]:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            with trio.fail_after(IDLE_TIMEOUT):
                data = await stream.receive_some(READ_SIZE)
            conn.receive_data(bytes(data))
            continue
        return event  # type: ignore[return-value]


async def _serve(
    server: EngineServer,
    stream: trio.abc.Stream,
    conn: h11.Connection,
    client: tuple[str, int] | None,
) -> None:
    path = server.config.path
    while True:
        event = await _next_event(stream, conn)
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return
        if not isinstance(event, h11.Request):
            return
        head = _head(event, client)
        if head.path.rstrip("/") != path.rstrip("/"):
            await _drain_body(stream, conn)
            await _respond(stream, conn, await _static(server, head))
        elif _is_websocket(head):
            await _websocket(server, stream, conn, event, head)
            return
        else:
            declared = _content_length(event)
            response = await server.handle_http(head, _body(stream, conn), declared)
            if response.close:
                response.headers.append(("Connection", "close"))
            await _respond(stream, conn, response)
            if response.close:
                await _linger(stream, server.config.max_http_buffer_size)
                return
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return
        if conn.their_state is h11.SEND_BODY:
            # A request whose body the handler did not need (a GET): read its end so that
            # the connection can be reused; a body over the limit closes the connection.
            await _drain_body(stream, conn, limit=server.config.max_http_buffer_size)
        if conn.their_state is not h11.DONE:
            return
        conn.start_next_cycle()


async def _static(server: EngineServer, head: RequestHead) -> HttpResponse:
    """A file of ``static_files`` for a GET/HEAD of its path; 404 otherwise."""
    files = server.config.static_files or {}
    name = files.get(head.path)
    if name is None or head.method not in ("GET", "HEAD"):
        return HttpResponse(404, [("Content-Type", "text/plain")], b"Not Found")
    try:
        body = await trio.Path(name).read_bytes()
    except OSError:
        log.exception("static file %s for %s cannot be read", name, head.path)
        return HttpResponse(404, [("Content-Type", "text/plain")], b"Not Found")
    kind = mimetypes.guess_type(str(name))[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
        kind += "; charset=utf-8"
    headers = [("Content-Type", kind), ("Cache-Control", "no-cache")]
    return HttpResponse(200, headers, b"" if head.method == "HEAD" else body)


def _content_length(request: h11.Request) -> int | None:
    for name, value in request.headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _body(stream: trio.abc.Stream, conn: h11.Connection) -> AsyncIterator[bytes]:
    while True:
        event = await _next_event(stream, conn)
        if isinstance(event, h11.Data):
            yield bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return
        else:
            raise h11.RemoteProtocolError("unexpected event in request body")


async def _linger(stream: trio.abc.Stream, budget: int) -> None:
    """Before closing on a refused body: half-close, then read and drop what the client is
    still sending (bounded in bytes and time), so that it reads our answer instead of a
    connection reset."""
    if isinstance(stream, trio.abc.HalfCloseableStream):
        try:
            await stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
    with trio.move_on_after(LINGER_SECONDS):
        while budget > 0:
            data = await stream.receive_some(READ_SIZE)
            if not data:
                return
            budget -= len(data)


async def _drain_body(
    stream: trio.abc.Stream, conn: h11.Connection, limit: int = MAX_HEADER_BYTES
) -> None:
    size = 0
    async for chunk in _body(stream, conn):
        size += len(chunk)
        if size > limit:
            raise h11.RemoteProtocolError("request body too large", error_status_hint=413)


async def _respond(stream: trio.abc.Stream, conn: h11.Connection, response: HttpResponse) -> None:
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers
    ]
    headers.append((b"Content-Length", str(len(response.body)).encode()))
    data = conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
    if response.body:
        data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)


async def _try_send_error(stream: trio.abc.Stream, conn: h11.Connection, status: int) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    try:
        with trio.move_on_after(1.0):
            await _respond(
                stream, conn, HttpResponse(status, [("Connection", "close")], b"Bad Request")
            )
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _websocket(
    server: EngineServer,
    stream: trio.abc.Stream,
    conn: h11.Connection,
    request: h11.Request,
    head: RequestHead,
) -> None:
    refusal = await server.check_websocket(head)
    if refusal is not None:
        await _respond(stream, conn, refusal)
        return
    if server.config.websocket == "native":
        await _native_websocket(server, stream, conn, head)
        return
    # Rebuild the request bytes h11 consumed, then let trio-websocket read them again.
    raw = [b"%s %s HTTP/1.1\r\n" % (request.method, request.target)]
    raw.extend(b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw_items())
    raw.append(b"\r\n")
    while True:
        event = await _next_event(stream, conn)
        if event is h11.PAUSED or isinstance(event, h11.EndOfMessage):
            break
    trailing, _closed = conn.trailing_data
    replay = _ReplayStream(stream, b"".join(raw) + trailing)
    max_size = server.config.max_http_buffer_size
    async with trio.open_nursery() as nursery:
        ws_request = await trio_websocket.wrap_server_stream(
            nursery, replay, message_queue_size=1, max_message_size=max_size
        )
        ws = await ws_request.accept()
        channel = TrioWebSocketChannel(ws)
        try:
            await server.serve_websocket(head, channel)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                await ws.aclose()
            nursery.cancel_scope.cancel()


async def _native_websocket(
    server: EngineServer, stream: trio.abc.Stream, conn: h11.Connection, head: RequestHead
) -> None:
    key = head.headers.get("sec-websocket-key")
    if key is None or head.headers.get("sec-websocket-version") != "13":
        bad = HttpResponse(400, [("Content-Type", "text/plain")], b"Bad WebSocket handshake")
        await _respond(stream, conn, bad)
        return
    while True:
        event = await _next_event(stream, conn)
        if event is h11.PAUSED or isinstance(event, h11.EndOfMessage):
            break
    leftover, _closed = conn.trailing_data
    await stream.send_all(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key).encode("ascii") + b"\r\n\r\n"
    )
    ws = NativeWebSocket(stream, bytes(leftover), server.config.max_http_buffer_size)
    try:
        await server.serve_websocket(head, ws)
    finally:
        await ws.aclose()
