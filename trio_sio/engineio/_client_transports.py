"""The two client transports, each as a small object that moves Engine.IO packets.

- :class:`PollingTransport`: HTTP long-polling over two :class:`HTTPConnection` objects,
  one for the parked GET and one for POSTs, so sending never waits behind receiving.
- :class:`~._client_websocket.ClientWebSocket`: one packet per WebSocket frame, on our own
  framing (:func:`open_websocket_transport`, :func:`probe_websocket`).

Errors are left as they come (``HTTPTransportError``, ``RemoteProtocolError``,
``ConnectionClosed``, ``OSError``); the client maps them to close reasons.
"""

from __future__ import annotations

import json
import logging
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import h11
import trio

from .._streams import close_now
from ..protocol.engineio import (
    PING_PROBE,
    PONG_PROBE,
    PROTOCOL_VERSION,
    Packet,
    decode_payload,
)
from ..protocol.errors import ConnectionClosed, RemoteProtocolError
from ._client_websocket import ClientWebSocket, connect_websocket
from ._cookies import CookieJar
from ._http_client import (
    Connector,
    HTTPConnection,
    HTTPResponse,
    HTTPTransportError,
    host_header,
    open_stream,
)
from ._proxy import Proxy, ProxyError, ProxySetting, resolve_proxy

__all__ = [
    "TRANSPORT_ERRORS",
    "Endpoint",
    "ClientWebSocket",
    "PollingTransport",
    "open_websocket_transport",
    "probe_websocket",
]

logger = logging.getLogger("trio_sio.engineio.client")

#: The largest HTTP body or WebSocket message accepted from the server.
MAX_INCOMING_SIZE: Final = 16 * 1024 * 1024
#: The exceptions a transport raises when it fails (besides ``ConnectionClosed``, which
#: means the WebSocket was closed).
TRANSPORT_ERRORS: Final = (
    HTTPTransportError,  # WebSocketRefused included
    ProxyError,
    RemoteProtocolError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
    h11.ProtocolError,  # an opening answer that is not HTTP
)
#: Refuse polling payloads holding more packets than this.
_MAX_PACKETS_PER_PAYLOAD: Final = 100_000


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to reach the Engine.IO server.

    Attributes:
        host: host name or IP address.
        port: TCP port.
        path: the Engine.IO path, with a trailing slash.
        query: extra query parameters, sent with every request.
        headers: extra header fields, sent with every request and the WebSocket handshake.
        ssl_context: TLS settings, or None for plain http/ws.
        connector: opens the byte stream instead of TCP (+TLS), e.g. in memory for tests.
        proxy: the HTTP proxy every connection tunnels through, or None.
        cookies: the jar for every request and the WebSocket handshake, or None.
        deflate: offer permessage-deflate on WebSockets.
    """

    host: str
    port: int
    path: str
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    ssl_context: ssl.SSLContext | None
    connector: Connector | None = None
    proxy: Proxy | None = None
    cookies: CookieJar | None = None
    deflate: bool = True

    @classmethod
    def from_url(
        cls,
        url: str,
        path: str,
        query: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        ssl_context: ssl.SSLContext | None,
        *,
        connector: Connector | None = None,
        proxy: ProxySetting = None,
        cookies: CookieJar | None = None,
        deflate: bool = True,
    ) -> Endpoint:
        """Build an endpoint from a URL and the client's options.

        The URL's path is ignored (``path`` is used); its query is kept, and ``query``
        overrides parameters of the same name. TLS is used for https/wss, with
        ``ssl.create_default_context()`` unless ``ssl_context`` is given. ``proxy`` is a
        URL, None (the ``HTTP(S)_PROXY``/``NO_PROXY`` environment) or False (none); it is
        not used with a ``connector``.

        Raises:
            ValueError: unsupported scheme, no host, ``ssl_context`` for http/ws, or a
                proxy that is not an ``http://`` URL.
        """
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https", "ws", "wss"):
            raise ValueError(f"URL scheme must be http, https, ws or wss: {url!r}")
        if not parts.hostname:
            raise ValueError(f"URL has no host: {url!r}")
        secure = parts.scheme in ("https", "wss")
        if ssl_context is not None and not secure:
            raise ValueError("ssl_context given for a plain http/ws URL")
        if secure and ssl_context is None:
            ssl_context = ssl.create_default_context()
        params = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if query:
            params = [(k, v) for k, v in params if k not in query] + list(query.items())
        return cls(
            host=parts.hostname,
            port=parts.port or (443 if secure else 80),
            path=path.rstrip("/") + "/",
            query=tuple(params),
            headers=tuple((headers or {}).items()),
            ssl_context=ssl_context,
            connector=connector,
            proxy=None if connector else resolve_proxy(proxy, parts.hostname, secure=secure),
            cookies=cookies,
            deflate=deflate,
        )

    def cookie_headers(self, target: str) -> list[tuple[str, str]]:
        """The extra header fields of a request for ``target``, with the jar's cookies."""
        headers = list(self.headers)
        if self.cookies is not None:
            secure = self.ssl_context is not None
            cookie = self.cookies.header(self.host, target, secure=secure)
            if cookie is not None:
                headers.append(("Cookie", cookie))
        return headers

    def target(self, transport: str, sid: str | None) -> str:
        """The request target (path and query) for ``transport`` and ``sid``."""
        params = [(k, v) for k, v in self.query if k not in ("EIO", "transport", "sid")]
        params += [("EIO", str(PROTOCOL_VERSION)), ("transport", transport)]
        if sid is not None:
            params.append(("sid", sid))
        return f"{self.path}?{urllib.parse.urlencode(params)}"


