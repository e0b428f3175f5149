"""Configuration of an Engine.IO server, and the view of an HTTP request it decides on."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..protocol.deflate import DeflateOptions
from ..protocol.engineio import Transport
from ._compression import HttpCompression

__all__ = ["EngineConfig", "HttpResponse", "RequestHead"]


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What the server knows of an HTTP or WebSocket request before reading its body.

    Attributes:
        method: ``"GET"``, ``"POST"``, ...
        path: the path, without the query string.
        query: decoded query parameters (the first value of each name).
        headers: header names in lower case, values as text (repeated headers joined by ``", "``).
        client: the peer's ``(host, port)``, when known.
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    client: tuple[str, int] | None = None


AllowRequest = Callable[[RequestHead], Awaitable[bool] | bool]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Engine.IO server settings. Times are in seconds, sizes in bytes.

    Attributes:
        ping_interval: seconds between two server pings.
        ping_timeout: seconds to wait for the pong before closing the session.
        upgrade_timeout: seconds a polling→WebSocket upgrade may take once the WebSocket is open.
        max_http_buffer_size: the largest HTTP body or WebSocket message accepted (``maxPayload``).
        transports: the transports accepted, in the order offered.
        allow_upgrades: offer the polling→WebSocket upgrade.
        cors_allowed_origins: ``None`` allows the same origin only; ``"*"`` any origin
            (without credentials); a sequence lists the origins allowed (with credentials).
            Requests without an ``Origin`` header (non-browser clients) are always allowed.
        allow_request: an optional hook called with every handshake request; returning False
            refuses it with 403. It may be sync or async.
        cookie: when set, the handshake response sets a cookie of that name holding the sid.
        max_buffer_bytes: the bound of a session's send queue, in bytes of message data
            (characters for text) queued or being written. Over it, ``send()`` waits and
            ``send_nowait()`` raises ``trio.WouldBlock``; a forced send (a broadcast) is still
            queued. A session that stays over it for ``slow_consumer_grace`` seconds, or
            reaches twice the bound, is closed with reason ``"slow consumer"``. A single
            message larger than the bound is accepted when the queue is below it, so the most
            a session holds is twice the bound plus one message.
        slow_consumer_grace: seconds a session may stay over ``max_buffer_bytes``.
        message_queue_size: bound of a session's queue of received messages; a full queue stops
            reading from the peer (backpressure).
        max_packets_per_payload: the most packets one polling POST may carry.
        max_packets_per_poll: the most packets one polling response carries (more wait for
            the next poll; a packet group is never split). python-engineio's client refuses
            payloads of more than 16 packets, hence the default.
        close_timeout: seconds a graceful close waits for queued packets to go out.
        path: the URL path the server answers on.
        websocket: the standalone server's WebSocket implementation: ``"native"`` (our own
            framing, read by the session's receive task; the default) or
            ``"trio-websocket"``.
        static_files: for the standalone server only: URL paths served as plain files
            (``{"/": "public/index.html", "/app.js": "public/app.js"}``), content type from
            the file name. Anything else outside ``path`` is answered 404.
        http_keepalive_timeout: standalone server: seconds a connection may stay idle, before
            its first request or between two requests, before it is closed (without an
            answer). Waiting for the server (a long-polling GET) is not idleness.
        http_headers_timeout: standalone server: seconds a request head may take to arrive,
            from its first byte; then 408 and the connection is closed.
        http_request_timeout: standalone server: seconds a whole request (head and body) may
            take to arrive, from its first byte, not counting the time the server takes to
            answer; then 408 (if no answer was started) and the connection is closed. Writing
            a response is bounded by the same number of seconds.
        max_connections: standalone server: the most TCP connections served at once; a new
            connection beyond it is closed at once. ``None``: no limit but the process's file
            descriptors (``accept()`` then backs off until some are free).
        http_compression: gzip/deflate of polling responses of at least ``threshold`` bytes
            when the request's ``Accept-Encoding`` allows it (the JS ``httpCompression``):
            True (threshold 1024, level 6), a threshold in bytes, ``{"threshold": ...,
            "level": ...}``, or False.
        per_message_deflate: permessage-deflate on the standalone server's native
            WebSocket (the JS ``perMessageDeflate``), off by default: True, or
            ``{"threshold": 1024, "level": 6, "client_no_context_takeover": True}``
            (see :class:`~trio_sio.protocol.deflate.DeflateOptions`). Clients' compressed
            messages are inflated within ``max_http_buffer_size``.
        allow_eio3: also accept Engine.IO v3 clients (``EIO=3``: socket.io-client 2.x and
            the SDKs of that time), as the JS ``allowEIO3``; off by default, as there.
    """

    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    upgrade_timeout: float = 10.0
    max_http_buffer_size: int = 1_000_000
    transports: Sequence[Transport] = (Transport.POLLING, Transport.WEBSOCKET)
    allow_upgrades: bool = True
    cors_allowed_origins: str | Sequence[str] | None = None
    allow_request: AllowRequest | None = None
    cookie: str | None = None
    max_buffer_bytes: int = 1_000_000
    slow_consumer_grace: float = 10.0
    message_queue_size: int = 64
    max_packets_per_payload: int = 10_000
    max_packets_per_poll: int = 16
    close_timeout: float = 1.0
    path: str = "/engine.io/"
    static_files: Mapping[str, str | os.PathLike[str]] | None = None
    websocket: str = "native"
    http_keepalive_timeout: float = 10.0
    http_headers_timeout: float = 60.0
    http_request_timeout: float = 300.0
    max_connections: int | None = None
    http_compression: bool | int | Mapping[str, int] = True
    per_message_deflate: bool | Mapping[str, Any] = False
    allow_eio3: bool = False

    def __post_init__(self) -> None:
        HttpCompression.from_setting(self.http_compression)  # raises if malformed
        DeflateOptions.from_setting(self.per_message_deflate)
        if self.ping_interval <= 0 or self.ping_timeout <= 0:
            raise ValueError("ping_interval and ping_timeout must be positive")
        if self.max_http_buffer_size <= 0:
            raise ValueError("max_http_buffer_size must be positive")
        if self.max_buffer_bytes <= 0 or self.slow_consumer_grace < 0:
            raise ValueError("max_buffer_bytes must be positive and slow_consumer_grace >= 0")
        if not self.transports:
            raise ValueError("at least one transport is needed")
        if self.websocket not in ("native", "trio-websocket"):
            raise ValueError("websocket must be 'native' or 'trio-websocket'")
        if not self.path.startswith("/"):
            raise ValueError("path must start with '/'")

    def origin_allowed(self, head: RequestHead) -> bool:
        """True when the request's ``Origin`` (if any) may use this server."""
        origin = head.headers.get("origin")
        if origin is None:
            return True
        allowed = self.cors_allowed_origins
        if allowed == "*":
            return True
        if allowed is None:
            host = head.headers.get("host")
            try:
                netloc = urlsplit(origin).netloc
            except ValueError:  # a malformed Origin ("http://[") is no origin of ours
                return False
            return host is not None and netloc == host
        if isinstance(allowed, str):
            return origin == allowed
        return origin in allowed

    def cors_headers(self, head: RequestHead) -> list[tuple[str, str]]:
        """The CORS response headers for a request: empty without an ``Origin`` header or
        for an origin that is not allowed (an error answer never grants it access)."""
        origin = head.headers.get("origin")
        if origin is None or not self.origin_allowed(head):
            return []
        if self.cors_allowed_origins == "*":
            return [("Access-Control-Allow-Origin", "*")]
        return [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
            ("Vary", "Origin"),
        ]


@dataclass(slots=True)
class HttpResponse:
    """An HTTP response to write. ``close`` asks the I/O layer to close the connection after."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    close: bool = False
