"""HTTP proxies for the client: a tunnel through ``CONNECT``, for polling and WebSocket alike.

Every connection of the client (the parked GET, the POSTs, the WebSocket) goes through the
proxy as a ``CONNECT host:port`` tunnel; TLS to the server, when the URL is https/wss, runs
inside the tunnel, so the proxy never sees the traffic. Which proxy, if any:

- ``proxy="http://[user:password@]host:port"``: that one (credentials as Basic
  ``Proxy-Authorization``);
- ``proxy=None`` (the default): the environment, as curl and requests read it:
  ``HTTPS_PROXY`` for https/wss URLs, ``HTTP_PROXY`` for http/ws ones (lower-case names too),
  unless the host matches ``NO_PROXY``;
- ``proxy=False``: never.
"""

from __future__ import annotations

import base64
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Final

import h11
import trio

from ..protocol.errors import SocketIOError

__all__ = ["Proxy", "ProxyError", "ProxySetting", "open_tunnel", "resolve_proxy"]

#: The largest proxy answer to a CONNECT accepted.
_MAX_REPLY: Final = 16 * 1024

ProxySetting = str | bool | None


class ProxyError(SocketIOError):
    """The proxy refused the tunnel, or its answer was not HTTP."""


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: where it is and the ``Proxy-Authorization`` to send, if any."""

    host: str
    port: int
    authorization: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Proxy:
        """Parse ``http://[user:password@]host[:port]`` (port 80 by default; a bare
        ``host:port`` is taken as http).

        Raises:
            ValueError: not an http proxy URL.
        """
        if "://" not in url:
            url = "http://" + url
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"proxy must be an http://host:port URL, not {url!r}")
        authorization = None
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            authorization = f"Basic {token}"
        return cls(parts.hostname, parts.port or 80, authorization)


def resolve_proxy(setting: ProxySetting, host: str, *, secure: bool) -> Proxy | None:
    """The proxy for a server at ``host``, given the client's ``proxy`` option.

    Raises:
        ValueError: the option, or the environment variable used, is not an http proxy URL.
    """
    if setting is False:
        return None
    if isinstance(setting, str):
        return Proxy.from_url(setting)
    if setting is True:
        raise ValueError("proxy=True is not a setting: give a URL, None or False")
    proxies = urllib.request.getproxies_environment()
    url = proxies.get("https" if secure else "http")
    if not url or _bypassed(host, proxies.get("no", "")):
        return None
    return Proxy.from_url(url)


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` (comma-separated host names or domain suffixes, ``*`` for all;
    a ``:port`` is ignored) names ``host``."""
    host = host.lower().strip("[]")
    for item in no_proxy.split(","):
        name = item.strip().lower()
        if name == "*":
            return True
        if name.count(":") == 1:  # name:port (an IPv6 literal has more colons)
            name = name.split(":", 1)[0]
        name = name.strip("[]").lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


async def open_tunnel(proxy: Proxy, host: str, port: int) -> trio.abc.Stream:
    """Connect to ``proxy`` and ask it for a tunnel to ``host:port``.

    Returns:
        The TCP stream, now a byte pipe to the server.

    Raises:
        ProxyError: the proxy answered with an error status, or not in HTTP.
        OSError: the proxy cannot be reached.

    Cancellation: safe; a cancelled attempt leaves nothing open.
    """
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    stream = await trio.open_tcp_stream(proxy.host, proxy.port)
    try:
        conn = h11.Connection(h11.CLIENT)
        headers = [("Host", authority)]
        if proxy.authorization is not None:
            headers.append(("Proxy-Authorization", proxy.authorization))
        request = conn.send(h11.Request(method="CONNECT", target=authority, headers=headers))
        end = conn.send(h11.EndOfMessage())
        assert request is not None and end is not None
        await stream.send_all(request + end)
        received = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(4096)
                received += len(data)
                if received > _MAX_REPLY:
                    raise ProxyError("the proxy's answer to CONNECT is too long")
                conn.receive_data(data)  # b"" (EOF) makes h11 report the error
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                if not 200 <= event.status_code < 300:
                    reason = event.reason.decode("latin-1", "replace")
                    raise ProxyError(
                        f"proxy {proxy.host}:{proxy.port} refused CONNECT {authority}: "
                        f"HTTP {event.status_code} {reason}"
                    )
                break
            raise ProxyError(f"unexpected answer from the proxy: {event!r}")
        leftover, _closed = conn.trailing_data
        if leftover:
            raise ProxyError("the proxy sent data before the tunnel was used")
    except h11.RemoteProtocolError as exc:
        await trio.aclose_forcefully(stream)
        raise ProxyError(f"the proxy's answer to CONNECT is not HTTP: {exc}") from exc
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream
