"""Pending acknowledgements of one socket: ack id → a one-shot slot.

Shared by the server and the client. Each waiter waits on its own slot, inside its own cancel
scope (a timeout is a deadline on that scope); a slot is removed from the registry in a
``finally`` clause, so a cancelled or timed-out wait leaves nothing behind.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._handlers import Handler
from .protocol.errors import AckTimeoutError, ConnectionClosed, LocalProtocolError
from .protocol.socketio import MAX_ACK_ID

__all__ = ["AckRegistry", "AckSlot", "await_callback", "emit_with_callback", "unpack_ack"]

log = logging.getLogger("trio_sio")


class _Turn:
    """Which waiter in turn (:meth:`AckSlot.wait_in_turn`) of one registry's acks was
    woken and has not run yet.

    Trio may run the tasks woken in one step in any order, so a reader that resolves
    several acks of one read must let each woken waiter in turn run before it wakes the
    next, for those waiters to go on in the order the acks came:
    :attr:`AckRegistry.turn_pending` tells it when it has to yield first (only then: one
    ack a read costs no extra step).
    """

    __slots__ = ("woken",)

    def __init__(self) -> None:
        self.woken: AckSlot | None = None


class AckSlot:
    """Where one ack's arguments land, and the one task waiting for them.

    The waiting task is parked and woken directly (no :class:`trio.Event` and its parking
    lot: a slot has at most one waiter, and acks are the hot path of a request/reply).
    """

    __slots__ = ("_args", "_done", "_error", "_in_turn", "_task", "_turn")

    def __init__(self, turn: _Turn) -> None:
        self._done = False
        self._task: trio.lowlevel.Task | None = None
        self._args: list[Any] = []
        self._error: BaseException | None = None
        self._turn = turn
        self._in_turn = False

    def set(self, args: list[Any]) -> None:
        """Deliver the ack's arguments (first delivery wins)."""
        if not self._done:
            self._args = args
            self._done = True
            if self._task is not None:
                self._resume()
                if self._in_turn:
                    self._turn.woken = self

    def fail(self, error: BaseException) -> None:
        """Make the waiter raise ``error`` (unless the ack already came)."""
        if not self._done:
            self._error = error
            self._done = True
            if self._task is not None:
                self._resume()

    def _resume(self) -> None:
        task = self._task
        assert task is not None
        self._task = None
        trio.lowlevel.reschedule(task)

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def wait(self) -> list[Any]:
        """Wait for the ack's arguments (a checkpoint even when they are already here).
        Waiters of acks that came in one read are woken together, and Trio runs them in
        any order (see :meth:`wait_in_turn`).

        Raises:
            ConnectionClosed: the socket disconnected first.
            trio.BusyResourceError: another task is waiting on this slot.

        Cancellation: safe; the slot stays valid.
        """
        if self._done:
            await trio.lowlevel.checkpoint()
        else:
            if self._task is not None:
                raise trio.BusyResourceError("another task waits for this ack")
            self._task = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)
            if self._turn.woken is self:
                self._turn.woken = None
        if self._error is not None:
            raise self._error
        return self._args

    async def wait_in_turn(self) -> list[Any]:
        """As :meth:`wait`, and the waiters in turn of one registry go on in the order
        their acks came (as the JS client calls ack callbacks), if the reader yields while
        :attr:`AckRegistry.turn_pending`."""
        self._in_turn = True
        return await self.wait()


