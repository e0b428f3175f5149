"""WebSocket framing (RFC 6455), server side, sans-IO.

Just what an Engine.IO server needs, kept small and fast: the handshake answer, a decoder for
the (masked) frames a client sends, with fragmentation, control frames and a message size
limit, and an encoder for unmasked server frames. Unmasking uses the C function of the
``websockets`` package when it is installed (``pip install trio-sio[speedups]``), else Python's
big integers, which XOR a whole payload in a few C-speed passes.

Malformed input raises :class:`~trio_sio.protocol.errors.RemoteProtocolError` whose
``close_code`` is the close status to send back (1002 protocol error, 1007 bad UTF-8,
1009 too big).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .errors import RemoteProtocolError

__all__ = [
    "Close",
    "Message",
    "Ping",
    "Pong",
    "WebSocketError",
    "FrameDecoder",
    "accept_key",
    "encode_close",
    "encode_frame",
]

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

_DATA_OPS: Final = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY})
_CONTROL_OPS: Final = frozenset({OP_CLOSE, OP_PING, OP_PONG})


class WebSocketError(RemoteProtocolError):
    """The client broke the WebSocket protocol; ``close_code`` is the status to answer."""

    def __init__(self, message: str, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = close_code


@dataclass(frozen=True, slots=True)
class Message:
    """A whole data message: ``str`` for text, ``bytes`` for binary."""

    data: str | bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping; answer with a pong carrying the same payload."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """A close frame: ``code`` 1005 when the frame carried no status."""

    code: int
    reason: str


Event = Message | Ping | Pong | Close


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1(key.strip().encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


_apply_mask: Callable[[bytes | bytearray | memoryview, bytes], bytes] | None
try:  # the C implementation of the websockets package, when it is installed
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - depends on the environment
    _apply_mask = None


def _unmask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    if _apply_mask is not None:
        return _apply_mask(data, mask)
    return _unmask_python(data, mask)


def _unmask_python(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    size = len(data)
    if not size:
        return b""
    key = (mask * ((size >> 2) + 1))[:size]
    value = int.from_bytes(data, "little") ^ int.from_bytes(key, "little")
    return value.to_bytes(size, "little")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame (what a server sends)."""
    size = len(payload)
    first = 0x80 | opcode
    if size < 126:
        return bytes((first, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


def encode_close(code: int = 1000, reason: str = "") -> bytes:
    """A close frame with a status code."""
    return encode_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode("utf-8")[:120])


class FrameDecoder:
    """Turns the bytes a client sends into :data:`Event` objects.

    Args:
        max_message_size: the largest data message accepted, in bytes (after reassembly).

    Use :meth:`feed` with received bytes, then call :meth:`next_event` until it returns None.
    """

    __slots__ = ("_buffer", "_fragments", "_fragments_size", "_max", "_opcode")

    def __init__(self, max_message_size: int = 1 << 20) -> None:
        self._buffer = bytearray()
        self._max = max_message_size
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._opcode: int | None = None

    def feed(self, data: bytes | bytearray) -> None:
        """Add received bytes."""
        self._buffer += data

    def next_event(self) -> Event | None:
        """The next complete event, or None when more bytes are needed.

        Raises:
            WebSocketError: the client broke the protocol.
        """
        while True:
            frame = self._next_frame()
            if frame is None:
                return None
            fin, opcode, payload = frame
            if opcode in _CONTROL_OPS:
                return self._control(opcode, payload)
            if opcode == OP_CONTINUATION:
                if self._opcode is None:
                    raise WebSocketError("continuation frame without a message")
            elif self._opcode is not None:
                raise WebSocketError("new message inside a fragmented one")
            else:
                self._opcode = opcode
            self._fragments_size += len(payload)
            if self._fragments_size > self._max:
                raise WebSocketError("message too big", 1009)
            self._fragments.append(payload)
            if not fin:
                continue
            data = self._fragments[0] if len(self._fragments) == 1 else b"".join(self._fragments)
            kind = self._opcode
            self._fragments = []
            self._fragments_size = 0
            self._opcode = None
            if kind == OP_TEXT:
                try:
                    return Message(data.decode("utf-8"))
                except UnicodeDecodeError:
                    raise WebSocketError("text message is not UTF-8", 1007) from None
            return Message(data)

    def _control(self, opcode: int, payload: bytes) -> Event:
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        if not payload:
            return Close(1005, "")
        if len(payload) == 1:
            raise WebSocketError("close frame with a one-byte body")
        (code,) = struct.unpack_from("!H", payload)
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise WebSocketError("close reason is not UTF-8", 1007) from None
        return Close(code, reason)

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        if first & 0x70:
            raise WebSocketError("reserved bits set (no extension was agreed)")
        fin = bool(first & 0x80)
        opcode = first & 0x0F
        if opcode not in _DATA_OPS and opcode not in _CONTROL_OPS:
            raise WebSocketError(f"unknown opcode {opcode}")
        if not second & 0x80:
            raise WebSocketError("client frames must be masked")
        size = second & 0x7F
        offset = 2
        if opcode in _CONTROL_OPS and (size > 125 or not fin):
            raise WebSocketError("control frames must be short and unfragmented")
        if size == 126:
            if len(buffer) < 4:
                return None
            (size,) = struct.unpack_from("!H", buffer, 2)
            offset = 4
        elif size == 127:
            if len(buffer) < 10:
                return None
            (size,) = struct.unpack_from("!Q", buffer, 2)
            offset = 10
        if size > self._max and opcode in _DATA_OPS:
            raise WebSocketError("message too big", 1009)
        end = offset + 4 + size
        if len(buffer) < end:
            return None
        mask = bytes(buffer[offset : offset + 4])
        payload = _unmask(buffer[offset + 4 : end], mask)
        del buffer[:end]
        return fin, opcode, payload
