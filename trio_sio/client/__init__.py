"""The Socket.IO client API."""

from __future__ import annotations

from ..engineio._cookies import CookieJar as CookieJar
from ..engineio._http_client import Connector as Connector
from ..engineio.client import ConnectError as ConnectError
from ._backoff import Backoff as Backoff
from ._manager import Manager as Manager
from .client import Client as Client
from .client import connect as connect
from .client import open_client as open_client
from .socket import ClientSocket as ClientSocket

__all__ = [
    "Backoff",
    "Client",
    "ClientSocket",
    "ConnectError",
    "Connector",
    "CookieJar",
    "Manager",
    "connect",
    "open_client",
]
