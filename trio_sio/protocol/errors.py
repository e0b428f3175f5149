"""The error types shared by every layer of trio_sio.

The tree is small on purpose::

    SocketIOError
    ├── ProtocolError            (abstract: never raised directly)
    │   ├── LocalProtocolError   (we were asked to do something the protocol forbids)
    │   └── RemoteProtocolError  (the peer sent something the protocol forbids)
    └── ConnectionClosed         (the connection is gone; carries the reason)

None of these names shadow a builtin, so ``except ConnectionError`` in user code still means
what Python says it means.
"""

from __future__ import annotations

__all__ = [
    "AckTimeoutError",
    "BadNamespaceError",
    "ConnectionClosed",
    "ConnectionRefused",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "SocketIOError",
]


class SocketIOError(Exception):
    """Base class of every error trio_sio raises on purpose."""


class ProtocolError(SocketIOError):
    """A protocol rule was broken. Abstract: catch it, raise one of its subclasses.

    Attributes:
        error_status_hint: the HTTP status a server should answer with when this error
            comes from a request (400 unless the rule says otherwise, e.g. 413).
    """

    def __init__(self, msg: str, *, error_status_hint: int = 400) -> None:
        if type(self) is ProtocolError:
            raise TypeError("ProtocolError is abstract; raise a subclass")
        super().__init__(msg)
        self.error_status_hint = error_status_hint


class LocalProtocolError(ProtocolError):
    """Our own side tried to send or do something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes or packets the protocol forbids.

    Decoding functions raise only this for malformed input, so one ``except`` clause covers
    every way a peer can misbehave.
    """


class ConnectionClosed(SocketIOError):
    """The connection is closed; ``reason`` says why (a JS-compatible reason string)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AckTimeoutError(SocketIOError):
    """The peer did not acknowledge an emit in time.

    Attributes:
        replies: for a broadcast, the replies that did arrive in time (one per client).
    """

    def __init__(
        self, message: str = "operation has timed out", replies: list[object] | None = None
    ) -> None:
        super().__init__(message)
        self.replies = replies if replies is not None else []


class ConnectionRefused(SocketIOError):
    """Raised by connection middleware to refuse a namespace connection.

    The client gets a CONNECT_ERROR packet ``{"message": message, "data": data}``.
    """

    def __init__(self, message: str = "Connection refused", data: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class BadNamespaceError(SocketIOError):
    """A namespace is unknown, or not connected."""
