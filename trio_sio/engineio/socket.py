"""One Engine.IO session on the server, and the tasks that run it.

Each session runs in its own nursery (inside the server's sessions nursery) with separate
tasks:

- **receive**: takes packets from the current transport and dispatches them;
- **heartbeat**: pings every ``ping_interval`` and closes the session when no pong comes
  within ``ping_timeout`` (a deadline of its own, not a periodic sweep);
- **send**: the only task that writes; it drains the bounded send queue into the transport
  (one polling response per batch, or one WebSocket frame per packet);
- **handler**: the application's ``async def handler(socket)``.

Closing the session cancels that nursery: no task, timer or queue outlives it.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

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
from .config import EngineConfig, RequestHead
from .transports import Batch, PollingTransport, WebSocketChannel, WebSocketTransport

if TYPE_CHECKING:
    from typing import TypeAlias

    AnyTransport: TypeAlias = PollingTransport | WebSocketTransport

__all__ = ["EngineSocket", "SessionState"]

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

Handler = Callable[["EngineSocket"], Awaitable[None]]


class EngineSocket:
    """A server-side Engine.IO session.

    Created by the server at handshake; the application sees it in its handler.

    Attributes:
        sid: the session id (secret: it authorises requests on this session).
        request: the handshake request.
        close_reason: why the session ended, once it has.
    """

    def __init__(
        self,
        sid: str,
        transport: AnyTransport,
        config: EngineConfig,
        request: RequestHead,
        open_packet: Packet,
    ) -> None:
        self.sid = sid
        self.request = request
        self.close_reason: CloseReason | None = None
        self._config = config
        self._transport: AnyTransport = transport
        self._state = SessionState.OPEN
        # Unbounded as a channel: the bound is in bytes (``_queued``, see _enqueue).
        self._out_send, self._out_recv = trio.open_memory_channel[Sequence[Packet]](math.inf)
        self._queued = 0
        self._room: trio.Event | None = None
        self._over_since: float | None = None
        self._watching = False
        self._in_send, self._in_recv = trio.open_memory_channel[str | bytes](
            config.message_queue_size
        )
        self._nursery: trio.Nursery | None = None
        self._enqueue((open_packet,))
        self._started_at = trio.current_time()
        self._pong = trio.Event()
        self._close_requested = trio.Event()
        self._handler_done = trio.Event()
        self._graceful = False
        self._last_packet = CLOSE
        self._closed = trio.Event()
        self._send_scope: trio.CancelScope | None = None
        self.upgrading = False
        self.probe_done = False
        self.upgrade_settled = trio.Event()
        #: if set, received messages are passed to it by the receive task (in order, one at
        #: a time, awaited: a slow handler slows the reading) instead of :meth:`receive`.
        self.message_handler: Callable[[str | bytes], Awaitable[None]] | None = None
        #: free for the layer above (the Socket.IO server keeps its connection here).
        self.context: Any = None

    # -- public API -----------------------------------------------------------------------
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
        self._enqueue(packets)
        await trio.lowlevel.cancel_shielded_checkpoint()

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
        self._enqueue(packets)

    def _enqueue(self, packets: Sequence[Packet]) -> None:
        try:
            self._out_send.send_nowait(packets)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ConnectionClosed(self._reason_text()) from None
        self._queued += _size(packets)
        if self._over_since is None and self._queued >= self._config.max_buffer_bytes:
            self._over_since = trio.current_time()
            if not self._watching and self._nursery is not None:
                self._watching = True
                self._nursery.start_soon(self._watch_slow_consumer)

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
        """
        try:
            return await self._in_recv.receive()
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
        await self._closed.wait()

    async def wait_closed(self) -> None:
        """Block until the session is closed."""
        await self._closed.wait()

    async def wait_closing(self) -> None:
        """Block until the session starts closing (``close_reason`` is then set)."""
        await self._close_requested.wait()

    def statistics(self) -> dict[str, object]:
        """Queue fill levels and state, for monitoring."""
        return {
            "state": self._state.value,
            "transport": self._transport.name.value,
            "queued_packets": self._out_send.statistics().current_buffer_used,
            "queued_bytes": self._queued,
            "queued_messages": self._in_send.statistics().current_buffer_used,
        }

    # -- inner workings -------------------------------------------------------------------
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
                nursery.start_soon(self._heartbeat_loop)
                nursery.start_soon(self._send_loop)
                nursery.start_soon(self._receive_loop, self._transport)
                if handler is not None:
                    nursery.start_soon(self._run_handler, handler)
                else:
                    self._handler_done.set()
                task_status.started()
                await self._close_requested.wait()
                # The handler may still read what arrived before the close; then receive()
                # raises ConnectionClosed and it can finish (bounded by close_timeout).
                self._in_send.close()
                if self._graceful:
                    with trio.move_on_after(self._config.close_timeout):
                        last = Batch((self._last_packet,))
                        self._enqueue(last)
                        await last.done.wait()
                with trio.move_on_after(self._config.close_timeout):
                    await self._handler_done.wait()
                nursery.cancel_scope.cancel()
        finally:
            if self._state is SessionState.OPEN:  # ended by an exception, not a close
                self.close_reason = CloseReason.TRANSPORT_ERROR
            self._state = SessionState.CLOSED
            self._close_requested.set()
            self._wake_senders()
            self._release_queues()
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
                self._closed.set()
                # Nothing of the layer above is kept alive by a closed session.
                self.message_handler = None
                self.context = None
                log.info("session %s closed: %s", self.sid, self._reason_text())

    def _release_queues(self) -> None:
        """Close both queues and drop what they hold, so that memory returns at once."""
        self._out_send.close()
        self._in_send.close()
        for channel in (self._out_recv, self._in_recv):
            while True:
                try:
                    item = channel.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                if isinstance(item, Batch):
                    item.done.set()
        self._queued = 0

    async def _wait_handler_caught_up(self) -> None:
        # A poll answers with everything queued when it arrives. Let the application react
        # to the messages it was just given first (a few scheduling rounds at most), so that
        # replies sent right away share one response, as with the JS server.
        for _ in range(_CATCH_UP_ROUNDS):
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
            self._handler_done.set()
        self.close()

    async def _heartbeat_loop(self) -> None:
        # Absolute deadlines from the session's start, so that scheduling delays do not add up.
        config = self._config
        next_ping = self._started_at + config.ping_interval
        while True:
            await trio.sleep_until(next_ping)
            self._pong = trio.Event()
            with trio.move_on_at(next_ping + config.ping_timeout):
                try:
                    self._enqueue((PING,))
                except ConnectionClosed:
                    return
                await self._pong.wait()
                next_ping = trio.current_time() + config.ping_interval
                continue
            self._request_close(CloseReason.PING_TIMEOUT, graceful=False)
            return

    async def _send_loop(self) -> None:
        pending: list[Packet] = []
        size = 0  # bytes of pending, given back to the queue's bound once written
        written: list[trio.Event] = []  # set once the groups carrying them are written

        def take(group: Sequence[Packet]) -> None:
            nonlocal size
            pending.extend(group)
            size += _size(group)
            if isinstance(group, Batch):
                written.append(group.done)

        while True:
            transport = self._transport
            if not pending:
                await transport.wait_writable()
                if transport is not self._transport:
                    continue
                if transport.name is Transport.POLLING:
                    await self._wait_handler_caught_up()
                take(await self._out_recv.receive())
            limit = self._config.max_packets_per_poll if transport.name is Transport.POLLING else 0
            while not limit or len(pending) < limit:
                try:
                    take(self._out_recv.receive_nowait())
                except trio.WouldBlock:
                    break
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

    async def _receive_loop(self, transport: AnyTransport) -> None:
        try:
            while True:
                try:
                    packets = await transport.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError, ConnectionClosed):
                    if transport is self._transport:
                        self._request_close(CloseReason.TRANSPORT_CLOSE, graceful=False)
                    return
                except RemoteProtocolError as exc:
                    log.info("session %s: bad packet: %s", self.sid, exc)
                    self._request_close(CloseReason.PARSE_ERROR, graceful=False)
                    return
                try:
                    for packet in packets:
                        # Nothing is read once the session closes, not even the rest of
                        # the payload that carried the packet that closed it.
                        if self._state is not SessionState.OPEN or not await self._on_packet(
                            packet
                        ):
                            return
                finally:
                    done = getattr(packets, "done", None)
                    if done is not None:
                        done.set()
        finally:
            # No one reads this transport any more: requests still bringing packets to it
            # (POSTs) are refused at once instead of waiting for a reader.
            transport.stop_receiving()

    async def _on_packet(self, packet: Packet) -> bool:
        ptype = packet.type
        if ptype is PacketType.MESSAGE:
            if self.message_handler is not None:
                await self.message_handler(packet.data)
                return True
            try:
                await self._in_send.send(packet.data)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return False
        elif ptype is PacketType.PONG:
            self._pong.set()
        elif ptype is PacketType.PING:
            reply = PONG_PROBE if packet == PING_PROBE else PONG
            with suppress(ConnectionClosed):
                self._enqueue((reply,))
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
        self.upgrade_settled = trio.Event()
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
            self.upgrade_settled.set()
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


def _size(packets: Sequence[Packet]) -> int:
    """What a group counts against the send queue's bound: its data, plus a little per packet."""
    return sum(len(packet.data) + 8 for packet in packets)
