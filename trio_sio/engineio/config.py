"""Configuration of an Engine.IO server, and the view of an HTTP request it decides on."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..protocol.deflate import DeflateOptions
from ..protocol.engineio import Transport
from ._compression import HttpCompression

__all__ = [
    "AllowRequest",
    "CookieOptions",
    "EngineConfig",
    "HttpResponse",
    "OriginSetting",
    "RequestHead",
]


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


#: ``allow_request(head)``: True accepts the handshake; False refuses it with 403 and
#: ``{"code": 4, "message": "Forbidden"}``; a string refuses it with that string as the
#: message. It may be sync or async.
AllowRequest = Callable[[RequestHead], Awaitable[bool | str] | bool | str]

#: The origins CORS allows: ``"*"``, one origin, a compiled regex (the whole origin must
#: match), a sequence of these, or ``fn(origin) -> bool`` (sync or async).
OriginSetting = (
    str
    | re.Pattern[str]
    | Sequence[str | re.Pattern[str]]
    | Callable[[str], Awaitable[bool] | bool]
)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ATTRIBUTE = re.compile(r"[\x21-\x3a\x3c-\x7e]+")  # visible ASCII but ";"


@dataclass(frozen=True, slots=True)
class CookieOptions:
    """The cookie the handshake response sets, holding the session id (for sticky sessions
    behind a load balancer). The defaults are those of the JS server's ``cookie: true``.

    Attributes:
        name: the cookie's name.
        path: its ``Path`` (None: no ``Path`` attribute).
        http_only: ``HttpOnly`` (the page's scripts cannot read it).
        same_site: ``"Strict"``, ``"Lax"``, ``"None"`` or None (no attribute).
            ``"None"`` needs ``secure=True``: browsers drop the cookie otherwise.
        secure: ``Secure`` (sent over HTTPS only).
        domain: its ``Domain``, if any.
        max_age: its ``Max-Age`` in seconds (None: a session cookie).
    """

    name: str = "io"
    path: str | None = "/"
    http_only: bool = True
    same_site: Literal["Strict", "Lax", "None"] | None = "Lax"
    secure: bool = False
    domain: str | None = None
    max_age: int | None = None

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.name):
            raise ValueError(f"invalid cookie name: {self.name!r}")
        for value in (self.path, self.domain):
            if value is not None and not _ATTRIBUTE.fullmatch(value):
                raise ValueError(f"invalid cookie attribute: {value!r}")
        if self.same_site not in ("Strict", "Lax", "None", None):
            raise ValueError("same_site must be 'Strict', 'Lax', 'None' or None")
        if self.same_site == "None" and not self.secure:
            raise ValueError("same_site='None' needs secure=True (browsers drop it otherwise)")
        if self.max_age is not None and self.max_age < 0:
            raise ValueError("max_age must be >= 0")

    def header(self, value: str) -> str:
        """The ``Set-Cookie`` header's value for a cookie holding ``value`` (attributes in
        the order the JS server writes them)."""
        parts = [f"{self.name}={value}"]
        if self.max_age is not None:
            parts.append(f"Max-Age={self.max_age}")
        if self.domain is not None:
            parts.append(f"Domain={self.domain}")
        if self.path is not None:
            parts.append(f"Path={self.path}")
        if self.http_only:
            parts.append("HttpOnly")
        if self.secure:
            parts.append("Secure")
        if self.same_site is not None:
            parts.append(f"SameSite={self.same_site}")
        return "; ".join(parts)


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
        cors_allowed_origins: ``None`` allows the same origin only; ``"*"`` any origin;
            otherwise one origin, a compiled regex (``re.fullmatch``), a sequence of these,
            or a function ``fn(origin) -> bool`` (sync or async), asked on every request
            that has an ``Origin`` header. Requests without one (non-browser clients) are
            always allowed; a request from an origin not allowed is refused with 403.
        cors_credentials: send ``Access-Control-Allow-Credentials: true``. None (the
            default): yes unless ``cors_allowed_origins`` is ``"*"``. With ``"*"`` and
            credentials, the request's origin is sent back (browsers refuse ``*`` with
            credentials).
        cors_allowed_headers: the request headers a preflight allows; None sends back
            those the preflight asks for (as the ``cors`` package of npm does).
        cors_exposed_headers: the response headers the page's scripts may read.
        cors_max_age: seconds a browser may cache a preflight's answer (None: no
            ``Access-Control-Max-Age``, the browser's default).
        cors_methods: the methods a preflight allows.
        allow_request: an optional hook called with every handshake request (see
            :data:`AllowRequest`): False refuses it with 403, a string refuses it with
            that message.
        cookie: when set, the handshake response sets a cookie holding the sid: a name (with
            the other attributes as :class:`CookieOptions` has them), True (the cookie
            ``io``), or a :class:`CookieOptions`.
        trusted_proxies: addresses or networks (``"10.0.0.0/8"``) of the reverse proxies in
            front of the server. A request from one of them has its client address taken
            from ``X-Forwarded-For`` (the last address there that is not itself a trusted
            proxy); from anyone else the header is ignored.
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
    cors_allowed_origins: OriginSetting | None = None
    cors_credentials: bool | None = None
    cors_allowed_headers: Sequence[str] | None = None
    cors_exposed_headers: Sequence[str] = ()
    cors_max_age: int | None = None
    cors_methods: Sequence[str] = ("GET", "HEAD", "PUT", "PATCH", "POST", "DELETE")
    allow_request: AllowRequest | None = None
    cookie: str | bool | CookieOptions | None = None
    trusted_proxies: Sequence[str] = ()
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

        if self.cors_max_age is not None and self.cors_max_age < 0:
            raise ValueError("cors_max_age must be >= 0")
        if isinstance(self.cors_allowed_headers, str) or isinstance(self.cors_exposed_headers, str):
            raise ValueError("cors_allowed_headers and cors_exposed_headers are lists of names")
        self.cookie_options()  # raises if malformed
        self.proxy_networks()

    def cookie_options(self) -> CookieOptions | None:
        """The handshake cookie's settings (None: no cookie)."""
        cookie = self.cookie
        if cookie is None or cookie is False:
            return None
        if cookie is True:
            return CookieOptions()
        if isinstance(cookie, str):
            return CookieOptions(name=cookie)
        return cookie

    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``trusted_proxies`` as networks. Raises ValueError for a malformed one."""
        if isinstance(self.trusted_proxies, str):
            raise ValueError("trusted_proxies is a list of addresses or networks")
        return tuple(ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies)


@dataclass(slots=True)
class HttpResponse:
    """An HTTP response to write. ``close`` asks the I/O layer to close the connection after."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    close: bool = False
