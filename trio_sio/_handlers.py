"""Event handlers, normalised once at registration: sync or async, any arity."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["Handler", "ack_args"]


class Handler:
    """A user callable, with the number of positional arguments it accepts.

    Extra arguments sent by the peer are dropped (as a JS listener ignores them); a handler
    that takes ``*args`` gets them all. Sync handlers run in the calling task.
    """

    __slots__ = ("fn", "max_args")

    def __init__(self, fn: Callable[..., Any]) -> None:
        if not callable(fn):
            raise TypeError(f"a handler must be callable, not {type(fn).__name__}")
        self.fn = fn
        self.max_args: int | None = _max_positional(fn)

    async def __call__(self, *args: Any) -> Any:
        if self.max_args is not None and len(args) > self.max_args:
            args = args[: self.max_args]
        result = self.fn(*args)
        if inspect.isawaitable(result):
            result = await result
        return result


def _max_positional(fn: Callable[..., Any]) -> int | None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    count = 0
    for param in signature.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            return None
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def ack_args(result: Any) -> tuple[Any, ...]:
    """The ack arguments for a handler's return value: None → none, a tuple → several."""
    if result is None:
        return ()
    if isinstance(result, tuple):
        return result
    return (result,)
