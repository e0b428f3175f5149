"""Running a coroutine in the calling task, as ``await`` does, with a say in what happens when
it first waits.

The Socket.IO server runs an event's handler in the task that read the event, so that the
common handler (one that returns, or queues a reply, without waiting for anything) costs no
task of its own. When the handler does wait (for a database, for an ack from the client, for
room in a full send queue), the reading must go on elsewhere: :func:`run_inline` calls
``on_wait`` just before the first such wait, and the caller starts a new reader there. The
coroutine itself never moves: it runs to its end in the task that started it, as Trio
requires.
"""

from __future__ import annotations

import contextvars
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

__all__ = ["run_inline"]


def _schedule_point() -> object:
    """What Trio's schedule points (``cancel_shielded_checkpoint``, the first half of
    ``checkpoint``) yield to the scheduler: a coroutine that yields it lets other tasks run
    but waits for nothing. Trio keeps it private; without it, every yield counts as a wait,
    which is as correct and only slower."""
    try:
        from trio._core._traps import CancelShieldedCheckpoint  # noqa: PLC0415
    except ImportError:  # pragma: no cover - depends on Trio's internals
        return object()
    return CancelShieldedCheckpoint


_SCHEDULE_POINT = _schedule_point()

#: schedule points a coroutine may take in the calling task before ``on_wait`` is called
#: anyway (a handler that computes at length, with checkpoints, then lets reading go on).
PATIENCE = 4


async def run_inline(coro: Coroutine[Any, Any, Any], on_wait: Callable[[], None] | None) -> None:
    """Run ``coro`` to its end in the calling task, in a copy of the task's context (as a
    task of its own would: context variables it sets stay its own).

    ``on_wait`` (if given) is called once: just before ``coro`` first waits for something
    other than a schedule point, or before its ``PATIENCE + 1``-th schedule point.

    Blocks: as long as ``coro`` does. Cancellation: as for ``await coro`` (the calling task's
    cancel scopes apply to it). Exceptions of ``coro`` propagate.
    """
    await _drive(coro, contextvars.copy_context(), on_wait)


@types.coroutine
def _drive(
    coro: Coroutine[Any, Any, Any],
    context: contextvars.Context,
    on_wait: Callable[[], None] | None,
) -> Generator[Any, Any, None]:
    try:
        msg = context.run(coro.send, None)
        schedule_points = 0
        while True:
            if on_wait is not None:
                if msg is _SCHEDULE_POINT:
                    schedule_points += 1
                if msg is not _SCHEDULE_POINT or schedule_points > PATIENCE:
                    on_wait()
                    on_wait = None
            try:
                value = yield msg
            except BaseException as exc:  # thrown in by the scheduler: the coroutine's
                msg = context.run(coro.throw, exc)
            else:
                msg = context.run(coro.send, value)
    except StopIteration:
        return
    finally:
        coro.close()  # a no-op once it has finished; else (this task abandoned) closes it
