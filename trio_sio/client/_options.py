"""The client's options, as one immutable value shared by its parts."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..engineio._http_client import Connector
from ..engineio._proxy import ProxySetting

__all__ = ["Auth", "ClientOptions"]

#: The CONNECT payload: a mapping, or a function (sync or async) returning one.
Auth = Mapping[str, Any] | Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]


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
