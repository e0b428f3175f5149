"""The receiving half of the Engine.IO client: what is done with each packet from the server,
the GET loop (on polling), the reading of the WebSocket (by a task of the client's, or by the
task that receives), and the heartbeat watchdog.

:class:`Receiver` is composed into :class:`~trio_sio.engineio.client.EngineClient`, which
gives it the session's parts it works with (the inbox, the sender, the transports) and the
functions it needs (whether the session is closing, how to end it, what to do on a PING).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from ..protocol.engineio import CloseReason, Packet, PacketType
from ..protocol.errors import ConnectionClosed, RemoteProtocolError
from ._client_connect import SessionTransports
from ._client_inbox import Inbox
from ._client_sender import Sender
from ._client_transports import TRANSPORT_ERRORS, ClientWebSocket, PollingTransport
from ._heartbeat import HeartbeatWatchdog

__all__ = ["Receiver"]

logger = logging.getLogger("trio_sio.engineio.client")


class Receiver:
    """What one session receives.

    Args:
        inbox: where received MESSAGE data goes.
        sender: for a PONG or a flush the WebSocket asks for.
        transports: the session's transports (:attr:`SessionTransports.current` is read).
        read_in_receive: on WebSocket, leave the reading to the task that receives.
        closing: whether the session is closing (our CLOSE is on its way).
        finish: ends the session.
        finished: set once the session ended.
        pinged: called (in the receiving task) for each PING from the server.
    """

    def __init__(
        self,
        inbox: Inbox,
        sender: Sender,
        transports: SessionTransports,
        *,
        read_in_receive: bool,
        closing: Callable[[], bool],
        finish: Callable[[CloseReason], None],
        finished: trio.Event,
        pinged: Callable[[], Awaitable[None]],
    ) -> None:
        self._inbox = inbox
        self._sender = sender
        self._transports = transports
        self._read_in_receive = read_in_receive
        self._closing = closing
        self._finish = finish
        self._finished = finished
        self._pinged = pinged
        self._initial_packets: list[Packet] = []
        self._watchdog: HeartbeatWatchdog | None = None

    def start(self, nursery: trio.Nursery, timeout: float, packets: list[Packet]) -> None:
        """Start the receive loop, which first handles ``packets`` (those that came with
        the handshake), and the watchdog, which ends the session after ``timeout`` seconds
        without a packet from the server."""
        self._initial_packets = packets
        self._watchdog = HeartbeatWatchdog(timeout)
        nursery.start_soon(self._receive_loop)
        nursery.start_soon(self._watchdog_task, self._watchdog)

    async def _watchdog_task(self, watchdog: HeartbeatWatchdog) -> None:
        await watchdog.wait_expired()
        logger.info("no packet from the server for %.3f s", watchdog.timeout)
        self._finish(CloseReason.PING_TIMEOUT)

    async def _handle(self, packet: Packet) -> bool:
        """Act on one packet from the server; False once the session is over."""
        assert self._watchdog is not None
        self._watchdog.reset()
        ptype = packet.type
        if ptype is PacketType.MESSAGE:
            self._inbox.put(packet.data)
        elif ptype is PacketType.PING:
            await self._pinged()
        elif ptype is PacketType.CLOSE:
            self._finish(CloseReason.TRANSPORT_CLOSE)
            return False
        elif ptype in (PacketType.OPEN, PacketType.UPGRADE):
            raise RemoteProtocolError(f"unexpected {ptype.name} packet from the server")
        # NOOP (releases a long-poll) and PONG need nothing.
        return True

    async def _receive_loop(self) -> None:
        """Handle the packets that came with the handshake; then, while on polling, run the
        GET loop; once on WebSocket, leave the reading to :meth:`read_websocket`."""
        transports = self._transports
        try:
            for packet in self._initial_packets:
                if not await self._handle(packet):
                    return
            self._initial_packets = []
            while True:
                transport = transports.current
                if not isinstance(transport, PollingTransport):
                    if not self._read_in_receive:
                        await self._websocket_loop()
                        return
                    assert isinstance(transport, ClientWebSocket)
                    self._inbox.go_direct(transport.wakes_on_close)
                    return
                if self._closing():  # our CLOSE may already have ended the session
                    await trio.sleep_forever()
                for packet in await transport.poll():
                    if not await self._handle(packet):
                        return
                await self._inbox.wait_room()
                if transports.pause_requested:
                    await transports.paused()
        except BaseException as exc:
            self._receive_failed(exc)

    async def _websocket_loop(self) -> None:
        """Read the WebSocket in this task (when ``receive()`` does not), a read at a time,
        while the inbox has room."""
        while not self._finished.is_set() and not self._inbox.read_ended:
            await self.read_websocket()
            await self._inbox.wait_room()

    async def read_websocket(self) -> None:
        """One read of the WebSocket, in the task of
        :meth:`~trio_sio.engineio.client.EngineClient.receive`: its packets handled.

        Cancellation: safe; nothing read is lost.
        """
        try:
            await self._inbox.read(self._read_once)
        except BaseException as exc:
            self._receive_failed(exc)

    async def _read_once(self) -> None:
        transport = self._transports.current
        assert isinstance(transport, ClientWebSocket)
        for packet in await transport.receive_batch():
            if not await self._handle(packet):
                break
        if transport.needs_flush and not self._closing():  # a pong not taken at once
            self._sender.flush_soon()

    def _receive_failed(self, exc: BaseException) -> None:
        """End the session for a receive error; re-raise anything else."""
        if isinstance(exc, ConnectionClosed):
            logger.debug("websocket closed: %s", exc)
            if not self._closing():  # else aclose() is finishing the closing handshake
                self._finish(CloseReason.TRANSPORT_CLOSE)
        elif isinstance(exc, RemoteProtocolError):
            logger.info("bad data from the server: %r", exc)
            self._finish(CloseReason.PARSE_ERROR)
        elif isinstance(exc, TRANSPORT_ERRORS):
            logger.info("receiving failed: %r", exc)
            self._finish(CloseReason.TRANSPORT_ERROR)
        else:
            raise exc
