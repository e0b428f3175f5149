"""Running a coroutine in the calling task, as ``await`` does, with a say in what happens when
it first waits, and with its writes corked until the scheduler next polls for I/O.

The engine runs a session's reading this way, and the layer above runs an event's handler
this way inside it, so that the common handler (one that returns, or queues a reply, without
waiting for anything) costs no task of its own. When the handler does wait (for a database,
for an ack from the client, for room in a full send queue), the reading must go on
elsewhere: :func:`run_inline` calls ``on_wait`` just before the first such wait, and the
caller starts a new reader there. The coroutine itself never moves: it runs to its end in
the task that started it, as Trio requires.

**Corking.** While a coroutine run here is stepped, what it writes to WebSockets is not
written at once but gathered per socket (see :class:`Cork`); all of it goes out, one write
per socket, when the scheduler next stops to poll for I/O: once every task that was ready
ran (or at a bound of bytes per socket). A burst of broadcasts from one handler therefore
costs one system call per recipient, the replies to the messages of one network read share
one write, and the replies of all the connections whose reads were ready together go out one
after the other, after all of those reads (the kernel and the peer then take them as one
batch: interleaving each reply with the next connection's read cost a third more CPU per
echo with 50 connections). Nothing corked waits for more than the current scheduler pass.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Protocol, TypeVar

import trio

T = TypeVar("T")

log = logging.getLogger(__name__)

__all__ = ["LOCAL", "PATIENCE", "Cork", "Corkable", "emit_checkpoint", "run_inline"]


def schedule_point_trap() -> object:
    """What Trio's schedule points (``cancel_shielded_checkpoint``, the first half of
    ``checkpoint``) yield to the scheduler: a coroutine that yields it lets other tasks run
    but waits for nothing.

    Trio keeps it private, so this is the one place that reaches for it (and a test checks
    that it is still what ``cancel_shielded_checkpoint`` yields). Without it, every yield
    counts as a wait, which is as correct and only slower."""
    try:
        from trio._core._traps import CancelShieldedCheckpoint  # noqa: PLC0415
    except ImportError:  # pragma: no cover - depends on Trio's internals
        return object()
    return CancelShieldedCheckpoint


_SCHEDULE_POINT = schedule_point_trap()

#: schedule points a coroutine may take in the calling task before ``on_wait`` is called
#: anyway (a handler that computes at length, with checkpoints, then lets reading go on).
PATIENCE = 4

#: frames a task may cork between two yields: past this, an emit yields, so that a long
#: burst of broadcasts does not hold the loop (what is corked stays corked across that
#: yield, so that each socket still gets few writes for the whole burst).
SLICE_FRAMES = 4096
#: frames corked at most before they are written, even in the middle of a burst.
FLUSH_FRAMES = 65536


class Corkable(Protocol):
    """A writer that can gather frames while corked (a server WebSocket)."""

    def flush_cork(self) -> bool:
        """Write what was gathered (what the socket does not take is queued, and a task
        woken to write it); return whether something was queued so. Never blocks, never
        checkpoints."""


class Cork:
    """Per thread (see :data:`LOCAL`): whether a corked coroutine is being stepped, and the
    writers holding corked frames.

    Attributes:
        depth: how many drivers of :func:`run_inline` are inside a step (0: writes go out
            at once).
        dirty: the writers holding corked frames, in the order they were first corked.
        frames: frames corked since the last flush (see :data:`FLUSH_FRAMES`).
        slice: frames corked since the corking task last yielded (see :data:`SLICE_FRAMES`).
        holder: the task that yielded in the middle of a burst (see :meth:`slice_yield`):
            while it is set, the scheduler's polls write nothing, unless ...
        urgent: ... another corked coroutine ran meanwhile (its writes are not held back
            by the burst).
        slices: how many times a burst yielded so far (see :meth:`slice_yield`).
    """

    __slots__ = ("depth", "dirty", "frames", "holder", "slice", "slices", "urgent")

    def __init__(self) -> None:
        self.depth = 0
        self.dirty: list[Corkable] = []
        self.frames = 0
        self.slice = 0
        self.holder: trio.lowlevel.Task | None = None
        self.urgent = False
        self.slices = 0

    def add(self, writer: Corkable) -> None:
        """Note that ``writer`` holds corked frames (call once, when it corks its first):
        it is written before the scheduler next polls for I/O. Never blocks."""
        if not self.dirty and not _ARMED.get():
            trio.lowlevel.add_instrument(_FlushBeforePoll(self, trio.lowlevel.current_trio_token()))
            _ARMED.set(True)
        self.dirty.append(writer)

    def flush(self) -> bool:
        """Write everything corked, one write per writer; return whether a writer kept
        something its socket did not take (a task was then woken to write it). Never
        blocks, never raises."""
        dirty = self.dirty
        if not dirty:
            return False
        self.dirty = []
        self.frames = 0
        kept = False
        for writer in dirty:
            try:
                kept = writer.flush_cork() or kept
            except Exception:  # a bug: the others are written all the same
                log.exception("writing corked frames to %r failed", writer)
        return kept

    def count(self, frames: int) -> bool:
        """Count ``frames`` just corked: write everything every :data:`FLUSH_FRAMES`; return
        whether the task should yield now (every :data:`SLICE_FRAMES`: see
        :meth:`slice_yield`). Never blocks."""
        self.frames += frames
        self.slice += frames
        if self.frames >= FLUSH_FRAMES:
            self.flush()
        return self.slice >= SLICE_FRAMES

    async def slice_yield(self) -> None:
        """Let other tasks run in the middle of a burst, without writing what is corked
        (unless another corked coroutine runs meanwhile), so that each socket still gets
        few writes for the whole burst."""
        self.slice = 0
        self.slices += 1
        self.holder = trio.lowlevel.current_task()
        try:
            await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self.holder = None


class _FlushBeforePoll(trio.abc.Instrument):
    """Writes what is corked each time the scheduler is about to poll for I/O (once per
    pass, after every ready task ran); drops it when the run ends (its sockets are gone).
    Installed in a run by the first corked write (see :meth:`Cork.add`).

    The scheduler chose how long to wait before this hook runs: when a write woke a task
    (to write what a socket did not take), the poll is cut short through the run's wake-up
    channel (``run_sync_soon``), or that task would wait for the next I/O or deadline."""

    def __init__(self, cork: Cork, token: trio.lowlevel.TrioToken) -> None:
        self._cork = cork
        self._token = token

    def before_io_wait(self, timeout: float) -> None:
        cork = self._cork
        if (cork.holder is None or cork.urgent) and cork.dirty:
            cork.urgent = False
            if cork.flush() and timeout > 0:
                self._token.run_sync_soon(_nothing)

    def after_run(self) -> None:
        cork = self._cork
        cork.dirty = []
        cork.frames = cork.slice = 0
        cork.holder, cork.urgent = None, False


def _nothing() -> None:
    """What :class:`_FlushBeforePoll` runs to end a poll at once."""


#: whether this run has its :class:`_FlushBeforePoll` instrument yet.
_ARMED: trio.lowlevel.RunVar[bool] = trio.lowlevel.RunVar("trio_sio_cork_armed", default=False)


class _Local(threading.local):
    def __init__(self) -> None:
        self.cork = Cork()


#: ``LOCAL.cork`` is the current thread's :class:`Cork` (read it once per call: an
#: attribute of a thread-local object costs more than one of a plain object).
LOCAL = _Local()


async def emit_checkpoint(frames: int = 1) -> None:
    """The checkpoint an emit ends with.

    Outside a corked coroutine it is Trio's ``checkpoint``. Inside one it checks for
    cancellation but does not yield, so that the emits of a burst share their writes; after
    :data:`SLICE_FRAMES` corked frames it yields (the scheduler's next poll writes them), so
    that a long burst does not hold the loop.
    """
    cork = LOCAL.cork
    if not cork.depth:
        await trio.lowlevel.checkpoint()
        return
    await trio.lowlevel.checkpoint_if_cancelled()
    if cork.count(frames):
        await cork.slice_yield()


async def run_inline(coro: Coroutine[Any, Any, T], on_wait: Callable[[], None] | None) -> T:
    """Run ``coro`` to its end in the calling task, in a copy of the task's context (as a
    task of its own would: context variables it sets stay its own), corked (see the module's
    docstring).

    ``on_wait`` (if given) is called once: just before ``coro`` first waits for something
    other than a schedule point, or before its ``PATIENCE + 1``-th schedule point.

    Returns: what ``coro`` returns.

    Blocks: as long as ``coro`` does. Cancellation: as for ``await coro`` (the calling task's
    cancel scopes apply to it). Exceptions of ``coro`` propagate.
    """
    return await _drive(coro, contextvars.copy_context(), on_wait)


@types.coroutine
def _drive(
    coro: Coroutine[Any, Any, T],
    context: contextvars.Context,
    on_wait: Callable[[], None] | None,
) -> Generator[Any, Any, T]:
    cork = LOCAL.cork
    schedule_points = 0
    send: Any = None
    thrown: BaseException | None = None
    try:
        while True:
            cork.depth += 1
            try:
                if thrown is None:
                    msg = context.run(coro.send, send)
                else:
                    exc, thrown = thrown, None
                    msg = context.run(coro.throw, exc)
            finally:
                cork.depth -= 1  # (what was corked goes out before the scheduler polls)
                holder = cork.holder
                if holder is not None and holder is not trio.lowlevel.current_task():
                    cork.urgent = True  # not held back by another task's burst
            if on_wait is not None:
                if msg is _SCHEDULE_POINT:
                    schedule_points += 1
                if msg is not _SCHEDULE_POINT or schedule_points > PATIENCE:
                    on_wait()
                    on_wait = None
            try:
                send = yield msg
            except BaseException as exc:  # thrown in by the scheduler
                thrown = exc
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        coro.close()  # a no-op once it has finished; else (this task abandoned) closes it
