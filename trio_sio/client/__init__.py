"""The Socket.IO client API."""

from __future__ import annotations

from ..engineio._http_client import Connector as Connector
from ..engineio.client import ConnectError as ConnectError
from ._backoff import Backoff as Backoff
from .client import Client as Client
from .client import connect as connect
from .socket import ClientSocket as ClientSocket

__all__ = ["Backoff", "Client", "ClientSocket", "ConnectError", "Connector", "connect"]
