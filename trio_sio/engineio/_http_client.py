"""A minimal HTTP/1.1 client: h11 over a Trio TCP (or TLS) stream.

Just enough for Engine.IO long-polling: one request at a time per connection, bodies with
a ``Content-Length``, keep-alive reuse, and a cap on the size of a response body. Each
long-polling session uses two of these connections, one for the parked GET and one for
POSTs, so that a POST never waits behind a GET.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import h11
import trio

from ..protocol.errors import SocketIOError
from ._cookies import CookieJar
from ._proxy import Proxy, ProxyError, open_tunnel

__all__ = [
    "HTTPConnection",
    "HTTPResponse",
    "HTTPTransportError",
    "TLSHandshakeError",
    "host_header",
    "open_stream",
]

logger = logging.getLogger("trio_sio.engineio.client")

#: Close a kept-alive connection that has been idle this long (seconds) instead of reusing
#: it: servers drop idle connections (Node's default keep-alive timeout is 5 s), and a
#: request written into a connection the server is closing is lost.
IDLE_REUSE_LIMIT: Final = 4.0
DEFAULT_MAX_BODY_SIZE: Final = 16 * 1024 * 1024
_RECEIVE_SIZE: Final = 65536


class HTTPTransportError(SocketIOError):
    """An HTTP exchange failed: network error, malformed response, or body too large."""


class TLSHandshakeError(HTTPTransportError):
    """The TLS handshake failed: most often the server's certificate was refused (not
    signed by a trusted authority, or not for this host name); the message says why."""


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """A complete HTTP response.

    Attributes:
        status: the status code.
        headers: the header fields, names lower-cased, as text.
        body: the whole body.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None


def host_header(host: str, port: int, *, secure: bool) -> str:
    """The ``Host`` header value: IPv6 literals bracketed, default ports left out."""
    text = f"[{host}]" if ":" in host else host
    return text if port == (443 if secure else 80) else f"{text}:{port}"


Connector = Callable[[str, int, "ssl.SSLContext | None"], Awaitable[trio.abc.Stream]]


async def open_stream(
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    connector: Connector | None = None,
    proxy: Proxy | None = None,
) -> trio.abc.Stream:
    """Connect over TCP (through a ``CONNECT`` tunnel of ``proxy`` if given), then TLS
    (handshake done, certificate checked) if a context is given.

    A ``connector`` replaces all of that (tests use one that returns in-memory streams).

    Raises:
        OSError: connecting failed.
        ProxyError: the proxy refused the tunnel.
        TLSHandshakeError: the TLS handshake failed (the certificate was refused, say).

    Cancellation:
        Safe: a cancelled connection attempt leaves nothing open.
    """
    if connector is not None:
        return await connector(host, port, ssl_context)
    if proxy is not None:
        tcp = await open_tunnel(proxy, host, port)
    else:
        tcp = await trio.open_tcp_stream(host, port)
    if ssl_context is None:
        return tcp
    tls = trio.SSLStream(tcp, ssl_context, server_hostname=host, https_compatible=True)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(tls)
        why = exc.__cause__ if exc.__cause__ is not None else exc
        raise TLSHandshakeError(f"TLS handshake with {host}:{port} failed: {why}") from exc
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    return tls


class _Dropped(Exception):
    """The server closed a reused connection before answering: safe to retry once."""


