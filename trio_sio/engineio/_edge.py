"""The HTTP edge of the Engine.IO server: CORS, the handshake cookie, the client's address.

Decisions only, no I/O: :class:`HttpEdge` reads an :class:`~trio_sio.engineio.config.EngineConfig`
once and answers for each :class:`~trio_sio.engineio.config.RequestHead`. The CORS headers are
those the ``cors`` package of npm writes (the JS server's ``cors`` option uses it).
"""

from __future__ import annotations

import inspect
import ipaddress
import re
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from .config import EngineConfig, HttpResponse, RequestHead

__all__ = ["HttpEdge"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class HttpEdge:
    """CORS, cookie and client-address decisions for one server's settings."""

    __slots__ = (
        "_allowed",
        "_credentials",
        "_exposed",
        "_fixed",
        "_headers",
        "_max_age",
        "_methods",
        "_proxies",
        "cookie",
    )

    def __init__(self, config: EngineConfig) -> None:
        origins = config.cors_allowed_origins
        self._allowed = origins
        credentials = config.cors_credentials
        self._credentials = origins != "*" if credentials is None else credentials
        #: a single fixed origin (or "*") to answer with, not the request's
        self._fixed = origins == "*" and not self._credentials
        self._methods = ",".join(m.upper() for m in config.cors_methods)
        headers = config.cors_allowed_headers
        self._headers = None if headers is None else ",".join(headers)
        self._exposed = ",".join(config.cors_exposed_headers)
        self._max_age = None if config.cors_max_age is None else str(config.cors_max_age)
        self._proxies: tuple[_Network, ...] = config.proxy_networks()
        self.cookie = config.cookie_options()

    # -- CORS -----------------------------------------------------------------------------
    async def origin_allowed(self, head: RequestHead) -> bool:
        """True when the request has no ``Origin`` header or one that may use the server.

        Blocks while an async ``cors_allowed_origins`` function decides.
        """
        origin = head.headers.get("origin")
        if origin is None:
            return True
        allowed = self._allowed
        if allowed is None:
            host = head.headers.get("host")
            try:
                netloc = urlsplit(origin).netloc
            except ValueError:  # a malformed Origin ("http://[") is no origin of ours
                return False
            return host is not None and netloc == host
        if allowed == "*":
            return True
        if callable(allowed) and not isinstance(allowed, re.Pattern):
            verdict = allowed(origin)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            return bool(verdict)
        return _matches(origin, allowed)

    async def cors(self, head: RequestHead) -> list[tuple[str, str]] | None:
        """The CORS headers of a response to ``head``: empty without an ``Origin`` header,
        None when the origin is not allowed (the request is then refused)."""
        origin = head.headers.get("origin")
        if origin is None:
            return []
        if not await self.origin_allowed(head):
            return None
        return self.response_headers(origin)

    def response_headers(self, origin: str) -> list[tuple[str, str]]:
        """The CORS headers of an answer to an allowed ``origin`` (not a preflight)."""
        if self._fixed:
            headers = [("Access-Control-Allow-Origin", "*")]
        else:
            headers = [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        if self._credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        if self._exposed:
            headers.append(("Access-Control-Expose-Headers", self._exposed))
        return headers

    def preflight(self, head: RequestHead, allowed: bool) -> HttpResponse:
        """The answer to an ``OPTIONS`` request, as the ``cors`` package gives it: 204, and
        for an origin not allowed, no ``Access-Control-Allow-Origin`` (the browser then
        refuses the request it asked about)."""
        origin = head.headers.get("origin")
        headers: list[tuple[str, str]] = []
        vary: list[str] = []
        if self._fixed:
            headers.append(("Access-Control-Allow-Origin", "*"))
        else:
            if allowed and origin is not None:
                headers.append(("Access-Control-Allow-Origin", origin))
            vary.append("Origin")
        if self._credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        headers.append(("Access-Control-Allow-Methods", self._methods))
        allow_headers = self._headers
        if allow_headers is None:
            allow_headers = head.headers.get("access-control-request-headers", "")
            vary.append("Access-Control-Request-Headers")
        if allow_headers:
            headers.append(("Access-Control-Allow-Headers", allow_headers))
        if self._max_age is not None:
            headers.append(("Access-Control-Max-Age", self._max_age))
        if self._exposed:
            headers.append(("Access-Control-Expose-Headers", self._exposed))
        if vary:
            headers.append(("Vary", ", ".join(vary)))
        return HttpResponse(204, headers)

    # -- the client's address -------------------------------------------------------------
    def client_address(self, head: RequestHead) -> str | None:
        """The client's IP address: the peer's, or for a peer among ``trusted_proxies``,
        the last address of ``X-Forwarded-For`` that is not a trusted proxy (the first one
        if all are; a malformed entry ends the walk at the address before it)."""
        if head.client is None:
            return None
        peer = head.client[0]
        forwarded = head.headers.get("x-forwarded-for")
        if not self._proxies or not forwarded or not self._trusted(_parse(peer)):
            return peer
        address = peer
        for entry in reversed(forwarded.split(",")):
            hop = entry.strip()
            parsed = _parse(hop)
            if parsed is None:
                break
            address = hop
            if not self._trusted(parsed):
                break
        return address

    def _trusted(self, address: _Address | None) -> bool:
        if address is None:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._proxies)


def _matches(
    origin: str,
    allowed: str | re.Pattern[str] | Sequence[str | re.Pattern[str]] | Callable[..., object],
) -> bool:
    if isinstance(allowed, str):
        return origin == allowed
    if isinstance(allowed, re.Pattern):
        return allowed.fullmatch(origin) is not None
    if isinstance(allowed, Sequence):
        return any(_matches(origin, one) for one in allowed)
    return False


def _parse(text: str) -> _Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