class AckRegistry:
    """The pending acks of one socket, with a bound on how many may wait at once."""

    __slots__ = ("_closed", "_limit", "_next_id", "_slots", "_turn")

    def __init__(self, limit: int = 10_000) -> None:
        self._next_id = 0
        self._turn = _Turn()
        self._slots: dict[int, AckSlot] = {}
        self._limit = limit
        self._closed: BaseException | None = None

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def turn_pending(self) -> bool:
        """Whether the waiter of an ack resolved earlier was woken and has not run yet: a
        reader yields before resolving the next (see :class:`_Turn`)."""
        return self._turn.woken is not None

    def new(self) -> tuple[int, AckSlot]:
        """Reserve an ack id.

        Raises:
            ConnectionClosed: the socket is disconnected.
            LocalProtocolError: too many acks are pending.
        """
        if self._closed is not None:
            raise self._closed
        if len(self._slots) >= self._limit:
            raise LocalProtocolError(f"more than {self._limit} acks pending on one socket")
        ack_id = self._next_id
        self._next_id = 0 if ack_id >= MAX_ACK_ID else ack_id + 1
        slot = AckSlot(self._turn)
        self._slots[ack_id] = slot
        return ack_id, slot

    def discard(self, ack_id: int) -> None:
        """Forget an ack id (its waiter gave up)."""
        self._slots.pop(ack_id, None)

    def resolve(self, ack_id: int | None, args: list[Any]) -> bool:
        """Deliver an incoming ACK. Returns False for an unknown id (ignored, as in JS)."""
        if ack_id is None:
            return False
        slot = self._slots.pop(ack_id, None)
        if slot is None:
            return False
        slot.set(args)
        return True

    def fail(self, ack_ids: set[int], reason: str) -> None:
        """Fail the waiters of these ack ids with ConnectionClosed(reason)."""
        for ack_id in ack_ids:
            slot = self._slots.pop(ack_id, None)
            if slot is not None:
                slot.fail(ConnectionClosed(reason))

    def close(self, reason: str) -> None:
        """Fail every pending ack with ConnectionClosed(reason); refuse new ones."""
        self._closed = ConnectionClosed(reason)
        slots, self._slots = self._slots, {}
        for slot in slots.values():
            slot.fail(ConnectionClosed(reason))


def unpack_ack(args: list[Any]) -> Any:
    """An ack's arguments as one value: None for none, the value for one, else a tuple."""
    if not args:
        return None
    if len(args) == 1:
        return args[0]
    return tuple(args)


async def await_callback(
    acks: AckRegistry,
    ack_id: int,
    wait: Callable[[], Awaitable[list[Any]]],
    callback: Callable[..., Any],
    timeout: float | None,
) -> None:
    """Wait for one ack in its own cancel scope, then call the user's callback."""
    handler = Handler(callback)
    try:
        if timeout is None:
            try:
                args = await wait()
            except ConnectionClosed:
                return
            await handler(*args)
            return
        error: Exception | None = None
        args = []
        with trio.move_on_after(timeout) as scope:
            try:
                args = await wait()
            except ConnectionClosed as exc:
                error = exc
        if scope.cancelled_caught:
            error = AckTimeoutError()
        await handler(error, *args)
    except Exception:
        log.exception("ack callback failed")
    finally:
        acks.discard(ack_id)


async def emit_with_callback(
    acks: AckRegistry,
    send: Callable[[int], Awaitable[bool]],
    start_soon: Callable[..., object],
    callback: Callable[..., Any],
    timeout: float | None,
    *,
    forget: Callable[[int], None] | None = None,
) -> None:
    """Send an event that asks for an ack, and have ``callback`` called with the ack, by the
    rules the server and the client share:

    - ``send(ack_id)`` hands the event over (queues or writes it) with a fresh ack id and
      says whether it went (False: a volatile event was dropped);
    - the wait for the ack starts only once the event was handed over: an emit that raises
      (an outgoing listener, an argument that cannot be sent, a closed socket, cancellation)
      raises here and never calls ``callback`` as well;
    - a dropped volatile event calls ``callback`` only if there is a ``timeout``, with
      :class:`AckTimeoutError` once it expires (no ack can come);
    - the callback runs in a task of its own (``start_soon``), so an emit never waits for
      the peer; its failure is logged.

    ``forget(ack_id)`` (if given) is called once the ack id is no longer pending.

    Raises:
        ConnectionClosed: the socket is disconnected (from ``acks.new()`` or ``send``).
        LocalProtocolError: too many acks are pending.
        Whatever ``send`` raises.

    Blocks: as long as ``send`` does.
    """
    ack_id, slot = acks.new()

    def done() -> None:
        acks.discard(ack_id)
        if forget is not None:
            forget(ack_id)

    try:
        sent = await send(ack_id)
    except BaseException:
        done()
        raise
    if not sent and timeout is None:
        done()
        return

    async def wait_and_call() -> None:
        try:
            await await_callback(acks, ack_id, slot.wait_in_turn, callback, timeout)
        finally:
            done()

    start_soon(wait_and_call)
