"""Event handlers, normalised once at registration: sync or async, any arity, and the
:class:`Ack` a handler may take to acknowledge on its own terms; and how a received event's
handler is run and answered (:func:`run_event_handler`), the same on the server and on the
client."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol, final

import trio

from .protocol.errors import ConnectionClosed

__all__ = ["Ack", "AckRoute", "Handler", "ack_args", "run_event_handler"]

#: Sends an ack's arguments (already checked by :func:`ack_args`).
AckSender = Callable[[tuple[Any, ...]], Awaitable[None]]


@final
class Ack:
    """The acknowledgement of one received event, for handlers that take it.

    A handler that declares a keyword-only parameter named ``ack`` gets one of these, and its
    return value is then *not* sent as the ack. It may call the ack once, now or later and from
    any task (as JS code calls the last-argument callback), or never (declining, as a JS
    listener that does not call its callback)::

        @sio.on("job")
        async def job(socket, spec, *, ack):
            socket.start_soon(run_job, spec, ack)      # acknowledged when the job ends

    Attributes:
        requested: whether the peer asked for an ack. When it did not, calling the ack does
            nothing.
    """

    __slots__ = ("_sender", "_used", "requested")

    def __init__(self, sender: AckSender | None) -> None:
        self._sender = sender
        self.requested = sender is not None
        self._used = False

    @property
    def sent(self) -> bool:
        """Whether the ack was called already."""
        return self._used

    async def __call__(self, *args: Any) -> None:
        """Send the ack with these arguments (serialization rules as for emits).

        Raises:
            RuntimeError: the ack was already sent.
            TypeError: an argument cannot be sent (the ack stays unsent and may be retried).
            ConnectionClosed: never; an ack for a socket that is gone is dropped silently,
                as the JS server drops it.

        Blocks: while the connection's send queue is full.

        Cancellation: if cancelled before the ack is queued, it is not sent and may be called
        again.
        """
        if self._used:
            raise RuntimeError("this event was acknowledged already")
        if self._sender is None:
            await trio.lowlevel.checkpoint()
            return
        self._used = True
        try:
            await self._sender(args)
        except BaseException:
            self._used = False
            raise


class Handler:
    """A user callable, with the number of positional arguments it accepts.

    Extra arguments sent by the peer are dropped (as a JS listener ignores them); a handler
    that takes ``*args`` gets them all. Sync handlers run in the calling task. A handler with
    a keyword-only ``ack`` parameter (:attr:`takes_ack`) is given an :class:`Ack`.
    """

    __slots__ = ("fn", "max_args", "takes_ack")

    def __init__(self, fn: Callable[..., Any]) -> None:
        if not callable(fn):
            raise TypeError(f"a handler must be callable, not {type(fn).__name__}")
        self.fn = fn
        self.max_args: int | None
        self.max_args, self.takes_ack = _inspect(fn)

    async def __call__(self, *args: Any, ack: Ack | None = None) -> Any:
        if self.max_args is not None and len(args) > self.max_args:
            args = args[: self.max_args]
        if self.takes_ack:
            result = self.fn(*args, ack=ack if ack is not None else Ack(None))
        else:
            result = self.fn(*args)
        if inspect.isawaitable(result):
            result = await result
        return result


def _inspect(fn: Callable[..., Any]) -> tuple[int | None, bool]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None, False
    count: int | None = 0
    takes_ack = False
    for param in signature.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            count = None
        elif param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            if count is not None:
                count += 1
        elif param.kind is param.KEYWORD_ONLY and param.name == "ack":
            takes_ack = True
    return count, takes_ack


def ack_args(result: Any) -> tuple[Any, ...]:
    """The ack arguments for a handler's return value: None → none, a tuple → several."""
    if result is None:
        return ()
    if isinstance(result, tuple):
        return result
    return (result,)


class AckRoute(Protocol):
    """Where the acks of received events go: a server socket, or a client namespace
    connection."""

    async def _send_ack(self, ack_id: int, args: tuple[Any, ...]) -> None:
        """Send the ACK of event ``ack_id`` with ``args`` (checked by :func:`ack_args`'s
        caller's serializer). Dropped silently once the connection is gone.

        Raises:
            TypeError, ValueError: an argument cannot be sent.
        """
        ...


async def run_event_handler(
    handler: Handler,
    args: tuple[Any, ...],
    route: AckRoute,
    ack_id: int | None,
    *,
    logger: logging.Logger,
    owner: object,
    event: str,
) -> None:
    """Run one received event's handler and answer it, by the rules the server and the
    client share:

    - a handler with an ``ack`` parameter gets an :class:`Ack` and answers on its own terms
      (or not at all); otherwise what it returns is the ack, if the peer asked for one
      (None: an ack without arguments, a tuple: several);
    - a handler that raises is logged (``"<owner>: handler for '<event>' failed"``) and gets
      no ack; one that raises ``ConnectionClosed`` (it emitted after the connection went) is
      not logged: there is nobody left to answer;
    - a return value that cannot be sent is logged, and no ack goes.

    ``args`` are the handler's positional arguments (the server's socket first, on the
    server). Blocks: as long as the handler runs, then while the ack is queued.
    Cancellation: as the handler's.
    """
    try:
        if handler.takes_ack:
            sender = None if ack_id is None else partial(route._send_ack, ack_id)
            await handler(*args, ack=Ack(sender))
            return
        result = await handler(*args)
    except ConnectionClosed:
        return
    except Exception:
        logger.exception("%s: handler for %r failed", owner, event)
        return
    if ack_id is not None:
        # ack_args(result), inline: the common case costs no call
        if result is None:
            reply: tuple[Any, ...] = ()
        elif isinstance(result, tuple):
            reply = result
        else:
            reply = (result,)
        try:
            await route._send_ack(ack_id, reply)
        except (TypeError, ValueError):
            logger.exception("%s: the ack of %r cannot be sent", owner, event)
