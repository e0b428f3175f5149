"""Helpers for keeping ``ExceptionGroup`` out of the client's public API."""

from __future__ import annotations

__all__ = ["single_leaf"]


def single_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The only leaf exception of a (possibly nested) group, or None if it holds several."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None
