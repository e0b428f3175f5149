"""The client's WebSocket, on our own framing (:mod:`trio_sio.protocol.websocket`).

:func:`connect_websocket` sends the opening request (h11 reads the answer) and returns a
:class:`ClientWebSocket`: one Engine.IO packet per frame, masked on the way out, with
permessage-deflate (RFC 7692) when the server agrees to it.

There is no reader task: :meth:`ClientWebSocket.receive_batch` reads the stream in the
calling task and returns every packet that one read brought, so a packet reaches whoever
reads without a task switch. Writes are serialised by a lock; :meth:`ClientWebSocket.try_write`
writes a frame at once from the calling task, without waiting, when no write is under way
and the stream is a plain TCP socket.

A reset (or an end) of the connection before the server answered the opening request fails
the attempt at once. The inflater is bounded: a compressed message that inflates beyond the
message size limit closes the WebSocket (1009) instead of filling the memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import h11
import trio

from .._streams import close_now, read_socket, write_now
from ..protocol.deflate import CLIENT_OFFER, ClientDeflate, accept_client_deflate
from ..protocol.engineio import Packet, decode_packet, encode_packet, may_compress
from ..protocol.errors import ConnectionClosed, RemoteProtocolError
from ..protocol.websocket import (
    OP_BINARY,
    OP_PONG,
    OP_TEXT,
    ClientFrameDecoder,
    Close,
    Message,
    Ping,
    WebSocketError,
    accept_key,
    encode_client_close,
    encode_client_frame,
    new_key,
)
from ._http_client import HTTPTransportError

__all__ = ["ClientWebSocket", "WebSocketRefused", "connect_websocket"]

logger = logging.getLogger("trio_sio.engineio.client")

#: bytes asked for per read.
READ_SIZE: Final = 64 * 1024
#: messages shorter than this (encoded) are sent uncompressed, as by socket.io-client.
DEFLATE_THRESHOLD: Final = 1024
#: seconds :meth:`ClientWebSocket.aclose` waits for the server's close frame.
CLOSE_TIMEOUT: Final = 1.0
#: the longest opening answer accepted (status line and header fields).
_MAX_HANDSHAKE: Final = 64 * 1024


class WebSocketRefused(HTTPTransportError):
    """The server did not upgrade the connection (an HTTP error, or a wrong answer)."""


class ClientWebSocket:
    """An open client WebSocket carrying Engine.IO packets.

    Args:
        stream: the connection, positioned after the server's 101 answer.
        leftover: bytes read past that answer.
        deflate: what permessage-deflate agreement there is, if any.
        max_message_size: the largest message accepted; larger ones close with 1009.
    """

    name: Final = "websocket"

    def __init__(
        self,
        stream: trio.abc.Stream,
        leftover: bytes,
        deflate: ClientDeflate | None,
        max_message_size: int,
    ) -> None:
        self._stream = stream
        self._socket = stream.socket if type(stream) is trio.SocketStream else None
        self._deflate = deflate
        self._decoder = ClientFrameDecoder(
            max_message_size, inflater=None if deflate is None else deflate.inflater()
        )
        if leftover:
            self._decoder.feed(leftover)
        self._lock = trio.StrictFIFOLock()
        self._unsent: bytes | None = None
        self._drained = False  # the last read emptied the socket: wait before reading
        self._receiving = False
        self._close_sent = False
        self._peer_closed = trio.Event()
        self._closed_reason: str | None = None

    @property
    def wakes_on_close(self) -> bool:
        """Whether closing the stream (:meth:`abort`) wakes a read under way: a plain TCP
        socket, read directly, does (Trio wakes its waiter); other streams may not."""
        return self._socket is not None

    @property
    def deflate(self) -> bool:
        """Whether permessage-deflate was agreed with the server."""
        return self._deflate is not None

    # -- receiving ------------------------------------------------------------------------
    async def receive_batch(self) -> list[Packet]:
        """The packets the next read brought (at least one), answering pings on the way.

        Raises:
            ConnectionClosed: the WebSocket is closed (by the server, or ended).
            RemoteProtocolError: a frame or packet is malformed (a close frame with the
                matching status is sent first, if it can be at once).
            trio.BusyResourceError: another task is receiving.

        Cancellation: safe; what was read but not returned stays buffered.
        """
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this WebSocket")
        self._receiving = True
        try:
            return await self._receive_batch()
        finally:
            self._receiving = False

    async def _receive_batch(self) -> list[Packet]:
        decoder = self._decoder
        packets: list[Packet] = []
        while True:
            if self._closed_reason is not None:
                raise ConnectionClosed(self._closed_reason)
            try:
                while (event := decoder.next_event()) is not None:
                    if type(event) is Message:
                        packets.append(decode_packet(event.data))
                    elif type(event) is Ping:
                        self._send_soon(encode_client_frame(OP_PONG, event.payload))
                    elif type(event) is Close:
                        self._on_close(event)
            except WebSocketError as exc:
                self._send_soon(encode_client_close(exc.close_code))
                self._closed_reason = f"protocol error: {exc}"
                raise
            if packets:
                return packets
            data = await self._read()
            if not data:
                self._closed_reason = "the server ended the connection"
                self._peer_closed.set()
                raise ConnectionClosed(self._closed_reason)
            decoder.feed(data)

    def _on_close(self, event: Close) -> None:
        self._peer_closed.set()
        self._closed_reason = f"closed by the server ({event.code} {event.reason})".strip()
        if not self._close_sent:
            code = 1000 if event.code == 1005 else event.code
            self._send_soon(encode_client_close(code))
            self._close_sent = True

    async def _read(self) -> bytes:
        """One read of the stream (a plain TCP socket is read directly, as the server does).

        Cancellation: if cancelled, nothing was read.
        """
        sock = self._socket
        if sock is None:
            try:
                return bytes(await self._stream.receive_some(READ_SIZE))
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionClosed(f"transport error: {exc}") from None
        try:
            data = await read_socket(sock, self._drained)
        except trio.ClosedResourceError:
            raise ConnectionClosed("the WebSocket was closed") from None
        except trio.BrokenResourceError as exc:
            raise ConnectionClosed(f"transport error: {exc}") from None
        self._drained = len(data) < READ_SIZE
        return data

    # -- sending --------------------------------------------------------------------------
    def frame(self, packet: Packet) -> bytes:
        """The frame of ``packet``: compressed when deflate was agreed, the packet allows it
        and it is long enough."""
        data = encode_packet(packet)
        if isinstance(data, str):
            opcode, payload = OP_TEXT, data.encode("utf-8")
        else:
            opcode, payload = OP_BINARY, data
        deflate = self._deflate
        if deflate is not None and len(payload) >= DEFLATE_THRESHOLD and may_compress(packet):
            compressed = deflate.deflate(payload)
            if compressed is not None:
                return encode_client_frame(opcode, compressed, rsv1=True)
        return encode_client_frame(opcode, payload)

    def try_write(self, frames: Sequence[bytes]) -> int | None:
        """Write ``frames`` now from the calling task, if no other write is under way.

        Returns:
            None when nothing was taken (a write is under way, bytes wait to be written,
            the stream is not a plain TCP socket, the WebSocket is closing, or the socket
            failed: write the ordinary way, which meets the error); else how many bytes
            were kept to be written by :meth:`flush` (0: all written).

        Never blocks, never checkpoints.
        """
        sock = self._socket
        if sock is None or self._unsent is not None or self._close_sent or self._lock.locked():
            return None
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        try:
            sent = write_now(sock, data)
        except OSError:
            return None
        if sent < len(data):
            self._unsent = data[sent:]
            return len(data) - sent
        return 0

    def _send_soon(self, frame: bytes) -> None:
        """Write a control frame now if the socket takes it, else keep it for the next write
        (a pong, a close): never blocks."""
        if self.try_write([frame]) is None:
            self._unsent = (self._unsent or b"") + frame

    async def send(self, packet: Packet) -> None:
        """Send one packet as one frame (after anything kept for later).

        Raises:
            ConnectionClosed: the WebSocket is closing or closed.
            trio.BrokenResourceError: the connection broke.

        Cancellation: if cancelled the frame may have been partly written; the WebSocket is
        then unusable.
        """
        if self._close_sent:
            raise ConnectionClosed(self._closed_reason or "the WebSocket is closing")
        await self._write(self.frame(packet))

    async def flush(self) -> None:
        """Write what :meth:`try_write` kept.

        Raises:
            trio.BrokenResourceError: the connection broke.

        Cancellation: as :meth:`send`.
        """
        await self._write(b"")

    async def _write(self, data: bytes) -> None:
        async with self._lock:
            if self._unsent is not None:
                data, self._unsent = self._unsent + data, None
            if data:
                await self._stream.send_all(data)

    @property
    def needs_flush(self) -> bool:
        """Whether bytes wait for :meth:`flush` (a frame the socket did not take at once)."""
        return self._unsent is not None

    # -- closing --------------------------------------------------------------------------
    async def abort(self) -> None:
        """Close the stream at once, without a closing handshake. Never blocks; a task
        reading meanwhile gets ``ConnectionClosed`` (or ``trio.ClosedResourceError``)."""
        self._closed_reason = self._closed_reason or "closed"
        self._close_sent = True
        await close_now(self._stream)

    async def aclose(self) -> None:
        """Close with a closing handshake (code 1000), then close the stream.

        Blocks: at most about ``CLOSE_TIMEOUT`` seconds waiting for the server's answer.

        Cancellation: if cancelled, the stream is closed without the handshake.
        """
        try:
            with trio.move_on_after(CLOSE_TIMEOUT):
                if not self._close_sent:
                    self._close_sent = True
                    await self._write(encode_client_close(1000))
                if self._receiving:
                    await self._peer_closed.wait()
                else:
                    while not self._peer_closed.is_set():
                        await self.receive_batch()  # dropped: the session is over
        except (
            ConnectionClosed,
            RemoteProtocolError,  # a bad frame or packet after ours: the session is over
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            trio.BusyResourceError,
            OSError,
        ):
            pass
        finally:
            self._closed_reason = self._closed_reason or "closed"
            await close_now(self._stream)


async def connect_websocket(
    stream: trio.abc.Stream,
    host: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    *,
    deflate: bool,
    max_message_size: int,
) -> tuple[ClientWebSocket, list[tuple[str, str]]]:
    """Upgrade ``stream`` to a WebSocket: send the opening request, read the answer.

    Args:
        stream: a connection to the server (TCP, TLS, tunnelled...).
        host: the ``Host`` header value.
        target: the request target (path and query).
        headers: extra header fields (cookies, the user's).
        deflate: offer permessage-deflate.
        max_message_size: the largest message accepted from the server.

    Returns:
        The WebSocket, and the answer's header fields (lower-case names), for cookies.

    Raises:
        trio.BrokenResourceError: the server ended (or reset) the connection before
            answering.
        WebSocketRefused: the server answered, but not with a valid upgrade.
        h11.RemoteProtocolError: the answer is not HTTP.

    Cancellation: safe; the caller closes the stream.
    """
    key = new_key()
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HANDSHAKE)
    fields = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
    if deflate:
        fields.append(("Sec-WebSocket-Extensions", CLIENT_OFFER))
    fields.extend(headers)
    request = conn.send(h11.Request(method="GET", target=target, headers=fields))
    assert request is not None
    await stream.send_all(request)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(READ_SIZE)
            if not data:
                raise trio.BrokenResourceError(
                    "the server closed the connection during the WebSocket handshake"
                )
            conn.receive_data(bytes(data))
            continue
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            break
        if isinstance(event, h11.Response):
            raise WebSocketRefused(f"WebSocket upgrade refused: HTTP {event.status_code}")
        if isinstance(event, h11.ConnectionClosed):
            raise trio.BrokenResourceError("the server closed the connection during the handshake")
    answer = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers]
    given = dict(answer)
    if given.get("upgrade", "").lower() != "websocket":
        raise WebSocketRefused("the server's 101 answer does not upgrade to websocket")
    if given.get("sec-websocket-accept") != accept_key(key):
        raise WebSocketRefused("the server's Sec-WebSocket-Accept does not match the key")
    extensions = given.get("sec-websocket-extensions")
    try:
        agreed = accept_client_deflate(extensions) if deflate else None
    except WebSocketError as exc:
        raise WebSocketRefused(str(exc)) from None
    if not deflate and extensions:
        raise WebSocketRefused(f"the server agreed to extensions not offered: {extensions!r}")
    leftover, _closed = conn.trailing_data
    return ClientWebSocket(stream, bytes(leftover), agreed, max_message_size), answer
