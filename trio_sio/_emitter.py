"""Emit flags (``timeout``, ``volatile``, ``compress``) as a small immutable view, shared by
both sides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, final

from .protocol.serialize import to_wire
from .protocol.socketio import RESERVED_EVENTS

__all__ = ["Callback", "SocketEmitter", "event_data"]

#: The ``callback=`` of an emit: called (sync) or awaited (async) with the peer's ack
#: arguments, ``callback(*args)``; after ``timeout(s)``, ``callback(err, *args)`` with ``err``
#: None, or an :class:`~trio_sio.AckTimeoutError` (or a
#: :class:`~trio_sio.ConnectionClosed`). Its return value, awaited if awaitable, is ignored.
Callback: TypeAlias = Callable[..., object]


def event_data(event: str, args: tuple[Any, ...]) -> list[Any]:
    """The data of an EVENT packet for ``emit(event, *args)``, checked where the call is.

    Raises:
        TypeError: the event name is not a str, or an argument cannot be sent.
        ValueError: the event name is reserved (``"connect"``, ``"disconnect"``, ...).
    """
    if not isinstance(event, str):
        raise TypeError(f"an event name must be a str, not {type(event).__name__}")
    if event in RESERVED_EVENTS:
        raise ValueError(f"{event!r} is a reserved event name")
    return to_wire(args, event=event)


class _EmitsEvents(Protocol):
    async def _emit(
        self,
        event: str,
        args: tuple[Any, ...],
        callback: Callback | None,
        timeout: float | None,
        volatile: bool,
        *,
        compress: bool = True,
    ) -> None: ...

    async def _emit_with_ack(
        self,
        event: str,
        args: tuple[Any, ...],
        timeout: float | None,
        volatile: bool,
        compress: bool = True,
    ) -> Any: ...


@final
@dataclass(frozen=True, slots=True)
class SocketEmitter:
    """A socket with emit flags set: what ``socket.timeout(s)``, ``socket.volatile`` and
    ``socket.compress(False)`` return (on the server's :class:`~trio_sio.Socket`, and on a
    :class:`~trio_sio.Client` or :class:`~trio_sio.ClientSocket`). The flags combine:
    ``await socket.volatile.timeout(2).emit("x", callback=cb)``.

    Attributes:
        socket: the socket it emits on.
        timeout_s: the ack timeout in seconds (None: none).
        is_volatile: whether emits are volatile.
        is_compressed: whether emits may be compressed (the server compresses what it
            sends when compression is on; the client never compresses).
    """

    socket: _EmitsEvents
    timeout_s: float | None = None
    is_volatile: bool = False
    is_compressed: bool = True

    @property
    def volatile(self) -> SocketEmitter:
        """The same, with the volatile flag."""
        return SocketEmitter(self.socket, self.timeout_s, True, self.is_compressed)

    def timeout(self, seconds: float) -> SocketEmitter:
        """The same, with an ack timeout."""
        return SocketEmitter(self.socket, seconds, self.is_volatile, self.is_compressed)

    def compress(self, compress: bool) -> SocketEmitter:
        """The same, with compression allowed (True, the default) or not."""
        return SocketEmitter(self.socket, self.timeout_s, self.is_volatile, compress)

    async def emit(self, event: str, *args: Any, callback: Callback | None = None) -> None:
        """Send an event (see the socket's ``emit``)."""
        await self.socket._emit(
            event, args, callback, self.timeout_s, self.is_volatile, compress=self.is_compressed
        )

    async def emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> Any:
        """Send an event and wait for its ack (see the socket's ``emit_with_ack``).

        Args:
            timeout: seconds to wait for the ack (default: the one set with :meth:`timeout`).

        Returns:
            The ack's argument as the peer sent it (None if none, a tuple if several): any
            deserialized value, hence ``Any``.
        """
        if timeout is None:
            timeout = self.timeout_s
        return await self.socket._emit_with_ack(
            event, args, timeout, self.is_volatile, self.is_compressed
        )
