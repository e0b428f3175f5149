"""One Engine.IO session on the server, and the tasks that run it.

Each session runs in its own nursery (inside the server's sessions nursery) with separate
tasks:

- **session**: the task of :meth:`EngineSocket.run`, which holds the nursery. Until the
  session closes it keeps the heartbeat: it pings every ``ping_interval`` and closes the
  session when no pong comes within ``ping_timeout`` (deadlines of its own, not a periodic
  sweep); then it runs the close;
- **receive**: takes packets from the current transport and dispatches them (the
  :class:`SessionHandler` of the layer above runs in it, and may hand the reading over to a
  new receive task: see :class:`Reader`). The reading runs corked (see ``_inline``): what
  the messages of one network read cause to be written goes out before it reads again,
  one write per socket;
- **send**: drains the bounded send queue into the transport (one polling response per
  batch, or one WebSocket frame per packet). On a WebSocket, a packet sent while nothing is
  queued or being written is written by its sender; the queue and this task are created
  when a first packet has to wait;
- **handler**: the application's ``async def handler(socket)``.

Closing the session cancels that nursery: no task, timer or queue outlives it.

Memory: an idle session is most of what an idle connection costs, so what is needed only
at times is created only then: the send queue and its task, the events of an upgrade or of
a close, the cancel scope of an outstanding ping, the channel of received messages (not at
all when a :class:`SessionHandler` takes them, as the Socket.IO server's does).
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import trio

from ..protocol.engineio import (
    CLOSE,
    NOOP,
    PING,
    PING_PROBE,
    PONG,
    PONG_PROBE,
    CloseReason,
    Packet,
    PacketType,
    Transport,
    decode_packet,
)
from ..protocol.errors import ConnectionClosed, RemoteProtocolError
from ._inline import LOCAL, run_inline
from .config import EngineConfig, RequestHead
from .transports import Batch, PollingTransport, WebSocketChannel, WebSocketTransport

if TYPE_CHECKING:
    from typing import TypeAlias

    AnyTransport: TypeAlias = PollingTransport | WebSocketTransport

__all__ = ["EngineSocket", "Reader", "SessionHandler", "SessionState"]

log = logging.getLogger("trio_sio.engineio")


class SessionState(enum.Enum):
    """Life cycle of a session (the JS ``readyState`` words)."""

    #: the handshake is done and packets flow.
    OPEN = "open"
    #: a close was asked for; queued packets are being flushed.
    CLOSING = "closing"
    #: over; every task is gone.
    CLOSED = "closed"


_CATCH_UP_ROUNDS = 8

#: Fairness between sessions (seconds of the event loop's CPU time). A session whose reading
#: held the loop this long in one go (decoding a large message: a megabyte of JSON takes
#: tens of milliseconds, in C, without a chance to yield; or the inline handlers of a read
#: that brought many messages) stops reading for as long as it held the loop, at most
#: :data:`MAX_PAUSE`: while others are waiting, it gets about half of the loop, and a new
#: connection waits for one such step at most, not for all that the session sent.
SLOW_STEP = 0.01
MAX_PAUSE = 0.25
#: a read that brought one message shorter than this is not measured (an echo then pays
#: nothing for fairness): below it, decoding and answering take well under SLOW_STEP.
HEAVY_BYTES = 16384
#: what the reading's time is measured with: the CPU time of the thread running the loop,
#: so that a process the system set aside for a while does not count it against the step
#: it was in (tests replace it).
_clock = time.thread_time

Handler = Callable[["EngineSocket"], Awaitable[None]]

#: what :attr:`EngineSocket.upgrade_settled` is while no upgrade runs (set, never waited on
#: for long: sharing one costs nothing, while an event per session would).
_SETTLED = trio.Event()
_SETTLED.set()


class _Rest(NamedTuple):
    """Where a dispatch stopped before all that was read (see ``EngineSocket._read``)."""

    packets: Sequence[Packet]
    #: the index in ``packets`` of the next one to dispatch.
    next: int
    #: True: the reader goes on in a cancel scope of its own (see :class:`Reader`); False:
    #: the dispatch held the loop for :data:`SLOW_STEP` and the reading pauses first.
    scoped: bool


class SessionHandler(Protocol):
    """What a session calls in the layer above it (the Socket.IO server's connection).

    Given to the session with :meth:`EngineSocket.attach` before its tasks start; the
    session then never queues received messages for :meth:`EngineSocket.receive`, and runs
    no handler task of its own: the layer above starts what it needs in
    :attr:`EngineSocket.nursery` (an idle connection then costs no task and no nursery of
    its own).
    """

    def on_started(self) -> None:
        """The session's tasks are starting: :attr:`EngineSocket.nursery` can be used.
        Called once, by the session's task. Must not block."""
        ...

    def on_closing(self) -> None:
        """The session started closing (``close_reason`` is set): start no new work. Called
        once, from whatever task asked for the close. Must not block."""
        ...

    async def on_closed(self) -> None:
        """The session is closing (after :meth:`on_closing`): run the layer's own close
        sequence, before the session flushes its last packets and cancels its tasks.
        Called once, by the session's task, shielded from cancellation; the handler bounds
        it in time."""
        ...

    async def on_message(self, message: str | bytes, reader: Reader) -> None:
        """One message from the client, called by the receive task ``reader`` in order,
        one at a time and awaited: a slow call slows the reading, unless it lets the
        reading go on with :meth:`Reader.run_handler`."""
        ...


class Reader:
    """The task reading a session's transport, and where it is in what it read.

    The :class:`SessionHandler` gets its reader with each message, and may run an
    application handler in it with :meth:`run_handler`: the handler runs in the reading
    task until it waits for something; then a new task reads on from the next packet, in
    order, and this one (:attr:`handed_over`) only finishes the handler.
    """

    __slots__ = (
        "_index",
        "_packets",
        "_retired",
        "_scope",
        "_session",
        "_started",
        "_transport",
        "_wants_scope",
    )

    def __init__(self, session: EngineSocket, transport: AnyTransport) -> None:
        self._session: EngineSocket | None = session
        self._transport = transport
        self._packets: Sequence[Packet] = ()
        self._index = 0
        self._retired = False
        # A cancel scope around all that the reader's task does from some packet on: once
        # retired, cancelling it cancels the handler the task finishes. Entered after the
        # first handler run here (an idle session has none: it would cost every connection
        # memory); that first handler gets a scope of its own.
        self._scope: trio.CancelScope | None = None
        self._wants_scope = False
        # When (see _clock) this task's current step of reading began; None: not measured.
        self._started: float | None = None

    @property
    def handed_over(self) -> bool:
        """True once another task reads in this one's place (what this task was given to
        dispatch after the current message is the new reader's)."""
        return self._retired

    def should_pause(self) -> bool:
        """Whether what this task did since it last read or paused held the event loop for
        :data:`SLOW_STEP` or more (decoding a large message, say): then it should
        :meth:`pause` before it goes on. Never blocks."""
        started = self._started
        return started is not None and _clock() - started >= SLOW_STEP

    async def pause(self) -> None:
        """Let other sessions and new connections have the loop for as long as this task
        held it since it last read or paused (at most :data:`MAX_PAUSE`).

        Blocks: that long (a sleep, cancelled with the session).
        """
        started = self._started
        if started is not None:
            await trio.sleep(min(_clock() - started, MAX_PAUSE))
            self._started = _clock()

    async def run_handler(
        self,
        coro: Coroutine[Any, Any, Any],
        track: Callable[[trio.CancelScope], None] | None = None,
        untrack: Callable[[trio.CancelScope], None] | None = None,
    ) -> None:
        """Run ``coro`` (an application handler) in this task until it first waits; then
        hand the reading over to a new task and finish ``coro`` here.

        ``track(scope)`` is called with a cancel scope that covers ``coro`` while it may
        run outside the reading (cancel it to stop the handler, e.g. when its socket goes),
        and ``untrack(scope)`` once ``coro`` is done. Without them, ``coro`` is cancelled
        only with the session (and costs no scope).

        Blocks: as long as ``coro`` runs. Exceptions of ``coro`` propagate.
        """
        if track is None or untrack is None:
            await run_inline(coro, self._hand_over)
            return
        scope = self._scope
        if scope is None:
            # The reader has no scope of its own yet: this handler gets one, and the reader
            # enters its own from the next packet on.
            self._wants_scope = True
            with trio.CancelScope() as own:
                track(own)
                try:
                    await run_inline(coro, self._hand_over)
                finally:
                    untrack(own)
            return
        # No cancel scope per handler (one per event is a tenth of an echo's cost): a
        # handler that waits is finished by a retired reader, whose scope is then its own.

        def hand_over() -> None:
            self._hand_over()
            if self._retired:
                track(scope)

        try:
            await run_inline(coro, hand_over)
        finally:
            if self._retired:
                untrack(scope)

    def _hand_over(self) -> None:
        """Have a new task read on after the packet being dispatched (the calling task, this
        reader, is about to wait in the handler of that packet). Does nothing if this reader
        handed over already or the session no longer reads. Never blocks."""
        session = self._session
        if self._retired or session is None:
            return
        nursery = session._nursery
        if session._state is not SessionState.OPEN or nursery is None:
            return
        self._retired = True
        self._session = None  # what the new reader needs is below; drop the cycle
        nursery.start_soon(
            session._receive_loop, self._transport, self._packets, self._index, self._wants_scope
        )


class EngineSocket:
    """A server-side Engine.IO session.

    Created by the server at handshake; the application sees it in its handler.

    Attributes:
        sid: the session id (secret: it authorises requests on this session).
        request: the handshake request.
        close_reason: why the session ended, once it has.
    """

    __slots__ = (
        "__weakref__",
        "_close_requested",
        "_closed",
        "_config",
        "_deadline",
        "_finished",
        "_graceful",
        "_handler_done",
        "_handler_running",
        "_in_recv",
        "_in_send",
        "_last_packet",
        "_nursery",
        "_out_recv",
        "_out_send",
        "_over_since",
        "_pong_scope",
        "_queued",
        "_room",
        "_send_scope",
        "_started_at",
        "_state",
        "_told_closed",
        "_transport",
        "_upgrade_settled",
        "_watching",
        "close_reason",
        "handler",
        "probe_done",
        "protocol",
        "request",
        "sid",
        "upgrading",
    )

    def __init__(
        self,
        sid: str,
        transport: AnyTransport,
        config: EngineConfig,
        request: RequestHead,
        open_packet: Packet | None,
        *,
        opened_at: float | None = None,
    ) -> None:
        self.sid = sid
        self.request = request
        self.close_reason: CloseReason | None = None
        self._config = config
        self._transport: AnyTransport = transport
        self._state = SessionState.OPEN
        # The send queue: groups of packets, in order, on a memory channel (the design's
        # shape), drained by the send task. Unbounded as a channel: the bound is in bytes
        # (``_queued``, see _enqueue). Both are created when a first packet must wait
        # (see _queue): on a WebSocket most packets are written at once by their sender
        # (see _enqueue), and an idle session then holds neither.
        self._out_send: trio.MemorySendChannel[Sequence[Packet]] | None = None
        self._out_recv: trio.MemoryReceiveChannel[Sequence[Packet]] | None = None
        self._queued = 0
        self._room: trio.Event | None = None
        self._over_since: float | None = None
        self._watching = False
        # Received messages for receive(): created at first use (see _inbox).
        self._in_send: trio.MemorySendChannel[str | bytes] | None = None
        self._in_recv: trio.MemoryReceiveChannel[str | bytes] | None = None
        self._nursery: trio.Nursery | None = None
        if open_packet is not None:  # (None: the handshake's answer carried it already)
            self._enqueue((open_packet,), direct=True)
        # When the handshake was answered: the heartbeat counts from there.
        self._started_at = trio.current_time() if opened_at is None else opened_at
        self._deadline = math.inf  # see close_at
        self._told_closed = False  # the handler's on_closed ran (see _tell_closed)
        # While a ping waits for its pong: the deadline of that wait (a pong cancels it).
        self._pong_scope: trio.CancelScope | None = None
        self._close_requested = trio.Event()
        self._handler_running = False
        self._handler_done: trio.Event | None = None  # only while the close waits for it
        self._graceful = False
        self._last_packet = CLOSE
        self._finished = False  # every task is gone and the transport closed
        self._closed: trio.Event | None = None  # for wait_closed(), created when needed
        self._send_scope: trio.CancelScope | None = None
        self.upgrading = False
        self.probe_done = False
        self._upgrade_settled: trio.Event | None = None
        #: the layer above, if one is attached (see :meth:`attach`).
        self.handler: SessionHandler | None = None
        #: the Engine.IO protocol version the client speaks (3 only with ``allow_eio3``;
        #: set by the server before the session starts).
        self.protocol = 4

    # -- public API -----------------------------------------------------------------------
    def attach(self, handler: SessionHandler) -> None:
        """Give the session's messages to ``handler`` instead of queueing them for
        :meth:`receive`, and tell it when the session closes. Call it before the session's
        tasks start (in ``EngineServer``'s ``on_open``)."""
        self.handler = handler

    @property
    def nursery(self) -> trio.Nursery:
        """The session's nursery, for the tasks of the layer above: they are cancelled when
        the session closes.

        Raises:
            ConnectionClosed: the session is not running (not yet, or no more).
        """
        nursery = self._nursery
        if nursery is None or self._state is SessionState.CLOSED:
            raise ConnectionClosed(self._reason_text())
        return nursery

    def close_at(self, deadline: float) -> None:
        """Close the session (``forced close``) at ``deadline`` (Trio time), unless called
        again before then; ``math.inf``: never. Costs no task: the session's own task keeps
        the deadline with its heartbeat. Never blocks."""
        self._deadline = deadline

    @property
    def opened_at(self) -> float:
        """When the handshake was answered (Trio time): the heartbeat counts from there."""
        return self._started_at

    @property
    def state(self) -> SessionState:
        """The session's state."""
        return self._state

    @property
    def accepts_requests(self) -> bool:
        """False once the session was aborted: its sid is then unknown to new requests."""
        return self._state is SessionState.OPEN or (
            self._state is SessionState.CLOSING and self._graceful
        )

    @property
    def writable(self) -> bool:
        """Whether a packet queued now would go out at once: open, not upgrading, nothing
        waiting in the queue, and (polling) a GET parked. Volatile packets are dropped
        when this is False."""
        if self._state is not SessionState.OPEN or self.upgrading:
            return False
        if self._queued:
            return False
        transport = self._transport
        return not isinstance(transport, PollingTransport) or transport.writable

    @property
    def transport(self) -> Transport:
        """The name of the current transport."""
        return self._transport.name

    @property
    def upgrade_settled(self) -> trio.Event:
        """Set once the upgrade under way (if any) succeeded or failed."""
        settled = self._upgrade_settled
        return _SETTLED if settled is None else settled

    async def send(self, data: str | bytes) -> None:
        """Queue one message (text or binary) for the client.

        Blocks while the send queue is full (backpressure).

        Raises:
            ConnectionClosed: the session is closing or closed.

        Cancellation: if cancelled, the message was not queued; once queued it will be sent
        unless the session closes first.
        """
        await self.send_packets((Packet(PacketType.MESSAGE, data),))

    def send_nowait(self, data: str | bytes) -> None:
        """Queue one message without blocking.

        Raises:
            trio.WouldBlock: the send queue is full.
            ConnectionClosed: the session is closing or closed.
        """
        self.send_packets_nowait((Packet(PacketType.MESSAGE, data),))

    async def send_packets(self, packets: Sequence[Packet]) -> None:
        """Queue packets as one unit: they are written together, never interleaved.

        Raises:
            ConnectionClosed: the session is closing or closed.

        Blocks: while the queue is over ``max_buffer_bytes``. That wait is bounded: a session
        that stays over its bound for ``slow_consumer_grace`` seconds is closed, and the
        wait then raises ConnectionClosed.

        Cancellation: atomic; if cancelled, nothing was queued.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._state is not SessionState.OPEN:
                raise ConnectionClosed(self._reason_text())
            if self._queued < self._config.max_buffer_bytes:
                break
            if self._room is None:
                self._room = trio.Event()
            await self._room.wait()
        self._enqueue(packets, direct=True)
        cork = LOCAL.cork
        if not cork.depth:
            await trio.lowlevel.cancel_shielded_checkpoint()
        elif cork.count(len(packets)):
            # Corked (see _inline): no yield but every SLICE_FRAMES, so that what the
            # caller writes next shares this write.
            await cork.slice_yield()

    def send_packets_nowait(self, packets: Sequence[Packet], *, force: bool = False) -> None:
        """Like :meth:`send_packets`, without blocking.

        Args:
            packets: the group to queue.
            force: queue even over ``max_buffer_bytes`` (what a broadcast does: it never
                waits for one socket). A session at twice its bound is closed instead, with
                reason ``"slow consumer"``, and ConnectionClosed is raised.

        Raises:
            trio.WouldBlock: the queue is over its bound (not with ``force``).
            ConnectionClosed: the session is closing or closed.
        """
        if self._state is not SessionState.OPEN:
            raise ConnectionClosed(self._reason_text())
        bound = self._config.max_buffer_bytes
        if self._queued >= bound:
            if not force:
                raise trio.WouldBlock
            if self._queued >= 2 * bound:
                log.info("session %s: send queue at %d bytes; closing", self.sid, self._queued)
                self._request_close(CloseReason.SLOW_CONSUMER, graceful=False)
                raise ConnectionClosed(self._reason_text())
        self._enqueue(packets, direct=True)

    def _enqueue(self, packets: Sequence[Packet], *, direct: bool = False) -> None:
        """Queue a group for the send task; with ``direct``, write it from this task instead
        when nothing is queued or being written (a WebSocket only: see ``try_send``)."""
        size = None
        if direct and not self._queued and type(self._transport) is WebSocketTransport:
            left = self._transport.try_send(packets, self._left_unsent)
            if left == 0:
                return
            if left is not None:  # the socket took part: the send task writes the rest
                packets, size = _Unsent(left), left
        try:
            self._queue().send_nowait(packets)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ConnectionClosed(self._reason_text()) from None
        self._queued += _size(packets) if size is None else size
        if self._over_since is None and self._queued >= self._config.max_buffer_bytes:
            self._over_since = trio.current_time()
            if not self._watching and self._nursery is not None:
                self._watching = True
                self._nursery.start_soon(self._watch_slow_consumer)

    def _left_unsent(self, size: int) -> None:
        """A corked write left ``size`` bytes in the channel: the send task writes them."""
        with suppress(ConnectionClosed):
            self._enqueue(_Unsent(size))

    def _queue(self) -> trio.MemorySendChannel[Sequence[Packet]]:
        """The send queue, created (with the send task that drains it) at first use.

        Raises:
            ConnectionClosed: the session is closed.
        """
        send = self._out_send
        if send is None:
            if self._state is SessionState.CLOSED:
                raise ConnectionClosed(self._reason_text())
            send, self._out_recv = trio.open_memory_channel[Sequence[Packet]](math.inf)
            self._out_send = send
            if self._nursery is not None:
                self._nursery.start_soon(self._send_loop)
            # else run() starts it
        return send

    def _written(self, size: int) -> None:
        self._queued -= size
        if self._queued < self._config.max_buffer_bytes:
            self._over_since = None
            self._wake_senders()

    def _wake_senders(self) -> None:
        if self._room is not None:
            self._room.set()
            self._room = None

    async def _watch_slow_consumer(self) -> None:
        # Runs only while the queue is over its bound (rare), so it costs nothing otherwise.
        try:
            while (since := self._over_since) is not None:
                await trio.sleep_until(since + self._config.slow_consumer_grace)
                if self._over_since == since and self._state is SessionState.OPEN:
                    log.info(
                        "session %s: send queue over %d bytes for %.1f s; closing",
                        self.sid,
                        self._config.max_buffer_bytes,
                        self._config.slow_consumer_grace,
                    )
                    self._request_close(CloseReason.SLOW_CONSUMER, graceful=False)
                    return
        finally:
            self._watching = False

    async def receive(self) -> str | bytes:
        """Wait for the next message from the client.

        Raises:
            ConnectionClosed: the session is over and every received message was read.

        With a :class:`SessionHandler` attached, messages go to it, not here: this then blocks until
        the session closes.
        """
        _, receive_channel = self._inbox()
        try:
            return await receive_channel.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ConnectionClosed(self._reason_text()) from None

    def __aiter__(self) -> EngineSocket:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.receive()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    def close(self, reason: CloseReason = CloseReason.FORCED_CLOSE) -> None:
        """Ask for a graceful close: queued packets and a CLOSE packet go out first
        (for at most ``close_timeout`` seconds). Does not block; see :meth:`aclose`.
        """
        self._request_close(reason, graceful=True)

    async def aclose(self) -> None:
        """Close gracefully and wait until every task of the session is gone.

        Cancellation: if cancelled, the close still happens in the background.
        """
        self.close()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Block until the session is closed."""
        if self._finished:
            await trio.lowlevel.checkpoint()
            return
        if self._closed is None:
            self._closed = trio.Event()
        await self._closed.wait()

    async def wait_closing(self) -> None:
        """Block until the session starts closing (``close_reason`` is then set)."""
        await self._close_requested.wait()

    def statistics(self) -> dict[str, object]:
        """Queue fill levels and state, for monitoring."""
        return {
            "state": self._state.value,
            "transport": self._transport.name.value,
            "queued_packets": (
                0 if self._out_recv is None else self._out_recv.statistics().current_buffer_used
            ),
            "queued_bytes": self._queued,
            "queued_messages": (
                0 if self._in_send is None else self._in_send.statistics().current_buffer_used
            ),
        }

    # -- inner workings -------------------------------------------------------------------
    def _inbox(
        self,
    ) -> tuple[trio.MemorySendChannel[str | bytes], trio.MemoryReceiveChannel[str | bytes]]:
        """The channel of received messages for :meth:`receive`, created at first use
        (already closed for sending if the session is no longer open)."""
        if self._in_send is None or self._in_recv is None:
            self._in_send, self._in_recv = trio.open_memory_channel[str | bytes](
                self._config.message_queue_size
            )
            if self._state is not SessionState.OPEN:
                self._in_send.close()
        return self._in_send, self._in_recv

    def _reason_text(self) -> str:
        return (self.close_reason or CloseReason.FORCED_CLOSE).value

    def _request_close(
        self, reason: CloseReason, *, graceful: bool, last_packet: Packet = CLOSE
    ) -> None:
        """Begin closing. Graceful: flush the queue and ``last_packet`` before cancelling."""
        if self._state is not SessionState.OPEN:
            return
        log.debug("session %s closing: %s", self.sid, reason.value)
        self._state = SessionState.CLOSING
        self.close_reason = reason
        self._graceful = graceful
        self._last_packet = last_packet
        self._close_requested.set()
        self._wake_senders()
        if self.handler is not None:
            self.handler.on_closing()

    async def run(
        self,
        handler: Handler | None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the session until it closes. Started by the server in its sessions nursery.

        Error handling: the session ends when it closes; an exception from one of its tasks
        (a bug: peer mistakes close the session without raising) ends it too and propagates
        to the caller, which is the failure boundary (see ``EngineServer``).
        """
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self._out_send is not None:  # the OPEN packet had to wait
                    nursery.start_soon(self._send_loop)
                elif self._transport.name is Transport.POLLING:
                    self._queue()  # every packet waits for a GET: the queue is needed
                if self._over_since is not None and not self._watching:
                    # Over its bound before it started (sent to as soon as it existed).
                    self._watching = True
                    nursery.start_soon(self._watch_slow_consumer)
                nursery.start_soon(self._receive_loop, self._transport)
                if self.handler is not None:
                    self.handler.on_started()
                if handler is not None:
                    self._handler_running = True
                    nursery.start_soon(self._run_handler, handler)
                task_status.started()
                # The caller's status holds the nursery that start() made and left: drop it.
                del task_status
                await self._heartbeat_loop()  # returns once a close was asked for
                # The layer above closes at once: not after the last packets are flushed
                # (a client that is gone would hold that up for close_timeout), nor once
                # every task is gone (a write stuck in a front end that shields it, as
                # Hypercorn does, would hold that up for ever).
                await self._tell_closed()
                # The handler may still read what arrived before the close; then receive()
                # raises ConnectionClosed and it can finish (bounded by close_timeout).
                if self._in_send is not None:
                    self._in_send.close()
                if self._graceful:
                    with trio.move_on_after(self._config.close_timeout):
                        last = Batch((self._last_packet,))
                        self._enqueue(last)
                        await last.done.wait()
                if self._handler_running:
                    self._handler_done = trio.Event()
                    with trio.move_on_after(self._config.close_timeout):
                        await self._handler_done.wait()
                nursery.cancel_scope.cancel()
        finally:
            if self._state is SessionState.OPEN:  # ended by an exception, not a close
                self.close_reason = CloseReason.TRANSPORT_ERROR
                if self.handler is not None:
                    self.handler.on_closing()
            self._state = SessionState.CLOSED
            self._close_requested.set()
            self._wake_senders()
            self._release_queues()
            await self._tell_closed()  # if an exception came before
            final: Packet | None
            if self._graceful:
                final = None
            elif self.close_reason is CloseReason.TRANSPORT_CLOSE:
                final = NOOP if self._transport.name is Transport.POLLING else None
            else:
                final = CLOSE
            try:
                self._transport.close(final)
                await self._transport.aclose()
            finally:
                self._finished = True
                if self._closed is not None:
                    self._closed.set()
                # Nothing of the layer above is kept alive by a closed session.
                self.handler = None
                log.info("session %s closed: %s", self.sid, self._reason_text())

    async def _tell_closed(self) -> None:
        """Run the attached handler's close sequence, once, shielded."""
        handler = self.handler
        if handler is not None and not self._told_closed:
            self._told_closed = True
            with trio.CancelScope(shield=True):
                await handler.on_closed()

    def _release_queues(self) -> None:
        """Close both queues and drop what they hold, so that memory returns at once."""
        if self._out_send is not None and self._out_recv is not None:
            self._out_send.close()
            while True:
                try:
                    group = self._out_recv.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                if isinstance(group, Batch):
                    group.done.set()
        if self._in_send is not None and self._in_recv is not None:
            self._in_send.close()
            while True:
                try:
                    self._in_recv.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
        self._queued = 0

    async def _wait_handler_caught_up(self) -> None:
        # A poll answers with everything queued when it arrives. Let the application react
        # to the messages it was just given first (a few scheduling rounds at most), so that
        # replies sent right away share one response, as with the JS server.
        for _ in range(_CATCH_UP_ROUNDS):
            if self._in_send is None:  # a message handler: each message is dispatched
                return  # before the receive task reads the next
            stats = self._in_send.statistics()
            if stats.current_buffer_used == 0 and stats.tasks_waiting_receive:
                return
            await trio.lowlevel.checkpoint()

    async def _run_handler(self, handler: Handler) -> None:
        try:
            await handler(self)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("handler of session %s failed", self.sid)
        finally:
            self._handler_running = False
            if self._handler_done is not None:
                self._handler_done.set()
        self.close()

    async def _heartbeat_loop(self) -> None:
        """Ping every ``ping_interval``; close the session when a pong does not come within
        ``ping_timeout``. Runs in the session's task, as deadlines on its wait for the close
        (a task of its own would cost memory in every idle session for a timer).

        Returns once a close was asked for (by anyone, or here on a ping timeout).
        """
        # Absolute deadlines from the session's start, so that scheduling delays do not add up.
        config = self._config
        closing = self._close_requested
        if self.protocol == 3:
            await self._watch_client_pings()
            return
        next_ping = self._started_at + config.ping_interval
        while True:
            with trio.move_on_at(min(next_ping, self._deadline)):
                await closing.wait()
                return
            if self._deadline_passed():
                return
            if trio.current_time() < next_ping:
                continue  # the deadline was moved while this waited for it
            if not self._ping():  # the queue is closed: so is the session, or soon
                await closing.wait()
                return
            # The pong takes this scope away and cancels it (see _on_packet); its deadline is
            # the ping timeout.
            pong_by = next_ping + config.ping_timeout
            with trio.CancelScope(deadline=pong_by) as scope:
                self._pong_scope = scope
                while True:
                    with trio.move_on_at(self._deadline):
                        await closing.wait()
                        return
                    if self._deadline_passed():
                        return
            if self._pong_scope is scope:  # still there: the deadline passed without a pong
                self._pong_scope = None
                self._request_close(CloseReason.PING_TIMEOUT, graceful=False)
                return
            next_ping = trio.current_time() + config.ping_interval

    def _deadline_passed(self) -> bool:
        """Close the session if the deadline of :meth:`close_at` has come."""
        if trio.current_time() < self._deadline:
            return False
        log.info("session %s: its close deadline passed", self.sid)
        self._request_close(CloseReason.FORCED_CLOSE, graceful=True)
        return True

    async def _watch_client_pings(self) -> None:
        """Engine.IO v3: the client pings and the server answers; the session closes when
        no ping comes within ``ping_interval + ping_timeout`` (each ping moves the deadline,
        see _on_packet). Returns once a close was asked for."""
        config = self._config
        with trio.CancelScope(
            deadline=self._started_at + config.ping_interval + config.ping_timeout
        ) as scope:
            self._pong_scope = scope
            await self._close_requested.wait()
            return
        self._pong_scope = None
        self._request_close(CloseReason.PING_TIMEOUT, graceful=False)

    def _ping(self) -> bool:
        """Queue a PING (or write it at once); False if the session is closed."""
        try:
            self._enqueue((PING,), direct=True)
        except ConnectionClosed:
            return False
        return True

    async def _send_loop(self) -> None:
        out = self._out_recv
        assert out is not None  # started by _queue(), which made it
        pending: list[Packet] = []
        size = 0  # bytes of pending, given back to the queue's bound once written
        written: list[trio.Event] = []  # set once the groups carrying them are written
        while True:
            transport = self._transport
            if not pending:
                await transport.wait_writable()
                if transport is not self._transport:
                    continue
                if transport.name is Transport.POLLING:
                    await self._wait_handler_caught_up()
                size += _take(await out.receive(), pending, written)
            limit = self._config.max_packets_per_poll if transport.name is Transport.POLLING else 0
            while not limit or len(pending) < limit:
                try:
                    group = out.receive_nowait()
                except trio.WouldBlock:
                    break
                size += _take(group, pending, written)
            if transport.name is Transport.WEBSOCKET:
                # The last transport a session can have: no upgrade will interrupt it, so
                # no cancel scope per write (they are garbage the hot path can do without).
                try:
                    await transport.send(pending)
                except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                    self._request_close(CloseReason.TRANSPORT_CLOSE, graceful=False)
                    return
            else:
                with trio.CancelScope() as scope:
                    # Cancelled when an upgrade replaces the transport: the batch is then
                    # written again, whole, on the new one.
                    self._send_scope = scope
                    try:
                        await transport.send(pending)
                    except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                        if transport is self._transport:
                            self._request_close(CloseReason.TRANSPORT_CLOSE, graceful=False)
                            return
                        continue
                self._send_scope = None
                if scope.cancelled_caught:
                    continue
            pending = []
            self._written(size)
            size = 0
            if written:
                for event in written:
                    event.set()
                written = []

    async def _receive_loop(
        self,
        transport: AnyTransport,
        packets: Sequence[Packet] = (),
        index: int = 0,
        scoped: bool = False,
    ) -> None:
        """Read the transport and dispatch what comes, starting with ``packets[index:]``
        (what a reader that handed over had not dispatched yet: see :class:`Reader`), in a
        scope of the reader's own if ``scoped``."""
        reader = Reader(self, transport)
        try:
            if scoped:
                reader._wants_scope = True
                await self._read_scoped(reader, transport, packets, index)
            else:
                await self._read(reader, transport, packets, index)
        finally:
            if not reader._retired:
                # No one reads this transport any more: requests still bringing packets to
                # it (POSTs) are refused at once instead of waiting for a reader.
                transport.stop_receiving()

    async def _read_scoped(
        self, reader: Reader, transport: AnyTransport, packets: Sequence[Packet], index: int
    ) -> None:
        reader._scope = trio.CancelScope()
        with reader._scope:
            await self._read(reader, transport, packets, index)

    async def _read(
        self, reader: Reader, transport: AnyTransport, packets: Sequence[Packet], index: int
    ) -> None:
        # Waiting for the network happens here, outside the cork (an idle session's task
        # holds no more than this frame); when one read brought several messages, they are
        # dispatched corked, so that all they cause to be written goes out together when the
        # scheduler next polls (see _inline).
        while True:
            if packets:  # (even when all were dispatched: the transport may hold more)
                cork = LOCAL.cork
                slices = cork.slices
                dispatch = self._dispatch_read(reader, transport, packets, index)
                if transport.message_ready():
                    # More messages are read already: corked, their replies share writes
                    # (and their time is measured: see SLOW_STEP).
                    if reader._started is None:
                        reader._started = _clock()
                    outcome = await run_inline(dispatch, None)
                else:
                    # One message (the common case at low load): its handler's own driver
                    # corks what it writes; a driver here would only cost time. Measured
                    # only if it is large (or one of several, from a polling POST).
                    if reader._started is None and (
                        len(packets) - index > 1
                        or (index < len(packets) and len(packets[index].data) >= HEAVY_BYTES)
                    ):
                        reader._started = _clock()
                    outcome = await dispatch
                if outcome is False:
                    return
                if cork.slices != slices:  # a burst that yielded in slices: not charged
                    if reader._started is not None:
                        reader._started = _clock()
                elif reader._started is not None and reader.should_pause():
                    # The step held the loop: let the others have as long (what it wrote
                    # goes out as the scheduler polls, before the pause).
                    await reader.pause()
                if outcome is not True:
                    if outcome.scoped:  # the reader wants a scope of its own from here on
                        await self._read_scoped(reader, transport, outcome.packets, outcome.next)
                        return
                    packets, index = outcome.packets, outcome.next
                    continue  # dispatch the rest of what was read
            received = await self._receive(transport)
            if received is None:
                return
            reader._started = None  # a new step: measured if it needs to be (see above)
            packets, index = received, 0

    async def _receive(self, transport: AnyTransport) -> Sequence[Packet] | None:
        """The transport's next packets; None (the session is closing) when it ended or
        sent something unreadable."""
        try:
            return await transport.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError, ConnectionClosed):
            if transport is self._transport:
                self._request_close(CloseReason.TRANSPORT_CLOSE, graceful=False)
        except RemoteProtocolError as exc:
            log.info("session %s: bad packet: %s", self.sid, exc)
            self._request_close(CloseReason.PARSE_ERROR, graceful=False)
        return None

    async def _dispatch_read(
        self,
        reader: Reader,
        transport: AnyTransport,
        packets: Sequence[Packet],
        index: int,
    ) -> bool | _Rest:
        """Dispatch ``packets[index:]``, then the messages the transport already holds
        (a WebSocket read that brought several). Returns True to read on, False to stop, or
        where to go on (see :class:`_Rest`): in a scope of the reader's own (see
        :class:`Reader`), or after a pause once the reader held the loop for
        :data:`SLOW_STEP`."""
        while True:
            rest: _Rest | None = None
            try:
                while index < len(packets):
                    # Nothing is read once the session closes, not even the rest of
                    # the payload that carried the packet that closed it.
                    if self._state is not SessionState.OPEN:
                        return False
                    packet = packets[index]
                    index += 1
                    reader._packets, reader._index = packets, index
                    dispatched = await self._on_packet(packet, reader)
                    if reader._retired or not dispatched:
                        return False  # another task reads now, from where this one was
                    if reader._wants_scope and reader._scope is None:
                        rest = _Rest(packets, index, True)  # corked on, in its own scope
                        return rest
                    if index < len(packets) and reader.should_pause():
                        rest = _Rest(packets, index, False)
                        return rest
            finally:
                if not reader._retired and (rest is None or index >= len(packets)):
                    done = getattr(packets, "done", None)
                    if done is not None:
                        done.set()
            if not transport.message_ready():
                return True
            if reader.should_pause():
                return _Rest(packets, index, False)
            received = await self._receive(transport)
            if received is None:
                return False
            packets, index = received, 0

    async def _on_packet(self, packet: Packet, reader: Reader) -> bool:
        ptype = packet.type
        if ptype is PacketType.MESSAGE:
            if self.handler is not None:
                await self.handler.on_message(packet.data, reader)
                return True
            send_channel, _ = self._inbox()
            try:
                await send_channel.send(packet.data)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return False
        elif ptype is PacketType.PONG:
            scope = self._pong_scope
            # (Engine.IO v3: that scope is the wait for the client's next ping.)
            if scope is not None and self.protocol != 3:  # else no ping is outstanding
                self._pong_scope = None
                scope.cancel()
        elif ptype is PacketType.PING:
            if self.protocol == 3 and self._pong_scope is not None:
                config = self._config
                self._pong_scope.deadline = (
                    trio.current_time() + config.ping_interval + config.ping_timeout
                )
            reply = PONG_PROBE if packet == PING_PROBE else PONG
            with suppress(ConnectionClosed):
                self._enqueue((reply,), direct=True)
        elif ptype is PacketType.CLOSE:
            if self._transport.name is Transport.POLLING:
                # Answer the pending (or the next, briefly) GET with a noop, then close.
                self._request_close(CloseReason.TRANSPORT_CLOSE, graceful=True, last_packet=NOOP)
            else:
                self._request_close(CloseReason.TRANSPORT_CLOSE, graceful=False)
            return False
        else:
            log.info("session %s: unexpected %s packet", self.sid, ptype.name)
            self._request_close(CloseReason.PARSE_ERROR, graceful=False)
            return False
        return True

    async def upgrade(self, channel: WebSocketChannel) -> None:
        """Run the polling→WebSocket upgrade on ``channel``, then serve the session on it.

        Returns when the upgrade failed (the WebSocket should then be closed) or when the
        session has closed.
        """
        if (
            self._state is not SessionState.OPEN
            or self.upgrading
            or self._transport.name is not Transport.POLLING
        ):
            return
        self.upgrading = True
        self._upgrade_settled = settled = trio.Event()
        switched = False
        try:
            with trio.move_on_after(self._config.upgrade_timeout):
                if await _decode(channel) != PING_PROBE:
                    return
                await channel.send_message("3probe")
                self.probe_done = True
                polling = self._transport
                assert isinstance(polling, PollingTransport)
                polling.release(NOOP)
                if (await _decode(channel)).type is not PacketType.UPGRADE:
                    return
                switched = self._switch(WebSocketTransport(channel))
        except (ConnectionClosed, RemoteProtocolError):
            return
        finally:
            self.upgrading = False
            self.probe_done = False
            self._upgrade_settled = None
            settled.set()
        if switched:
            await self.wait_closed()

    def _switch(self, transport: WebSocketTransport) -> bool:
        if self._state is not SessionState.OPEN or self._nursery is None:
            return False
        old = self._transport
        self._transport = transport
        old.close(NOOP)
        if self._send_scope is not None:
            self._send_scope.cancel()
        self._nursery.start_soon(self._receive_loop, transport)
        log.debug("session %s upgraded to websocket", self.sid)
        return True


async def _decode(channel: WebSocketChannel) -> Packet:
    return decode_packet(await channel.get_message())


class _Unsent(tuple[Packet, ...]):
    """The group queued after a direct write that the socket took only in part: no packets,
    but the send task's write of it writes the rest (which the channel keeps)."""

    size: int

    def __new__(cls, size: int) -> _Unsent:
        self = super().__new__(cls)
        self.size = size
        return self


def _take(group: Sequence[Packet], pending: list[Packet], written: list[trio.Event]) -> int:
    """Add a group to the send loop's pending packets; return its size (see _size)."""
    if type(group) is _Unsent:
        return group.size
    pending.extend(group)
    if isinstance(group, Batch):
        written.append(group.done)
    return _size(group)


def _size(packets: Sequence[Packet]) -> int:
    """What a group counts against the send queue's bound: its data, plus a little per packet."""
    if type(packets) is _Unsent:
        return packets.size
    if len(packets) == 1:  # most groups (and every broadcast recipient's): no generator
        return len(packets[0].data) + 8
    return sum(len(packet.data) + 8 for packet in packets)
