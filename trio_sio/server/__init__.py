"""The Socket.IO server API."""

from __future__ import annotations

from .broadcast import BroadcastOperator as BroadcastOperator
from .namespace import Namespace as Namespace
from .namespace import ParentNamespace as ParentNamespace
from .server import Server as Server
from .socket import Handshake as Handshake
from .socket import Socket as Socket
from .socket import SocketEmitter as SocketEmitter

__all__ = [
    "BroadcastOperator",
    "Handshake",
    "Namespace",
    "ParentNamespace",
    "Server",
    "Socket",
    "SocketEmitter",
]