def _describe_refusal(response: HTTPResponse) -> str:
    """A short description of a non-200 answer, using the JS server's JSON error body."""
    detail = ""
    try:
        obj = json.loads(response.body)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("message"), str):
        detail = f": {obj['message']} (code {obj.get('code')})"
    return f"HTTP {response.status}{detail}"


class PollingTransport:
    """HTTP long-polling for one session.

    Args:
        endpoint: the server.
    """

    name: Final = "polling"

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self.sid: str | None = None

        def connection() -> HTTPConnection:
            return HTTPConnection(
                endpoint.host,
                endpoint.port,
                ssl_context=endpoint.ssl_context,
                max_body_size=MAX_INCOMING_SIZE,
                connector=endpoint.connector,
                proxy=endpoint.proxy,
                cookies=endpoint.cookies,
            )

        self._get_conn = connection()
        self._post_conn = connection()

    async def poll(self) -> list[Packet]:
        """One GET: wait for the server's next payload (the handshake when no sid is set).

        Raises:
            HTTPTransportError: the request failed or the server refused it.
            RemoteProtocolError: the payload is malformed.

        Cancellation:
            Safe; the GET connection is then closed, which the server sees as an error.
        """
        response = await self._get_conn.request(
            "GET",
            self._endpoint.target(self.name, self.sid),
            headers=[("Accept", "*/*"), *self._endpoint.headers],
        )
        if response.status != 200:
            raise HTTPTransportError(f"polling GET refused: {_describe_refusal(response)}")
        return decode_payload(response.body, max_packets=_MAX_PACKETS_PER_PAYLOAD)

    async def post(self, payload: str) -> None:
        """One POST carrying an encoded payload; returns once the server said ``ok``.

        Raises:
            HTTPTransportError: the request failed or the server did not answer ``ok``.

        Cancellation:
            Safe, but the server may or may not have received the payload.
        """
        response = await self._post_conn.request(
            "POST",
            self._endpoint.target(self.name, self.sid),
            headers=[
                ("Content-Type", "text/plain;charset=UTF-8"),
                ("Accept", "*/*"),
                *self._endpoint.headers,
            ],
            body=payload.encode("utf-8"),
        )
        if response.status != 200 or response.body != b"ok":
            raise HTTPTransportError(f"polling POST refused: {_describe_refusal(response)}")

    async def aclose(self) -> None:
        """Close both HTTP connections (forcefully: nothing is in flight by then).

        Cancellation:
            The connections are closed even if cancelled.
        """
        await self._get_conn.aclose()
        await self._post_conn.aclose()


async def open_websocket_transport(endpoint: Endpoint, sid: str | None) -> ClientWebSocket:
    """Connect a WebSocket to the server (for session ``sid``, or a new one).

    Raises:
        trio.BrokenResourceError: the server ended the connection before answering.
        WebSocketRefused: the server refused the upgrade.
        OSError: connecting failed.
        TLSHandshakeError: the TLS handshake failed.
        ProxyError: the proxy refused the tunnel.

    Cancellation: safe; a cancelled attempt leaves nothing open.
    """
    stream = await open_stream(
        endpoint.host, endpoint.port, endpoint.ssl_context, endpoint.connector, endpoint.proxy
    )
    target = endpoint.target("websocket", sid)
    try:
        ws, answer = await connect_websocket(
            stream,
            host_header(endpoint.host, endpoint.port, secure=endpoint.ssl_context is not None),
            target,
            endpoint.cookie_headers(target),
            deflate=endpoint.deflate,
            max_message_size=MAX_INCOMING_SIZE,
        )
    except BaseException:
        await close_now(stream)
        raise
    if endpoint.cookies is not None:
        endpoint.cookies.update(endpoint.host, target, tuple(answer))
    return ws


async def probe_websocket(endpoint: Endpoint, sid: str) -> ClientWebSocket | None:
    """Open a WebSocket for session ``sid`` and check it with ``2probe``/``3probe``.

    Returns:
        The probed WebSocket, or None if the probe failed (the WebSocket is then closed).

    Cancellation:
        Safe: a cancelled probe leaves no WebSocket open (callers bound it with a timeout).
    """
    ws: ClientWebSocket | None = None
    try:
        ws = await open_websocket_transport(endpoint, sid)
        await ws.send(PING_PROBE)
        replies = await ws.receive_batch()
        if replies != [PONG_PROBE]:
            raise RemoteProtocolError(f"unexpected answer to the probe: {replies!r}")
    except (*TRANSPORT_ERRORS, ConnectionClosed) as exc:
        logger.info("websocket upgrade probe failed, staying on polling: %r", exc)
    except BaseException:
        if ws is not None:
            await ws.abort()
        raise
    else:
        return ws
    if ws is not None:
        await ws.abort()
    return None
