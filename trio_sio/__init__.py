"""trio_sio: Socket.IO (protocol v5) and Engine.IO (protocol v4) for Trio."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .protocol.errors import AckTimeoutError as AckTimeoutError
from .protocol.errors import BadNamespaceError as BadNamespaceError
from .protocol.errors import ConnectionClosed as ConnectionClosed
from .protocol.errors import ConnectionRefused as ConnectionRefused
from .protocol.errors import LocalProtocolError as LocalProtocolError
from .protocol.errors import ProtocolError as ProtocolError
from .protocol.errors import RemoteProtocolError as RemoteProtocolError
from .protocol.errors import SocketIOError as SocketIOError

if TYPE_CHECKING:
    from ._emitter import Callback as Callback
    from ._emitter import SocketEmitter as SocketEmitter
    from ._handlers import Ack as Ack
    from .client import Client as Client
    from .client import ClientSocket as ClientSocket
    from .client import ConnectError as ConnectError
    from .client import connect as connect
    from .client import open_client as open_client
    from .frontends.asgi import ASGIApp as ASGIApp
    from .server import BroadcastOperator as BroadcastOperator
    from .server import Handshake as Handshake
    from .server import Namespace as Namespace
    from .server import PacketRefused as PacketRefused
    from .server import RateLimit as RateLimit
    from .server import Server as Server
    from .server import Socket as Socket

# The server (and client) are imported on first use, so that importing the sans-IO layer
# (trio_sio.protocol) does not pull in an event loop.
_LAZY = {
    "Ack": "_handlers",
    "ASGIApp": "frontends.asgi",
    "Callback": "_emitter",
    "SocketEmitter": "_emitter",
    "Client": "client",
    "ClientSocket": "client",
    "ConnectError": "client",
    "connect": "client",
    "open_client": "client",
    "BroadcastOperator": "server",
    "Handshake": "server",
    "Namespace": "server",
    "PacketRefused": "server",
    "RateLimit": "server",
    "Server": "server",
    "Socket": "server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trio_sio' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0.dev0"

__all__ = [
    "Ack",
    "ASGIApp",
    "AckTimeoutError",
    "BadNamespaceError",
    "BroadcastOperator",
    "Callback",
    "Client",
    "ClientSocket",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionRefused",
    "Handshake",
    "Namespace",
    "PacketRefused",
    "RateLimit",
    "Server",
    "Socket",
    "SocketEmitter",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "SocketIOError",
    "connect",
    "open_client",
]
