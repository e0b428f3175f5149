"""Engine.IO v4 on Trio: sessions, transports, the client. The front ends that bring requests
to the server are in :mod:`trio_sio.frontends`."""

from __future__ import annotations

from .config import EngineConfig as EngineConfig
from .config import HttpResponse as HttpResponse
from .config import RequestHead as RequestHead
from .server import EngineServer as EngineServer
from .socket import EngineSocket as EngineSocket
from .socket import SessionState as SessionState

__all__ = [
    "EngineConfig",
    "EngineServer",
    "EngineSocket",
    "HttpResponse",
    "RequestHead",
    "SessionState",
]
