"""The Socket.IO server API."""

from __future__ import annotations

from .._emitter import SocketEmitter as SocketEmitter
from ._listeners import PacketRefused as PacketRefused
from ._listeners import RateLimit as RateLimit
from .broadcast import BroadcastOperator as BroadcastOperator
from .namespace import Namespace as Namespace
from .namespace import ParentNamespace as ParentNamespace
from .server import Server as Server
from .socket import Handshake as Handshake
from .socket import Socket as Socket

__all__ = [
    "BroadcastOperator",
    "Handshake",
    "Namespace",
    "PacketRefused",
    "ParentNamespace",
    "RateLimit",
    "Server",
    "Socket",
    "SocketEmitter",
]
