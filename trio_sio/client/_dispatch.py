"""How a client namespace socket runs its handlers: concurrently, started in arrival order,
with a bound on how many are in flight, and an opt-in ordered lane.

One task per socket (:meth:`Dispatcher.run`) takes what the socket received, in order, and
starts a task for each in the client's nursery with ``await nursery.start(...)``. The new
task reports itself started first thing, so each handler has begun (up to its first
checkpoint) before the next one is started. At ``max_concurrent_handlers`` tasks in flight the
dispatcher stops taking events; the socket's event queue then fills up and the client stops
reading from its connection (backpressure).

Ordered handlers (``ordered_handlers=True``, or ``on(event, ordered=True)``) share one lane
per socket: each waits for the previous ordered one to finish, so they run one at a time, in
arrival order. Waiting for its turn, an ordered event counts as in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from .._handlers import AckRoute, Handler, run_event_handler
from .._lanes import Lanes, Turn
from ..protocol.errors import ConnectionClosed
from ._queues import EventQueue, Incoming
from ._reader import OnWait, run_inline

if TYPE_CHECKING:
    from ._link import Link

__all__ = ["LIFECYCLE", "Dispatcher"]

log = logging.getLogger("trio_sio.client")

#: Names of the lifecycle handlers of a namespace socket.
LIFECYCLE = frozenset({"connect", "disconnect", "connect_error"})

#: Where the acks of events received on a namespace connection go: ``ack_route(link)``.
AckRouteFactory = Callable[["Link | None"], AckRoute]


@dataclass(slots=True)
class _Registered:
    handler: Handler
    ordered: bool


class Dispatcher:
    """The handlers of one namespace socket, and the task that starts them.

    Args:
        name: for log messages (the socket's repr).
        ack_route: where the acks of events received on a namespace connection go.
        queue_size: server events that may wait to be started.
        limit: handlers in flight at once (``max_concurrent_handlers``).
        ordered: every handler in the ordered lane (``ordered_handlers``).
    """

    def __init__(
        self, name: str, ack_route: AckRouteFactory, *, queue_size: int, limit: int, ordered: bool
    ) -> None:
        self.name = name
        self._ack_route = ack_route
        self.queue: EventQueue[Link] = EventQueue(queue_size)
        self.ordered = ordered
        self._handlers: dict[str, _Registered] = {}
        self._lifecycle: dict[str, list[Handler]] = {}
        self._incoming_hooks: list[Handler] = []
        self._waiters: dict[str, list[trio.MemorySendChannel[tuple[Any, ...]]]] = {}
        self._lanes = Lanes(limit)
        self._lifecycle_running = 0
        self._lifecycle_idle = trio.Event()
        self._lifecycle_idle.set()
        self.done = trio.Event()

    @property
    def in_flight(self) -> int:
        """Handler tasks running (or waiting for their turn in the ordered lane)."""
        return self._lanes.in_flight

    # -- registration ---------------------------------------------------------------------
    def register(self, event: str, fn: Callable[..., Any], ordered: bool) -> None:
        """Register ``fn`` for an event (replacing the previous one) or a lifecycle name."""
        if event in LIFECYCLE:
            self._lifecycle.setdefault(event, []).append(Handler(fn))
        else:
            self._handlers[event] = _Registered(Handler(fn), ordered)

    def add_incoming_hook(self, fn: Callable[..., Any]) -> None:
        self._incoming_hooks.append(Handler(fn))

    async def wait_for(self, event: str) -> tuple[Any, ...]:
        """The arguments of the next ``event``.

        Raises:
            ConnectionClosed: the client closed first.

        Cancellation: safe; a cancelled wait takes nothing.
        """
        send, recv = trio.open_memory_channel[tuple[Any, ...]](1)
        self._waiters.setdefault(event, []).append(send)
        try:
            return await recv.receive()
        except trio.EndOfChannel:
            raise ConnectionClosed("client is closed") from None
        finally:
            waiters = self._waiters.get(event, [])
            if send in waiters:
                waiters.remove(send)

    def reopen(self) -> None:
        """After the client ended: a fresh queue, for its next run."""
        self.queue = EventQueue(self.queue.size)
        self.done = trio.Event()
        self._lanes.reset()

    def close_waiters(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.close()

    # -- feeding --------------------------------------------------------------------------
    def lifecycle(self, name: str, *args: Any) -> None:
        """Queue a lifecycle event (its handlers start after everything received before)."""
        if self._lifecycle.get(name):
            self.queue.put_lifecycle(Incoming(name, None, args, None))

    async def wait_idle(self) -> None:
        """Block until everything queued has been started and the lifecycle handlers have
        returned (for a clean close: the ``"disconnect"`` handlers run to their end).

        Cancellation: safe; it only waits.
        """
        await self.done.wait()
        await self._lifecycle_idle.wait()

    # -- the task -------------------------------------------------------------------------
    async def run(self, nursery: trio.Nursery) -> None:
        """Start a handler task in ``nursery`` for each queued item, in order, until the
        queue is closed and empty.

        Blocks: while ``limit`` handlers are in flight.

        Cancellation: stops starting handlers; those started run on in ``nursery``.
        """
        try:
            while (item := await self.queue.get()) is not None:
                if item.kind == "event" and not self._wanted(item):
                    continue
                await self._lanes.acquire()
                try:
                    await nursery.start(self._task, item, self._turn(item))
                except BaseException:
                    self._lanes.release()
                    raise
        finally:
            self.done.set()

    async def dispatch_inline(self, item: Incoming[Link], on_wait: OnWait) -> bool:
        """Run an event's handler in the calling task until it first waits (then
        ``on_wait`` is called, and the caller's task finishes the handler). Returns False,
        having done nothing, when the event must be queued instead: events wait before it,
        its handler is ordered, or ``limit`` handlers are in flight.

        Blocks: as long as the handler runs. Cancellation: as the handler's.
        """
        if len(self.queue) or self._ordered(item):
            return False
        try:
            self._lanes.acquire_nowait()
        except trio.WouldBlock:
            return False
        try:
            if self._wanted(item):
                await run_inline(self._run_event(item, None), on_wait)
            else:
                await trio.lowlevel.checkpoint()
        finally:
            self._lanes.release()
        return True

    def _ordered(self, item: Incoming[Link]) -> bool:
        assert item.packet is not None
        registered = self._handlers.get(str(item.packet.data[0]))
        return registered is not None and (self.ordered or registered.ordered)

    def _wanted(self, item: Incoming[Link]) -> bool:
        assert item.packet is not None
        event = str(item.packet.data[0])
        return bool(event in self._handlers or self._incoming_hooks or self._waiters.get(event))

    def _turn(self, item: Incoming[Link]) -> Turn | None:
        """A place in the ordered lane, for an ordered handler (lifecycle handlers are
        ordered only with ``ordered_handlers``)."""
        ordered = self._ordered(item) if item.kind == "event" else self.ordered
        return self._lanes.turn() if ordered else None

    async def _task(
        self,
        item: Incoming[Link],
        turn: Turn | None,
        *,
        task_status: trio.TaskStatus[None],
    ) -> None:
        task_status.started()
        lifecycle = item.kind != "event"
        if lifecycle:
            self._lifecycle_running += 1
            self._lifecycle_idle = trio.Event()
        try:
            if lifecycle:
                await self._run_lifecycle(item, turn)
            else:
                await self._run_event(item, turn)
        finally:
            if turn is not None:
                turn.end()
            self._lanes.release()
            if lifecycle:
                self._lifecycle_running -= 1
                if not self._lifecycle_running:
                    self._lifecycle_idle.set()

    async def _run_lifecycle(self, item: Incoming[Link], turn: Turn | None) -> None:
        if turn is not None:
            await turn.wait()
        for handler in self._lifecycle.get(item.kind, []):
            try:
                await handler(*item.args)
            except Exception:
                log.exception("%s: %s handler failed", self.name, item.kind)

    async def _run_event(self, item: Incoming[Link], turn: Turn | None) -> None:
        packet = item.packet
        assert packet is not None
        event, *args = packet.data
        event = str(event)
        try:
            for hook in self._incoming_hooks:
                await hook(event, *args)
            for waiter in self._waiters.pop(event, []):
                waiter.send_nowait(tuple(args))
        except Exception:
            log.exception("%s: catch-all listener failed on %r", self.name, event)
            return
        registered = self._handlers.get(event)
        if registered is None:
            return  # nobody listens: no ack either, as with the JS client
        if turn is not None:
            await turn.wait()
        await run_event_handler(
            registered.handler,
            tuple(args),
            self._ack_route(item.link),
            packet.id,
            logger=log,
            owner=self.name,
            event=event,
        )
