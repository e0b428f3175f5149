"""Sockets as the Admin UI shows them (its ``SerializedSocket``)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from ..adapters.base import RemoteSocket
from ..protocol.serialize import to_wire
from ..server.socket import Socket

__all__ = ["ADMIN_KEY", "client_id", "serialize", "visible_data"]

#: The key of ``socket.data`` where the instrumentation keeps what other nodes need to show
#: a socket (``clientId``, ``transport``), as the Node server does.
ADMIN_KEY = "_admin"


def client_id(socket: Socket) -> str:
    """A short id of the socket's connection: what groups the sockets of one client.

    The Node server shows the first 12 characters of the Engine.IO session id; that id
    authorises requests on the session, so this shows 12 hex digits of its hash instead.
    """
    sid = socket._connection.engine.sid
    return hashlib.blake2b(sid.encode("ascii"), digest_size=6).hexdigest()


def visible_data(data: Any) -> Any:
    """``socket.data`` without the instrumentation's key, or None if it cannot be sent."""
    if isinstance(data, Mapping) and ADMIN_KEY in data:
        data = {key: value for key, value in data.items() if key != ADMIN_KEY}
    try:
        return to_wire((data,))[0]
    except (TypeError, ValueError):
        return None


def _address(headers: Mapping[str, Any], fallback: Any) -> Any:
    return headers.get("cf-connecting-ip") or headers.get("x-forwarded-for") or fallback


def serialize(socket: Socket | RemoteSocket, nsp: str) -> dict[str, Any]:
    """One socket of namespace ``nsp``, local or on another node."""
    client: str | None
    transport: str | None
    shake = socket.handshake
    headers = dict(shake.headers)
    handshake: dict[str, Any] = {
        "address": _address(headers, shake.address),
        "headers": headers,
        "query": dict(shake.query),
        "issued": shake.issued,
        "secure": shake.secure,
        "time": shake.time,
        "url": shake.url,
        "xdomain": shake.xdomain,
    }
    data = socket.data
    if isinstance(socket, Socket):
        client, transport = client_id(socket), socket.transport
    else:
        admin = data.get(ADMIN_KEY) if isinstance(data, Mapping) else None
        if not isinstance(admin, Mapping):
            admin = {}
        client, transport = admin.get("clientId"), admin.get("transport")
    found: dict[str, Any] = {
        "id": socket.id,
        "clientId": client,
        "transport": transport,
        "nsp": nsp,
        "data": visible_data(data),
        "handshake": handshake,
        "rooms": sorted(socket.rooms),
    }
    return found
