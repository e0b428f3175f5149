"""The client's options, as one immutable value shared by its parts."""

from __future__ import annotations

import inspect
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from ..engineio._http_client import Connector
from ..engineio._proxy import ProxySetting
from ..protocol.serialize import to_wire

__all__ = ["MANAGER_EVENTS", "REASONS", "Auth", "ClientOptions", "wire_auth"]

#: The CONNECT payload: a mapping, or a function (sync or async) returning one.
Auth = Mapping[str, Any] | Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]


#: The manager events, as socket.io-client's ``Manager`` emits them.
MANAGER_EVENTS = frozenset(
    {
        "open",
        "close",
        "error",
        "ping",
        "packet",
        "reconnect_attempt",
        "reconnect",
        "reconnect_error",
        "reconnect_failed",
    }
)

#: Engine.IO close reasons → the client's disconnect reasons.
REASONS = {
    "forced close": "io client disconnect",
    "transport close": "transport close",
    "transport error": "transport error",
    "ping timeout": "ping timeout",
    "parse error": "parse error",
}


async def wire_auth(auth: Auth | None) -> dict[str, Any] | None:
    """The CONNECT payload, evaluated now (a function is called), converted as emits are (a
    ``datetime`` in it becomes an ISO string, ...).

    Raises:
        TypeError: it holds a value that cannot be sent.

    Cancellation: as the auth function's, if it is async.
    """
    if auth is None:
        await trio.lowlevel.checkpoint()
        return None
    value: Any = auth
    if callable(auth):
        value = auth()
        if inspect.isawaitable(value):
            value = await value
    wire = to_wire([dict(value)])[0]
    assert isinstance(wire, dict)
    return wire


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOptions:
    """What :class:`~trio_sio.Client` was given (see its documentation for each)."""

    url: str
    namespaces: tuple[str, ...]
    auth: Auth | None
    transports: tuple[str, ...]
    path: str
    headers: Mapping[str, str] | None
    query: Mapping[str, str] | None
    ssl_context: ssl.SSLContext | None
    reconnection: bool
    reconnection_attempts: float
    reconnection_delay: float
    reconnection_delay_max: float
    randomization_factor: float
    connect_timeout: float
    retries: int
    ack_timeout: float | None
    buffer_size: int
    event_queue_size: int
    max_concurrent_handlers: int
    ordered_handlers: bool
    max_pending_acks: int
    connector: Connector | None
    proxy: ProxySetting
    cookies: bool
    try_all_transports: bool
    remember_upgrade: bool
    per_message_deflate: bool

    def __post_init__(self) -> None:
        if not self.namespaces:
            raise ValueError("at least one namespace is needed")
        if self.max_concurrent_handlers < 1:
            raise ValueError("max_concurrent_handlers must be at least 1")