class HTTPConnection:
    """One HTTP/1.1 connection to one origin, reopened as needed.

    Not safe for concurrent use: callers run one request at a time per connection.

    Args:
        host: the host name or IP address.
        port: the TCP port.
        ssl_context: TLS settings for https, or None for plain http.
        max_body_size: refuse a response body larger than this many bytes.
        connector: opens the byte stream instead of TCP (+TLS).
        proxy: the HTTP proxy to tunnel through, if any.
        cookies: the jar whose cookies go with each request and which keeps the cookies
            each response sets (None: no cookies).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        connector: Connector | None = None,
        proxy: Proxy | None = None,
        cookies: CookieJar | None = None,
    ) -> None:
        self._connector = connector
        self._proxy = proxy
        self._cookies = cookies
        self._host = host
        self._port = port
        self._ssl_context = ssl_context
        self._max_body_size = max_body_size
        self._stream: trio.abc.Stream | None = None
        self._h11 = h11.Connection(h11.CLIENT)
        self._idle_since = 0.0
        self._closed = False
        self.host_header = host_header(host, port, secure=ssl_context is not None)

    async def request(
        self,
        method: str,
        target: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> HTTPResponse:
        """Send one request and read the whole response.

        A kept-alive connection is reused while fresh. If the server turns out to have
        closed it before sending any byte of the answer (what a server that drops idle
        connections does), the request is sent once more on a new connection, assuming,
        as common HTTP clients do, that the server did not act on the first copy.

        Args:
            method: ``"GET"``, ``"POST"``, ...
            target: the request target (path and query).
            headers: extra header fields; ``Host`` and ``Content-Length`` are added.
            body: the request body.

        Returns:
            The response.

        Raises:
            HTTPTransportError: connecting, sending or receiving failed, the response was
                malformed, or its body exceeded the size limit. The connection is then
                closed; the next request opens a new one.
            trio.ClosedResourceError: :meth:`aclose` was called.

        Cancellation:
            Safe to cancel at any point; a cancelled request leaves the connection closed
            (the server may or may not have received the request).
        """
        if self._closed:
            raise trio.ClosedResourceError("HTTP connection was closed")
        if self._stream is not None and trio.current_time() - self._idle_since > IDLE_REUSE_LIMIT:
            await self._discard()
        reused = self._stream is not None
        try:
            try:
                return await self._exchange(method, target, headers, body)
            except _Dropped:
                if not reused:
                    raise
                logger.debug("kept-alive connection was closed by the server; reconnecting")
                await self._discard()
                return await self._exchange(method, target, headers, body)
        except _Dropped as exc:
            await self._discard()
            raise HTTPTransportError("server closed the connection without answering") from exc
        except (
            OSError,
            trio.BrokenResourceError,
            h11.ProtocolError,
            ssl.SSLError,
            ProxyError,
        ) as exc:
            await self._discard()
            raise HTTPTransportError(f"HTTP {method} failed: {exc!r}") from exc
        except BaseException:
            await self._discard()
            raise

    async def aclose(self) -> None:
        """Close the connection; further requests raise ``trio.ClosedResourceError``.

        Cancellation:
            The stream is closed even if cancelled (forcefully, without TLS goodbye).
        """
        self._closed = True
        await self._discard()

    async def _discard(self) -> None:
        stream, self._stream = self._stream, None
        self._h11 = h11.Connection(h11.CLIENT)
        if stream is not None:
            await trio.aclose_forcefully(stream)

    async def _exchange(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> HTTPResponse:
        fresh = self._stream is None
        if self._stream is None:
            self._stream = await open_stream(
                self._host, self._port, self._ssl_context, self._connector, self._proxy
            )
        stream = self._stream
        conn = self._h11
        all_headers = [("Host", self.host_header), *headers]
        secure = self._ssl_context is not None
        if self._cookies is not None:
            cookie = self._cookies.header(self._host, target, secure=secure)
            if cookie is not None:
                all_headers.append(("Cookie", cookie))
        if body or method in ("POST", "PUT"):
            all_headers.append(("Content-Length", str(len(body))))
        out = conn.send(h11.Request(method=method, target=target, headers=all_headers))
        assert out is not None
        if body:
            data = conn.send(h11.Data(data=body))
            assert data is not None
            out += data
        end = conn.send(h11.EndOfMessage())
        assert end is not None
        out += end
        try:
            await stream.send_all(out)
        except trio.BrokenResourceError:
            if fresh:
                raise
            raise _Dropped from None

        status = 0
        resp_headers: tuple[tuple[str, str], ...] = ()
        chunks: list[bytes] = []
        size = 0
        got_bytes = False
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    received = await stream.receive_some(_RECEIVE_SIZE)
                except trio.BrokenResourceError:
                    if got_bytes or fresh:
                        raise
                    raise _Dropped from None
                if not received and not got_bytes and not fresh:
                    raise _Dropped
                got_bytes = got_bytes or bool(received)
                conn.receive_data(bytes(received))
            elif isinstance(event, h11.InformationalResponse):
                continue
            elif isinstance(event, h11.Response):
                status = event.status_code
                resp_headers = tuple(
                    (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers
                )
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self._max_body_size:
                    raise HTTPTransportError(
                        f"response body larger than {self._max_body_size} bytes"
                    )
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                if not got_bytes and not fresh:
                    raise _Dropped
                raise HTTPTransportError("connection closed before the response was complete")
            else:  # PAUSED cannot happen here: we stop at EndOfMessage.
                raise HTTPTransportError(f"unexpected HTTP event {event!r}")

        if self._cookies is not None:
            self._cookies.update(self._host, target, resp_headers)
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self._idle_since = trio.current_time()
        else:
            await self._discard()
        return HTTPResponse(status, resp_headers, b"".join(chunks))
