"""One Engine.IO session seen from the client: :class:`EngineClient`, the object that
:func:`~trio_sio.engineio.client.open_engine_client` yields, and the errors it raises.

It owns the session's parts and composes them: the inbox (:mod:`._client_inbox`), the
sender (:mod:`._client_sender`), the transports (:mod:`._client_connect`) and the receiver
(:mod:`._client_receive`); it hosts their tasks and ends the session. Import it from
:mod:`trio_sio.engineio.client`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, final

import trio

from ..protocol.engineio import (
    CLOSE,
    PONG,
    CloseReason,
    OpenInfo,
    Packet,
    PacketType,
    mark_uncompressed,
)
from ..protocol.errors import ConnectionClosed, SocketIOError
from ._client_connect import SessionTransports
from ._client_inbox import Inbox
from ._client_receive import Receiver
from ._client_sender import Sender
from ._client_transports import TRANSPORT_ERRORS, ClientWebSocket, Endpoint

__all__ = ["CLOSE_GRACE", "ConnectError", "EngineClient", "UpgradeError"]

logger = logging.getLogger("trio_sio.engineio.client")

#: How long :meth:`EngineClient.aclose` tries to say goodbye before closing abruptly.
CLOSE_GRACE: Final = 2.0


class ConnectError(SocketIOError):
    """Opening the Engine.IO session failed; the cause is chained (``__cause__``)."""


class UpgradeError(SocketIOError):
    """The session cannot move to WebSocket; it stays on HTTP long-polling."""


@final
class EngineClient:
    """One Engine.IO session, seen from the client. Made by :func:`open_engine_client`.

    Attributes:
        close_reason: None while open; then why the session ended: ``"forced close"``
            (we closed it), ``"transport close"`` (the server closed it), ``"transport
            error"`` (I/O failed), ``"parse error"`` (the server sent bad data), or
            ``"ping timeout"`` (the server went silent).
        on_ping: None, or an async function called (in the receive task, so keep it
            short) each time the server's PING arrives, after the PONG was queued.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        transports: tuple[str, ...],
        upgrade: bool,
        message_queue_size: int,
        send_queue_size: int,
        connect_timeout: float,
        read_in_receive: bool = False,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._open_info: OpenInfo | None = None
        self.close_reason: str | None = None
        self.on_ping: Callable[[], Awaitable[None]] | None = None
        self._inbox = Inbox(message_queue_size)
        # The sender's transport comes from `session_transports`, made next with its lock.
        self._sender = Sender(
            send_queue_size,
            transport=lambda: session_transports.current,
            check_open=self._check_open,
            reason=lambda: self.close_reason or "forced close",
            finish=self._finish,
            max_payload=lambda: self.open_info.max_payload,
        )
        self._transports = session_transports = SessionTransports(
            endpoint,
            transports,
            upgrade=upgrade,
            connect_timeout=connect_timeout,
            lock=self._sender.lock,
            closing=lambda: self._closing,
            finish=self._finish,
        )
        self._connected = False
        self._closing = False
        self._finished = trio.Event()
        self._receiver = Receiver(
            self._inbox,
            self._sender,
            session_transports,
            read_in_receive=read_in_receive,
            closing=lambda: self._closing,
            finish=self._finish,
            finished=self._finished,
            pinged=self._pinged,
        )
        self._read_websocket = self._receiver.read_websocket
        self._stopped = trio.Event()
        self._tasks_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None

    @property
    def open_info(self) -> OpenInfo:
        """The server's handshake data (sid, upgrades, ping interval/timeout, maxPayload)."""
        if self._open_info is None:
            raise RuntimeError("the client is not connected yet")
        return self._open_info

    @property
    def sid(self) -> str:
        """The session id the server assigned."""
        return self.open_info.sid

    @property
    def transport(self) -> str:
        """The current transport: ``"polling"`` or ``"websocket"``."""
        transport = self._transports.current
        if transport is None:
            raise RuntimeError("the client is not connected yet")
        return transport.name

    @property
    def deflate(self) -> bool:
        """Whether the session runs on a WebSocket with permessage-deflate agreed."""
        transport = self._transports.current
        return isinstance(transport, ClientWebSocket) and transport.deflate

    async def send(self, data: str | bytes, *, compress: bool = True) -> None:
        """Queue a MESSAGE for the server (text or binary); with ``compress`` false it goes
        uncompressed even when permessage-deflate is agreed.

        Blocks while the send queue (``send_queue_size`` messages not yet written) is full.

        Raises:
            ConnectionClosed: the session is closed or closing.
            TypeError: ``data`` is neither ``str`` nor ``bytes``.

        Cancellation:
            If cancelled, the message was not queued and will not be sent; once this
            returns, the message is queued and will be sent unless the session ends first.
        """
        await self._sender.send((self._message(data, compress),))

    async def send_many(self, messages: Sequence[str | bytes], *, compress: bool = True) -> None:
        """Queue several MESSAGEs as one unit: nothing sent by others lands between them
        (a Socket.IO packet and its binary attachments). ``compress`` as in :meth:`send`.

        Raises:
            ConnectionClosed: the session is closed or closing.
            ValueError: more messages than the send queue holds.

        Cancellation:
            If cancelled, none of the messages was queued.
        """
        await self._sender.send([self._message(data, compress) for data in messages])

    def send_many_nowait(self, messages: Sequence[str | bytes], *, compress: bool = True) -> None:
        """Like :meth:`send_many`, raising ``trio.WouldBlock`` unless all fit right now."""
        self._sender.send_nowait([self._message(data, compress) for data in messages])

    def send_nowait(self, data: str | bytes, *, compress: bool = True) -> None:
        """Queue a MESSAGE without blocking.

        Raises:
            trio.WouldBlock: the send queue is full.
            ConnectionClosed: the session is closed or closing.
            TypeError: ``data`` is neither ``str`` nor ``bytes``.
        """
        self._sender.send_nowait((self._message(data, compress),))

    async def receive(self) -> str | bytes:
        """The next MESSAGE from the server, in order.

        Messages that arrived before the session ended are still returned; after them
        this raises.

        Raises:
            ConnectionClosed: the session is closed and every message was received;
                ``reason`` is :attr:`close_reason`.

        With ``read_in_receive``, on WebSocket, the WebSocket is read in the calling task
        when no message is queued (pings are answered then).

        Cancellation:
            Safe: a message is either returned or stays queued.
        """
        return await self._inbox.take(self._receive_reason, self._read_websocket)

    def receive_nowait(self) -> str | bytes:
        """The next MESSAGE if one is waiting, without blocking.

        Raises:
            trio.WouldBlock: none is waiting.
            ConnectionClosed: the session is closed and every message was received.
        """
        return self._inbox.take_nowait(self._receive_reason)

    def _receive_reason(self) -> str:
        return self.close_reason or "transport close"

    def __aiter__(self) -> EngineClient:
        return self

    async def __anext__(self) -> str | bytes:
        """Like :meth:`receive`; iteration stops (no error) when the session ends.

        Cancellation:
            As :meth:`receive`.
        """
        try:
            return await self.receive()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def wait_upgraded(self) -> None:
        """Block until the session runs on WebSocket.

        Returns at once for a session that started on WebSocket.

        Raises:
            UpgradeError: the upgrade is disabled, not offered by the server, or failed.
            ConnectionClosed: the session ended before the upgrade.

        Cancellation:
            Safe; it only waits.
        """
        await self._transports.settled.wait()
        if isinstance(self._transports.current, ClientWebSocket):
            return
        if self._finished.is_set():
            raise ConnectionClosed(self.close_reason or "transport close")
        raise UpgradeError("the session stays on polling")

    async def aclose(self) -> None:
        """Close the session cleanly, then stop every task and close the transports.

        Messages already queued by :meth:`send` are written first, then a CLOSE packet
        (on WebSocket, followed by the closing handshake). If that takes longer than
        ``CLOSE_GRACE`` seconds, or the session is already broken, it is closed
        abruptly. Idempotent; :meth:`receive` still drains what was received.

        Cancellation:
            If cancelled, the goodbye is skipped; the transports are still closed and the
            tasks ended before this returns (that last step is shielded and quick).
        """
        try:
            if self._connected and not self._closing and not self._finished.is_set():
                self._closing = True
                with trio.move_on_after(CLOSE_GRACE):
                    # Written first, and apart from the CLOSE: a server may act on a CLOSE
                    # before the other packets of the same polling payload.
                    await self._sender.outbox.wait_drained()
                    self._sender.outbox.put_control(CLOSE)
                    await self._sender.close_sent.wait()
                    transport = self._transports.current
                    if isinstance(transport, ClientWebSocket):
                        await transport.aclose()
        finally:
            self._closing = True
            self._finish(CloseReason.FORCED_CLOSE)
            with trio.CancelScope(shield=True):
                await self._stopped.wait()

    @staticmethod
    def _message(data: str | bytes, compress: bool = True) -> Packet:
        if not isinstance(data, str | bytes):
            raise TypeError(f"data must be str or bytes, not {type(data).__name__}")
        packet = Packet(PacketType.MESSAGE, data)
        return packet if compress else mark_uncompressed(packet)

    def _check_open(self) -> None:
        if self._closing or self._finished.is_set():
            raise ConnectionClosed(self.close_reason or "forced close")

    def _finish(self, reason: CloseReason) -> None:
        """End the session (first reason wins) and cancel the tasks."""
        if self.close_reason is None:
            self.close_reason = (CloseReason.FORCED_CLOSE if self._closing else reason).value
            forced = self.close_reason == CloseReason.FORCED_CLOSE.value
            log = logger.debug if forced else logger.info
            sid = None if self._open_info is None else self._open_info.sid
            log("engine.io session %s closed: %s", sid, self.close_reason)
        self._set_finished()
        self._tasks_scope.cancel()

    def _set_finished(self) -> None:
        self._finished.set()
        self._inbox.end()
        self._sender.end()  # wakes aclose()
        self._transports.settled.set()  # wakes wait_upgraded()

    async def _pinged(self) -> None:
        """A PING arrived: queue the PONG, then call :attr:`on_ping`."""
        if not self._closing:
            self._sender.outbox.put_control(PONG)
        if self.on_ping is not None:
            await self.on_ping()

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host every task of the session until it is finished."""
        try:
            with self._tasks_scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            if self.close_reason is None:  # only if a task crashed
                self.close_reason = CloseReason.TRANSPORT_ERROR.value
            self._set_finished()
            with trio.CancelScope(shield=True):
                await self._transports.aclose()
            self._stopped.set()

    async def _connect(self) -> None:
        """Handshake on the first transport, then start the session's tasks.

        Raises:
            ConnectError: with the cause chained.
        """
        assert self._nursery is not None
        transports = self._transports
        try:
            with trio.fail_after(self._connect_timeout):
                info, packets = await transports.handshake()
        except trio.TooSlowError as exc:
            raise ConnectError(f"no handshake within {self._connect_timeout} s") from exc
        except (*TRANSPORT_ERRORS, ConnectionClosed) as exc:
            raise ConnectError(
                f"engine.io handshake over {transports.first} failed: {exc}"
            ) from exc
        self._open_info = info
        self._connected = True
        logger.debug("engine.io session %s open over %s: %s", info.sid, transports.first, info)
        self._receiver.start(
            self._nursery, (info.ping_interval + info.ping_timeout) / 1000, packets
        )
        self._nursery.start_soon(self._sender.run)
        transports.start_upgrade(self._nursery, info)
