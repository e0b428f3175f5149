"""Engine.IO v4 on Trio: sessions, transports, the client. The front ends that bring requests
to the server are in :mod:`trio_sio.frontends`."""

from __future__ import annotations

from .config import AllowRequest as AllowRequest
from .config import CookieOptions as CookieOptions
from .config import EngineConfig as EngineConfig
from .config import HttpResponse as HttpResponse
from .config import RequestHead as RequestHead
from .server import EngineConnectionError as EngineConnectionError
from .server import EngineServer as EngineServer
from .server import HeadersHook as HeadersHook
from .socket import EngineSocket as EngineSocket
from .socket import Reader as Reader
from .socket import SessionHandler as SessionHandler
from .socket import SessionState as SessionState

__all__ = [
    "AllowRequest",
    "CookieOptions",
    "EngineConfig",
    "EngineConnectionError",
    "EngineServer",
    "EngineSocket",
    "HeadersHook",
    "HttpResponse",
    "Reader",
    "RequestHead",
    "SessionHandler",
    "SessionState",
]
