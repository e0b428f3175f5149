"""The transports of one Engine.IO client session: the handshake on the first one, the probe
upgrade from polling to WebSocket, and which one is current.

:class:`SessionTransports` is composed into
:class:`~trio_sio.engineio.client.EngineClient`, which gives it what it needs from the
session (the send lock, whether it is closing, how to end it); the client's sender and
receiver read :attr:`SessionTransports.current`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from ..protocol.engineio import UPGRADE, CloseReason, OpenInfo, Packet, decode_open
from ..protocol.errors import ConnectionClosed
from ._client_transports import (
    ClientWebSocket,
    Endpoint,
    PollingTransport,
    open_websocket_transport,
    probe_websocket,
)

__all__ = ["SessionTransports"]

logger = logging.getLogger("trio_sio.engineio.client")


class SessionTransports:
    """The transports of one session.

    Args:
        endpoint: the server.
        names: ``"polling"`` and/or ``"websocket"``; the session starts on the first.
        upgrade: whether a polling session may move to WebSocket.
        connect_timeout: seconds allowed for the upgrade probe.
        lock: the sender's lock, held while a batch is written; the switch takes it.
        closing: whether the session is closing (our CLOSE is on its way).
        finish: ends the session.

    Attributes:
        current: the transport the session runs on (None before the handshake).
        polling: the polling transport, if the session started on it (closed once the
            session moved to WebSocket).
        settled: set once the session runs on WebSocket, or will not move to it.
        pause_requested: the upgrade waits for the GET loop to stop (see :meth:`paused`).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        names: tuple[str, ...],
        *,
        upgrade: bool,
        connect_timeout: float,
        lock: trio.Lock,
        closing: Callable[[], bool],
        finish: Callable[[CloseReason], None],
    ) -> None:
        self._endpoint = endpoint
        self._names = names
        self._upgrade = upgrade
        self._connect_timeout = connect_timeout
        self._lock = lock
        self._closing = closing
        self._finish = finish
        self.current: PollingTransport | ClientWebSocket | None = None
        self.polling: PollingTransport | None = None
        self.settled = trio.Event()
        self.pause_requested = False
        self._poll_paused = trio.Event()
        self._switched = trio.Event()

    @property
    def first(self) -> str:
        """The name of the transport the session starts on."""
        return self._names[0]

    async def handshake(self) -> tuple[OpenInfo, list[Packet]]:
        """Open the session on the first transport.

        Returns:
            The server's handshake data, and the packets that came with it.

        Raises:
            RemoteProtocolError: the first packet is not a valid OPEN.
            what the transport raises (see ``TRANSPORT_ERRORS``), or ConnectionClosed.

        Cancellation:
            Safe: what was opened is closed by :meth:`aclose`.
        """
        if self.first == "polling":
            polling = PollingTransport(self._endpoint)
            self.current = self.polling = polling
            packets = await polling.poll()
        else:
            ws = await open_websocket_transport(self._endpoint, None)
            self.current = ws
            packets = await ws.receive_batch()
        info = decode_open(packets[0])
        if isinstance(self.current, PollingTransport):
            self.current.sid = info.sid
        return info, packets[1:]

    def start_upgrade(self, nursery: trio.Nursery, info: OpenInfo) -> None:
        """Start the upgrade task when a polling session may move to WebSocket (the
        server offers it and the options allow it); else mark the upgrade settled."""
        if (
            self.first == "polling"
            and self._upgrade
            and "websocket" in self._names
            and "websocket" in info.upgrades
        ):
            nursery.start_soon(self._upgrade_task, info.sid)
        else:
            self.settled.set()

    async def paused(self) -> None:
        """In the GET loop, with no GET in flight: let the upgrade switch transports, and
        block until it did.

        Cancellation: safe; it only waits.
        """
        self._poll_paused.set()
        await self._switched.wait()

    async def _upgrade_task(self, sid: str) -> None:
        polling = self.current
        assert isinstance(polling, PollingTransport)
        ws = None
        with trio.move_on_after(self._connect_timeout) as scope:
            ws = await probe_websocket(self._endpoint, sid)
        if scope.cancelled_caught:
            logger.info("websocket upgrade probe timed out, staying on polling")
        if ws is None:
            self.settled.set()
            return
        if self._closing():
            await ws.abort()
            return
        logger.debug("probe answered; pausing polling")
        # Let the parked GET come back (the server releases it with a NOOP) and keep no
        # GET in flight; POSTs go on until we hold the send lock.
        try:
            self.pause_requested = True
            await self._poll_paused.wait()
            async with self._lock:  # waits for an in-flight POST
                await ws.send(UPGRADE)
                self.current = ws
                self.pause_requested = False
                self._switched.set()
                self.settled.set()
        except BaseException as exc:
            if self.current is not ws:  # else the session closes it
                await ws.abort()
            if isinstance(exc, ConnectionClosed | trio.BrokenResourceError | OSError):
                self._finish(CloseReason.TRANSPORT_CLOSE)
                return
            raise
        logger.debug("engine.io session %s upgraded to websocket", sid)
        await polling.aclose()

    async def aclose(self) -> None:
        """Close the transports abruptly (the session is over).

        Cancellation:
            Call it shielded: the transports are then closed before it returns.
        """
        if self.polling is not None:
            await self.polling.aclose()
        if isinstance(self.current, ClientWebSocket):
            await self.current.abort()
