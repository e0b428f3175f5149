"""trio_sio: Socket.IO (protocol v5) and Engine.IO (protocol v4) for Trio."""

from __future__ import annotations

from .protocol.errors import ConnectionClosed as ConnectionClosed
from .protocol.errors import LocalProtocolError as LocalProtocolError
from .protocol.errors import ProtocolError as ProtocolError
from .protocol.errors import RemoteProtocolError as RemoteProtocolError
from .protocol.errors import SocketIOError as SocketIOError

__version__ = "0.1.0.dev0"

__all__ = [
    "ConnectionClosed",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "SocketIOError",
]
