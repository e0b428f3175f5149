"""A server socket's own listeners and packet middleware (``socket.on``, ``socket.use``,
``socket.on_any``, ...), the middleware chain, and the :class:`RateLimit` helper.

A socket gets its :class:`SocketListeners` at its first ``on``/``once``/``use``/``on_any``...
and holds ``None`` before: a socket that never registers anything pays one attribute test
per event.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, final

import trio

from .._handlers import Handler

if TYPE_CHECKING:
    from .socket import Socket

__all__ = ["PacketRefused", "RateLimit", "SocketListeners", "run_middlewares"]

#: Names a socket's own ``on`` takes that are not events: ``"error"`` gets ``(err)`` (a
#: packet refused by a middleware), ``"disconnecting"`` and ``"disconnect"`` get ``(reason)``.
SOCKET_LIFECYCLE = frozenset({"error", "disconnecting", "disconnect"})

#: A packet middleware's verdict: None (pass as is), new arguments, or an error (refuse).
Verdict = Sequence[Any] | BaseException | None


class PacketRefused(Exception):
    """A packet middleware refused an event (any exception refuses; this one is at hand).

    Attributes:
        data: free for the application, e.g. what an ``error`` listener tells the client.
    """

    def __init__(self, message: str = "packet refused", data: Any = None) -> None:
        super().__init__(message)
        self.data = data


class Listener:
    """One listener of a socket's event: its handler, and whether it runs once only."""

    __slots__ = ("handler", "once")

    def __init__(self, fn: Callable[..., Any], once: bool) -> None:
        self.handler = Handler(fn)
        self.once = once


class SocketListeners:
    """What one socket registered for itself (made at its first registration)."""

    __slots__ = ("counted", "events", "incoming", "middlewares", "outgoing")

    def __init__(self) -> None:
        #: counted in the namespace's number of sockets with outgoing listeners
        self.counted = False
        self.events: dict[str, list[Listener]] = {}
        self.incoming: list[Handler] = []
        self.outgoing: list[Handler] = []
        self.middlewares: list[Handler] = []

    def add(self, event: str, fn: Callable[..., Any], once: bool) -> None:
        self.events.setdefault(event, []).append(Listener(fn, once))

    def remove(self, event: str | None, fn: Callable[..., Any] | None) -> None:
        if event is None:
            self.events.clear()
            return
        listeners = self.events.get(event)
        if listeners is None:
            return
        if fn is None:
            del self.events[event]
            return
        for i, listener in enumerate(listeners):
            if listener.handler.fn == fn:
                del listeners[i]
                break
        if not listeners:
            del self.events[event]

    def take(self, event: str) -> list[Handler]:
        """The handlers to run for one ``event``; ``once`` listeners are removed first, so
        a listener added while they run sees the next event only."""
        listeners = self.events.get(event)
        if not listeners:
            return []
        handlers = [listener.handler for listener in listeners]
        if any(listener.once for listener in listeners):
            kept = [listener for listener in listeners if not listener.once]
            if kept:
                self.events[event] = kept
            else:
                del self.events[event]
        return handlers

    def functions(self, event: str) -> list[Callable[..., Any]]:
        return [listener.handler.fn for listener in self.events.get(event, ())]


def remove_handler(handlers: list[Handler], fn: Callable[..., Any] | None) -> None:
    """Remove ``fn`` (its first registration) from ``handlers`` in place, or every one if
    ``fn`` is None (in place: child namespaces share their parent's lists)."""
    if fn is None:
        handlers.clear()
        return
    for i, handler in enumerate(handlers):
        if handler.fn == fn:
            del handlers[i]
            return


async def run_middlewares(
    chain: Sequence[Handler], leading: tuple[Any, ...], event: str, args: list[Any]
) -> list[Any]:
    """Pass ``event`` and ``args`` through each middleware of ``chain`` in order, called as
    ``middleware(*leading, event, args)``; each may return None (pass), new arguments
    (a list or tuple, passed on to the next), or an exception (refuse), or raise.

    Raises:
        Exception: the refusal (raised or returned by a middleware).
    """
    for middleware in chain:
        verdict = await middleware(*leading, event, args)
        if verdict is None:
            continue
        if isinstance(verdict, BaseException):
            raise verdict
        if isinstance(verdict, (list, tuple)):
            args = list(verdict)
            continue
        raise TypeError(
            f"a packet middleware returns None, a list or tuple of arguments, or an"
            f" exception; {middleware.fn!r} returned {type(verdict).__name__}"
        )
    return args


@final
class RateLimit:
    """A token-bucket rate limit per socket, as a namespace-wide packet middleware::

        sio.use_packet(trio_sio.RateLimit(rate=5, burst=10))

    Each socket starts with ``burst`` tokens; an event takes one, and tokens come back at
    ``rate`` per second up to ``burst``. An event that finds no token is refused with a
    :class:`PacketRefused` (``"rate limit exceeded"``), which reaches the socket's
    ``error`` listeners. Time is Trio's clock (virtual under ``MockClock``).

    Args:
        rate: tokens per second.
        burst: the bucket's size (at least 1).
        events: limit only these event names (default: every event).
    """

    __slots__ = ("_buckets", "burst", "events", "rate")

    def __init__(
        self, rate: float, burst: int = 1, *, events: Collection[str] | None = None
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a RateLimit needs rate > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = burst
        self.events = None if events is None else frozenset(events)
        # socket → (tokens, when counted); gone with the socket.
        self._buckets: weakref.WeakKeyDictionary[Socket, tuple[float, float]] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, socket: Socket, event: str, args: list[Any]) -> PacketRefused | None:
        """Take a token for ``socket``: None if there was one, else the refusal."""
        if self.events is not None and event not in self.events:
            return None
        now = trio.current_time()
        tokens, then = self._buckets.get(socket, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[socket] = (tokens, now)
            return PacketRefused("rate limit exceeded", {"event": event})
        self._buckets[socket] = (tokens - 1.0, now)
        return None
