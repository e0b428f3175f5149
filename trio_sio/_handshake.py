"""The handshake of a socket: one shape for the sockets of this node and of other nodes.

The server builds it when a client connects (:class:`trio_sio.Socket`'s ``handshake``); a
multi-node adapter carries it between nodes in the JS field names (:func:`handshake_to_wire`,
:func:`handshake_from_wire`), so that ``fetch_sockets()`` gives the same typed value for a
local socket and for a :class:`~trio_sio.adapters.base.RemoteSocket`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Handshake", "handshake_from_wire", "handshake_to_wire"]


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the client sent when it connected.

    Attributes:
        headers: HTTP headers of the Engine.IO handshake request (lower-case names).
        query: its query parameters.
        address: the client's IP address, when known (behind a proxy listed in
            ``trusted_proxies``, the one ``X-Forwarded-For`` gives).
        time: when the handshake happened, as JavaScript's ``Date.toString()`` writes it
            (``"Mon Nov 30 2026 05:26:47 GMT+0000 (Coordinated Universal Time)"``, UTC),
            like the JS server's.
        issued: the same, in milliseconds since the epoch.
        url: the request path with its query string.
        auth: the ``auth`` payload of the namespace CONNECT packet (``{}`` if none).
        secure: whether the connection uses TLS (as far as the server can tell).
        xdomain: whether the request came with an ``Origin`` header.
    """

    headers: Mapping[str, str]
    query: Mapping[str, str]
    address: str | None
    time: str
    issued: int
    url: str
    auth: dict[str, Any] = field(default_factory=dict)
    secure: bool = False
    xdomain: bool = False


def handshake_to_wire(handshake: Handshake) -> dict[str, Any]:
    """The handshake as a JS node describes its sockets' to other nodes."""
    return {
        "headers": dict(handshake.headers),
        "time": handshake.time,
        "address": handshake.address,
        "xdomain": handshake.xdomain,
        "secure": handshake.secure,
        "issued": handshake.issued,
        "url": handshake.url,
        "query": dict(handshake.query),
        "auth": handshake.auth,
    }


def handshake_from_wire(value: Any) -> Handshake:
    """The handshake another node (trio_sio or JS) described; what is missing or of the
    wrong type takes the empty value of its field, so any input gives a :class:`Handshake`."""
    wire: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
    issued = wire.get("issued")
    address = wire.get("address")
    auth = wire.get("auth")
    return Handshake(
        headers=_strings(wire.get("headers")),
        query=_strings(wire.get("query")),
        address=address if isinstance(address, str) else None,
        time=_str(wire.get("time")),
        issued=int(issued) if isinstance(issued, int | float) and math.isfinite(issued) else 0,
        url=_str(wire.get("url")),
        auth=dict(auth) if isinstance(auth, Mapping) else {},
        secure=wire.get("secure") is True,
        xdomain=wire.get("xdomain") is True,
    )


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> dict[str, str]:
    """Headers or query parameters: a repeated one (a list in JS) joined as Node joins it."""
    if not isinstance(value, Mapping):
        return {}
    found: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, list):
            found[str(key)] = ", ".join(str(part) for part in item)
        elif item is not None:
            found[str(key)] = str(item)
    return found
