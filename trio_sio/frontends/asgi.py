"""The ASGI front end: trio_sio inside Hypercorn's trio worker, Quart-Trio or Starlette.

:class:`ASGIApp` is an ASGI 3 application. Requests for the Engine.IO path go to the same
:class:`~trio_sio.engineio.EngineServer` request handling as the standalone server's:
polling (the request body streamed, and refused past ``max_http_buffer_size`` as it
streams), WebSocket and the upgrade. Other paths go to ``static_files``, then to
``other_app`` (or 404). ``lifespan`` starts and stops the server's background work.

It runs on Trio only (the sessions live in Trio nurseries): Hypercorn with
``--worker-class trio``, or any framework on anyio's Trio backend.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

import trio

from ..engineio.config import HttpResponse, RequestHead
from ..engineio.server import EngineServer
from ..protocol.errors import ConnectionClosed
from ._poll import answer_poll, is_poll
from ._static import StaticFiles, not_found, static_response

if TYPE_CHECKING:
    from ..server.server import Server

__all__ = ["ASGIApp", "ASGIWebSocket"]

log = logging.getLogger("trio_sio.frontends.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: Any ASGI 3 application.
ASGIApplication = Callable[[Scope, Receive, Send], Awaitable[None]]

#: What a send to a connection the client closed may raise: the ASGI spec asks servers for
#: an OSError; Trio streams raise the others. Hypercorn 0.18 closes a connection the client
#: closed without waiting for a response being written, which makes that write raise
#: BusyResourceError: the client is gone all the same.
_GONE = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError)


class _Runs(Protocol):
    """What :class:`ASGIApp` needs of a server: ``trio_sio.Server`` and ``EngineServer``."""

    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...

    def shutdown(self) -> None: ...


class ASGIApp:
    """An ASGI 3 application serving a trio_sio server (Trio only).

    Args:
        sio: a :class:`trio_sio.Server` (or an :class:`~trio_sio.engineio.EngineServer`).
        other_app: the ASGI application for every other path (a Quart-Trio or Starlette
            app); it also gets the ``lifespan`` events. Without it, other paths get 404.
        socketio_path: the URL path of the endpoint (default: the server's ``path``,
            ``"/socket.io/"``). A request matches it with or without the ``root_path`` its
            host set (so it works at the top, behind ``--root-path``, or in a Starlette
            ``Mount("/socket.io", app)``).
        static_files: URL paths served as plain files (``{"/": "public/index.html"}``),
            before ``other_app``; default: the server's ``static_files`` setting.

    Run it with Hypercorn's trio worker (``hypercorn --worker-class trio module:app``), or
    with ``hypercorn.trio.serve(app, config)``. The ``lifespan`` startup starts the server
    (``sio.run``) unless it is already running, and the shutdown closes every session
    gracefully (disconnect handlers run with ``"server shutting down"``) before it answers.
    A host that does not pass ``lifespan`` to this app (a Starlette ``Mount``) runs the
    server in its own lifespan with :meth:`running`.
    """

    def __init__(
        self,
        sio: Server | EngineServer,
        other_app: ASGIApplication | None = None,
        socketio_path: str | None = None,
        static_files: StaticFiles | None = None,
    ) -> None:
        self.server: _Runs = sio
        self.engine: EngineServer = sio if isinstance(sio, EngineServer) else sio.engine
        self.other_app = other_app
        path = self.engine.config.path if socketio_path is None else socketio_path
        self.socketio_path = "/" + path.strip("/")
        if static_files is None:
            static_files = self.engine.config.static_files
        self.static_files = static_files
        self._told_not_running = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (``http``, ``websocket`` or ``lifespan``)."""
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif self.other_app is not None:
            await self.other_app(scope, receive, send)
        else:
            raise ValueError(f"unsupported ASGI scope type {kind!r}")

    # -- lifetime -------------------------------------------------------------------------
    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the server for the duration of the block, then close its sessions.

        Blocks on the way out until every session is closed (each bounded by
        ``close_timeout``). For hosts that keep ``lifespan`` to themselves, such as a
        Starlette ``Mount``::

            @contextlib.asynccontextmanager
            async def lifespan(app):
                async with sio_app.running():
                    yield
        """
        async with trio.open_nursery() as nursery:
            await nursery.start(self.server.run)
            try:
                yield
            finally:
                self.server.shutdown()

    def shutdown_trigger(
        self, trigger: Callable[[], Awaitable[object]]
    ) -> Callable[[], Awaitable[None]]:
        """Wrap the ``shutdown_trigger`` of an embedded ``hypercorn.trio.serve``: when
        ``trigger`` returns, the sessions are closed gracefully *while Hypercorn still
        serves their requests* (every client gets its CLOSE packet, long-polling ones
        included), and only then does Hypercorn stop::

            trigger = app.shutdown_trigger(stop.wait)
            await hypercorn.trio.serve(app, config, shutdown_trigger=trigger)
        """

        async def shutdown_trigger() -> None:
            await trigger()
            self.server.shutdown()
            await self.engine.wait_stopped()

        return shutdown_trigger

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        other = None if self.other_app is None else _AppLifespan(self.other_app, scope)
        server_done = trio.Event()

        async def run_server(*, task_status: trio.TaskStatus[None]) -> None:
            try:
                await self.server.run(task_status=task_status)
            finally:
                server_done.set()

        failure = None
        async with trio.open_nursery() as nursery:
            owned = not self.engine.running
            if owned:
                try:
                    await nursery.start(run_server)
                except Exception as exc:
                    log.exception("the server could not start")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
            if other is not None:
                nursery.start_soon(other.run)
                failure = await other.exchange("lifespan.startup")
            phase = "startup"
            if failure is None:
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
                phase = "shutdown"
            if owned:
                # The sessions first: their handlers may still use what the app shuts down.
                self.server.shutdown()
                await server_done.wait()
            if other is not None and phase == "shutdown":
                failure = await other.exchange("lifespan.shutdown")
            nursery.cancel_scope.cancel()
        if failure is not None:
            await send({"type": f"lifespan.{phase}.failed", "message": failure})
        else:
            await send({"type": "lifespan.shutdown.complete"})

    # -- HTTP -----------------------------------------------------------------------------
    def _route(self, scope: Scope) -> tuple[bool, str]:
        """Whether the request is for the Engine.IO path, and its path below ``root_path``."""
        path: str = scope["path"]
        root: str = scope.get("root_path") or ""
        route = path[len(root) :] if root and path.startswith(root) else path
        wanted = self.socketio_path.rstrip("/")
        return wanted in (route.rstrip("/"), path.rstrip("/")), route

    def _warn_if_not_running(self) -> None:
        if not self.engine.running and not self._told_not_running:
            self._told_not_running = True
            log.error(
                "a Socket.IO request came before the server was started: the ASGI server "
                "must send lifespan events to this app (or use ASGIApp.running())"
            )

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        ours, route = self._route(scope)
        head = _head(scope, scope["method"])
        if (ours or self.other_app is None) and _ambiguous_framing(head):
            # The ASGI server took a framing; a proxy in front may have taken the other.
            # Refuse, and close the connection so that nothing after it is read as a request.
            log.info("ambiguous request framing from %s", head.client)
            refusal = HttpResponse(
                400, [("Content-Type", "text/plain"), ("Connection", "close")], b"Bad Request"
            )
            await _respond(send, refusal, head.method)
            return
        if ours:
            self._warn_if_not_running()
            declared = _content_length(head)
            if is_poll(head):
                gone = partial(_client_gone, receive)
                polled = await answer_poll(self.engine, head, _Body(receive), declared, gone)
                if polled is None:
                    return  # the client disconnected: its session is closed
                response = polled
            else:
                response = await self.engine.handle_http(head, _Body(receive), declared)
        else:
            static = await static_response(self.static_files, dataclasses.replace(head, path=route))
            if static is None:
                if self.other_app is not None:
                    await self.other_app(scope, receive, send)
                    return
                static = not_found()
            response = static
        await _respond(send, response, head.method)

    # -- WebSocket ------------------------------------------------------------------------
    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        ours, _ = self._route(scope)
        if not ours:
            if self.other_app is not None:
                await self.other_app(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1000})
            return
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        self._warn_if_not_running()
        head = _head(scope, "GET")
        refusal = await self.engine.check_websocket(head)
        if refusal is not None:
            await _refuse_websocket(scope, send, refusal)
            return
        extra = self.engine.accept_headers(head)
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if extra:
            accept["headers"] = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in extra]
        await send(accept)
        channel = ASGIWebSocket(receive, send, self.engine.config.max_http_buffer_size)
        try:
            await self.engine.serve_websocket(head, channel)
        finally:
            await channel.aclose()


class ASGIWebSocket:
    """A :class:`~trio_sio.engineio.transports.WebSocketChannel` over an ASGI WebSocket.

    The session's tasks call the connection's ``receive``/``send`` themselves: nothing runs
    per message beyond what the ASGI server does.

    Args:
        receive: the connection's ``receive`` (after ``websocket.connect``).
        send: the connection's ``send`` (after ``websocket.accept``).
        max_message_size: the largest message accepted (bytes); a larger one closes the
            WebSocket with status 1009.
    """

    bounded_close = False

    def __init__(self, receive: Receive, send: Send, max_message_size: int) -> None:
        self._receive = receive
        self._send = send
        self._max = max_message_size
        self._closed: str | None = None
        self._close_sent = False

    async def get_message(self) -> str | bytes:
        """The next text or binary message.

        Raises:
            ConnectionClosed: the client closed the WebSocket (or it was closed here).
        """
        while True:
            if self._closed is not None:
                raise ConnectionClosed(self._closed)
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data: str | bytes | None = message.get("text")
                if data is None:
                    data = message.get("bytes")
                    if data is None:
                        continue
                if len(data) > self._max or (
                    isinstance(data, str)
                    and len(data) * 4 > self._max
                    and _utf8_over(data, self._max)
                ):
                    log.info("websocket message over %d bytes: closing", self._max)
                    await self._close(1009)
                    self._closed = "transport error"
                    raise ConnectionClosed(self._closed)
                return data
            if kind == "websocket.disconnect":
                self._closed = "transport close"
                self._close_sent = True  # nothing more can be sent
                raise ConnectionClosed(self._closed)

    async def send_message(self, message: str | bytes) -> None:
        """Send one message.

        Raises:
            ConnectionClosed: the WebSocket is closed.
        """
        if self._close_sent:
            raise ConnectionClosed(self._closed or "transport close")
        if isinstance(message, str):
            event: Message = {"type": "websocket.send", "text": message}
        else:
            event = {"type": "websocket.send", "bytes": message}
        try:
            await self._send(event)
        except _GONE:
            self._closed = self._closed or "transport close"
            self._close_sent = True
            raise ConnectionClosed("transport close") from None

    def frame_writer(self) -> None:
        """The ASGI server frames each message itself."""
        return None

    def message_ready(self) -> bool:
        """The ASGI server does not say: each message is read on its own."""
        return False

    async def aclose(self) -> None:
        """Close with status 1000 (once). Shielded, and bounded to one second."""
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            await self._close(1000)
        self._closed = self._closed or "forced close"

    async def _close(self, code: int) -> None:
        if self._close_sent:
            return
        self._close_sent = True
        try:
            await self._send({"type": "websocket.close", "code": code})
        except _GONE:
            pass


class _AppLifespan:
    """The ``lifespan`` protocol of the wrapped app, run beside ours: it gets the same
    events, and its answers are read back. An app that raises before answering the startup
    does not support lifespan (as ASGI servers treat it): it is left out."""

    def __init__(self, app: ASGIApplication, scope: Scope) -> None:
        self._app = app
        self._scope = scope
        self._to_app, self._app_inbox = trio.open_memory_channel[Message](2)
        self._replies, self._app_outbox = trio.open_memory_channel[Message](2)
        self._started = False

    async def run(self) -> None:
        async def send(message: Message) -> None:
            await self._replies.send(message)

        try:
            await self._app(self._scope, self._app_inbox.receive, send)
        except Exception:
            if self._started:
                log.exception("the wrapped app's lifespan failed")
            else:
                log.info("the wrapped app does not support lifespan", exc_info=True)
        finally:
            self._replies.close()

    async def exchange(self, event: str) -> str | None:
        """Pass ``event`` on and wait for the answer; the failure message, or None."""
        self._to_app.send_nowait({"type": event})
        try:
            reply = await self._app_outbox.receive()
        except trio.EndOfChannel:
            return None  # the app has returned (or never supported lifespan)
        self._started = True
        if reply["type"] == f"{event}.failed":
            return str(reply.get("message", ""))
        return None


# -- helpers ------------------------------------------------------------------------------
def _utf8_over(text: str, limit: int) -> bool:
    return len(text.encode("utf-8", "surrogatepass")) > limit


def _head(scope: Scope, method: str) -> RequestHead:
    """The request as the engine sees it."""
    query: dict[str, str] = {}
    raw_query: bytes = scope.get("query_string", b"")
    for name, value in parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True):
        query.setdefault(name, value)
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        key = bytes(raw_name).decode("latin-1").lower()
        text = bytes(raw_value).decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    client = scope.get("client")
    peer = (str(client[0]), int(client[1])) if client else None
    return RequestHead(method, scope["path"], query, headers, peer)


def _ambiguous_framing(head: RequestHead) -> bool:
    """Whether the request's body framing could be read two ways (request smuggling, RFC 9112
    section 6.1): both ``Content-Length`` and ``Transfer-Encoding``, ``Content-Length`` twice
    (merged here as ``"5, 5"``), or a ``Transfer-Encoding`` other than ``chunked`` alone.
    Hypercorn (h11) accepts these; the standalone front end refuses them itself."""
    headers = head.headers
    coding = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if coding is not None and (length is not None or coding.strip(" \t").lower() != "chunked"):
        return True
    return length is not None and not (length.isascii() and length.strip(" \t").isdigit())


def _content_length(head: RequestHead) -> int | None:
    value = head.headers.get("content-length")
    if value is None or not value.isascii() or not value.isdigit():  # ("²".isdigit())
        return None
    return int(value)


async def _client_gone(receive: Receive) -> bool:
    """Wait for the ``http.disconnect`` of a GET whose (empty) body nobody reads: True once
    the client went away. Blocks until then."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return True


class _Body:
    """The request body from ``http.request`` events, chunk by chunk (an iterator object
    rather than an async generator, so that stopping early leaves nothing to finalize).

    Raises ``trio.BrokenResourceError`` if the client disconnects before its end."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._done = False

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        while not self._done:
            message = await self._receive()
            kind = message["type"]
            if kind == "http.request":
                self._done = not message.get("more_body", False)
                chunk = message.get("body", b"")
                if chunk:
                    return bytes(chunk)
            elif kind == "http.disconnect":
                self._done = True
                raise trio.BrokenResourceError("the client disconnected")
        raise StopAsyncIteration


async def _respond(send: Send, response: HttpResponse, method: str) -> None:
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers
    ]
    headers.append((b"content-length", str(len(response.body)).encode("ascii")))
    if response.close:
        headers.append((b"connection", b"close"))
    body = b"" if method == "HEAD" else response.body
    try:
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except _GONE:
        log.debug("client gone before its response was sent")


async def _refuse_websocket(scope: Scope, send: Send, response: HttpResponse) -> None:
    """Refuse a WebSocket handshake with ``response`` where the server lets us (the
    ``websocket.http.response`` extension), else with a plain close (403)."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers
    ]
    headers.append((b"content-length", str(len(response.body)).encode("ascii")))
    await send(
        {"type": "websocket.http.response.start", "status": response.status, "headers": headers}
    )
    await send({"type": "websocket.http.response.body", "body": response.body})
