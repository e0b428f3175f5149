"""The task that reads one session's packets and routes them, with events dispatched inline.

An event's handler runs in the reading task until it first waits (:func:`run_inline`, the
server's approach); only then does a new reading task take over, and the old one finishes
the handler and ends. So a handler that does not wait costs no task and no task switch:
the event goes from the session's receive queue to its handler in one hop.

The reader never runs in the manager's task: a handler that waits for long holds only the
task it started in, never the manager's reconnection logic.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from ..engineio._inline import run_inline
from ..protocol.errors import ConnectionClosed, RemoteProtocolError
from ..protocol.socketio import NEED_DATA, Packet, PacketDecoder
from ._link import Session

__all__ = ["OnWait", "Reader", "run_inline"]

log = logging.getLogger("trio_sio.client")

#: Messages taken without a checkpoint in a row (then the reader lets other tasks run).
BURST = 32

#: Called (once) when a handler running inline is about to wait.
OnWait = Callable[[], None]
Route = Callable[[Packet, Session, OnWait], Awaitable[None]]


class Reader:
    """Reads ``session`` until it ends, routing each packet with ``route``.

    Attributes:
        done: set once the session ended (or a packet was refused); then ``reason`` (the
            disconnect reason) or ``error`` (an exception for the manager to raise) is set.
        connected: set once ``all_connected()`` was true after a packet.
    """

    def __init__(
        self,
        session: Session,
        decoder: PacketDecoder,
        route: Route,
        all_connected: Callable[[], bool],
        on_packet: Callable[[Packet], Awaitable[None]] | None,
    ) -> None:
        self.session = session
        self._decoder = decoder
        self._route = route
        self._all_connected = all_connected
        self._on_packet = on_packet
        self.done = trio.Event()
        self.connected = trio.Event()
        self.progress = trio.Event()  # set at each of the two above
        self.reason = "transport close"
        self.error: BaseException | None = None
        self._current: object | None = None  # the token of the task reading now
        self._nursery: trio.Nursery | None = None

    def start(self, nursery: trio.Nursery) -> None:
        """Start reading in a task of ``nursery`` (the client's)."""
        self._nursery = nursery
        nursery.start_soon(self._run)

    async def _run(self) -> None:
        token = self._current = object()
        engine = self.session.engine
        decoder = self._decoder

        def hand_over() -> None:
            if self._current is token and not self.done.is_set():
                self._current = None  # this task finishes the handler, then ends
                assert self._nursery is not None
                self._nursery.start_soon(self._run)

        burst = 0
        try:
            while True:
                packet = decoder.next_packet()
                if packet is NEED_DATA:
                    # Take what is queued without a task switch; wait only when nothing is.
                    try:
                        if burst < BURST:
                            message = engine.receive_nowait()
                            burst += 1
                        else:
                            burst = 0
                            await trio.lowlevel.checkpoint()
                            message = engine.receive_nowait()
                    except trio.WouldBlock:
                        burst = 0
                        try:
                            message = await engine.receive()
                        except ConnectionClosed:
                            break
                    except ConnectionClosed:
                        break
                    decoder.feed(message)
                    continue
                assert isinstance(packet, Packet)
                if self._on_packet is not None:
                    await self._on_packet(packet)
                await self._route(packet, self.session, hand_over)
                if self._current is not token:
                    return  # handed over while a handler waited
                if not self.connected.is_set() and self._all_connected():
                    self.connected.set()
                    self.progress.set()
        except RemoteProtocolError as exc:
            log.info("bad packet from the server: %s", exc)
            self.reason = "parse error"
            await engine.aclose()
        except Exception as exc:  # a refusal (for the manager), or a surprise: its to raise
            self.error = exc
        else:
            self.reason = engine.close_reason or "transport close"
        finally:
            if self._current is token:
                self.done.set()
                self.progress.set()
