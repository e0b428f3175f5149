"""WebSocket framing (RFC 6455), sans-IO: the server side, and the client side at the end.

Just what an Engine.IO server needs, kept small and fast: the handshake answer, a decoder for
the (masked) frames a client sends, with fragmentation, control frames and a message size
limit, and an encoder for unmasked server frames. Unmasking uses the C function of the
``websockets`` package (a dependency, so ``pip install trio-sio`` gets it where its wheels
have the C speedups), else Python's big integers, which XOR a whole payload in a few C-speed
passes.

With permessage-deflate agreed (:mod:`.deflate`), the decoder inflates compressed messages,
bounded by the same limit; without it, a reserved bit is a protocol error.

Malformed input raises :class:`~trio_sio.protocol.errors.RemoteProtocolError` whose
``close_code`` is the close status to send back (1002 protocol error, 1007 bad UTF-8,
1009 too big).

Memory is bounded by the message size limit: a frame whose declared length does not fit
what is left of the limit is refused from its header, before its payload is buffered, so the
decoder never holds more than one message plus what was fed past it. A fragmented message is
reassembled into one ``bytearray``; each continuation frame is charged
:data:`FRAGMENT_COST` bytes on top of its payload and their number is capped, so that a
stream of tiny or empty fragments cannot cost more than a large message would.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from .errors import RemoteProtocolError

if TYPE_CHECKING:
    from .deflate import Inflater

__all__ = [
    "ClientFrameDecoder",
    "Close",
    "Message",
    "Ping",
    "Pong",
    "WebSocketError",
    "FrameDecoder",
    "accept_key",
    "is_valid_key",
    "encode_client_close",
    "encode_client_frame",
    "encode_close",
    "encode_frame",
    "new_key",
]

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

_DATA_OPS: Final = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY})
#: RSV1: the first frame of a message compressed with permessage-deflate (RFC 7692). The
#: decoder keeps it on the opcode of such a message (opcodes use the low four bits only).
RSV1: Final = 0x40
_CONTROL_OPS: Final = frozenset({OP_CLOSE, OP_PING, OP_PONG})

#: bytes each continuation frame is charged against the message size limit, on top of its
#: payload (what parsing a frame costs, roughly): 1-byte fragments cannot make a message of
#: the limit's size take tens of times more work than one frame would.
FRAGMENT_COST: Final = 64
#: the default for the most frames one message may be split into.
MAX_FRAGMENTS: Final = 4096
#: close codes a peer may send (RFC 6455 section 7.4 and the IANA registry); 3000-4999 are
#: for libraries and applications.
_PEER_CLOSE_CODES: Final = frozenset({*range(1000, 1004), *range(1007, 1015)})
_KEY = re.compile(r"[A-Za-z0-9+/]{22}==")


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


def is_valid_key(key: str) -> bool:
    """True when ``key`` is a well-formed ``Sec-WebSocket-Key`` (16 bytes in base64)."""
    return _KEY.fullmatch(key.strip(" \t")) is not None


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key``.

    Check the key with :func:`is_valid_key` first.

    Raises:
        UnicodeEncodeError: the key is not ASCII (a :class:`ValueError`).
    """
    digest = hashlib.sha1(key.strip().encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


_apply_mask: Callable[[bytes | bytearray | memoryview, bytes], bytes] | None
try:  # the C implementation of the websockets package, when it is installed
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - depends on the environment
    _apply_mask = None
else:
    _apply_mask = apply_mask


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


def encode_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """One unmasked, final frame (what a server sends); ``rsv1`` marks a payload compressed
    with permessage-deflate."""
    size = len(payload)
    first = (0x80 | RSV1 if rsv1 else 0x80) | opcode
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
        max_message_size: the largest data message accepted, in bytes (after reassembly);
            each continuation frame also counts :data:`FRAGMENT_COST` bytes towards it.
        max_fragments: the most frames one data message may be split into.
        inflater: when permessage-deflate was agreed: inflates the messages whose first
            frame has RSV1 set (their compressed size counts against the limit, and so does
            their inflated size, see :meth:`Inflater.inflate <.deflate.Inflater.inflate>`).
            Without it, a reserved bit closes the connection (1002).

    Use :meth:`feed` with received bytes, then call :meth:`next_event` until it returns None.
    Feed more only after that: then the buffer holds at most one incomplete frame (which
    fits the limit, or it would have been refused) plus what was fed last.
    """

    #: bytes of mask in each frame: a client masks its frames, a server must not
    #: (:class:`ClientFrameDecoder` reads a server's).
    _MASK = 4

    __slots__ = (
        "_buffer",
        "_charged",
        "_count",
        "_fragments",
        "_inflater",
        "_max",
        "_max_count",
        "_opcode",
    )

    def __init__(
        self,
        max_message_size: int = 1 << 20,
        max_fragments: int = MAX_FRAGMENTS,
        inflater: Inflater | None = None,
    ) -> None:
        self._buffer = bytearray()
        self._inflater = inflater
        self._max = max_message_size
        self._max_count = max_fragments
        self._fragments = bytearray()
        self._charged = 0  # payload bytes plus FRAGMENT_COST per continuation frame
        self._count = 0  # frames of the message being reassembled
        self._opcode: int | None = None

    @property
    def buffered(self) -> int:
        """Bytes held: received but not yet decoded, plus the fragments of a message."""
        return len(self._buffer) + len(self._fragments)

    @property
    def frame_ready(self) -> bool:
        """Whether the bytes held start with a whole frame (a whole frame header with all
        its payload): then :meth:`next_event` has something to work on without reading."""
        buffer = self._buffer
        held = len(buffer)
        mask = self._MASK
        if held < 2 + mask:  # the shortest frame
            return False
        size = buffer[1] & 0x7F
        if size == 126:
            head = 4 + mask
            return held >= head and held >= head + int.from_bytes(buffer[2:4], "big")
        if size == 127:
            head = 10 + mask
            return held >= head and held >= head + int.from_bytes(buffer[2:10], "big")
        return held >= 2 + mask + size

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
            if opcode != OP_CONTINUATION:
                if fin:
                    return self._message(opcode, payload)
                self._opcode = opcode
                self._fragments = bytearray(payload)
                self._charged = len(payload)
                self._count = 1
                continue
            self._fragments += payload
            self._charged += len(payload) + FRAGMENT_COST
            self._count += 1
            if fin:
                kind, data = self._opcode, self._fragments
                self._opcode = None
                self._fragments = bytearray()
                self._charged = self._count = 0
                return self._message(kind, data)

    def _message(self, opcode: int | None, data: bytes | bytearray) -> Message:
        if opcode is not None and opcode & RSV1:
            assert self._inflater is not None  # RSV1 is refused without one
            data = self._inflater.inflate(data, self._max)
            opcode &= 0x0F
        if opcode == OP_TEXT:
            try:
                return Message(data.decode("utf-8"))
            except UnicodeDecodeError:
                raise WebSocketError("text message is not UTF-8", 1007) from None
        return Message(data if type(data) is bytes else bytes(data))

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
        if code not in _PEER_CLOSE_CODES and not 3000 <= code <= 4999:
            raise WebSocketError(f"close code {code} is not one a peer may send")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise WebSocketError("close reason is not UTF-8", 1007) from None
        return Close(code, reason)

    def _room(self, opcode: int) -> int:
        """How many payload bytes a data frame may carry, or raise if it may not come now."""
        if opcode == OP_CONTINUATION:
            if self._opcode is None:
                raise WebSocketError("continuation frame without a message")
            if self._count >= self._max_count:
                raise WebSocketError("message split into too many fragments", 1009)
            return self._max - self._charged - FRAGMENT_COST
        if self._opcode is not None:
            raise WebSocketError("new message inside a fragmented one")
        return self._max

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        fin = bool(first & 0x80)
        opcode = first & 0x0F
        if opcode not in _DATA_OPS and opcode not in _CONTROL_OPS:
            raise WebSocketError(f"unknown opcode {opcode}")
        rsv = first & 0x70
        if rsv:
            self._check_reserved(rsv, opcode)
        mask = self._MASK
        if bool(second & 0x80) != bool(mask):
            raise WebSocketError(
                "client frames must be masked" if mask else "server frames must not be masked"
            )
        size = second & 0x7F
        offset = 2
        if opcode in _CONTROL_OPS:
            if size > 125 or not fin:
                raise WebSocketError("control frames must be short and unfragmented")
            room = 125
        elif opcode != OP_CONTINUATION and self._opcode is None:
            room = self._max  # a new message: the common case
        else:
            room = self._room(opcode)
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
        if size > room:
            raise WebSocketError("message too big", 1009)
        end = offset + mask + size
        if len(buffer) < end:
            return None
        if mask:
            payload = _unmask(buffer[offset + 4 : end], bytes(buffer[offset : offset + 4]))
        else:
            payload = bytes(buffer[offset:end])
        del buffer[:end]
        return fin, opcode | rsv, payload

    def _check_reserved(self, rsv: int, opcode: int) -> None:
        """Raise unless ``rsv`` is RSV1 on the first frame of a data message, with
        permessage-deflate agreed."""
        if self._inflater is None:
            raise WebSocketError("reserved bits set (no extension was agreed)")
        if rsv != RSV1 or opcode not in (OP_TEXT, OP_BINARY):
            raise WebSocketError("reserved bits set on a frame that may not carry them")


# -- the client side ---------------------------------------------------------------------------


def new_key() -> str:
    """A fresh ``Sec-WebSocket-Key`` (16 random bytes in base64)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


class _Masks:
    """Masking keys for a client's frames: 4 bytes each from the system's secure random
    source (RFC 6455 asks for unpredictable keys), read 4 KiB at a time rather than with a
    system call per frame."""

    __slots__ = ("_at", "_pool")

    _SIZE = 4096

    def __init__(self) -> None:
        self._pool = b""
        self._at = self._SIZE

    def next(self) -> bytes:
        at = self._at
        if at >= self._SIZE:
            self._pool = os.urandom(self._SIZE)
            at = 0
        self._at = at + 4
        return self._pool[at : at + 4]


_masks = _Masks()
_mask_payload = _apply_mask if _apply_mask is not None else _unmask_python


def encode_client_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """One masked, final frame (what a client sends), with a fresh random mask; ``rsv1``
    marks a payload compressed with permessage-deflate."""
    mask = _masks.next()
    size = len(payload)
    first = (0x80 | RSV1 if rsv1 else 0x80) | opcode
    if size < 126:
        header = bytes((first, 0x80 | size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 0xFE, size)
    else:
        header = struct.pack("!BBQ", first, 0xFF, size)
    return header + mask + _mask_payload(payload, mask)


def encode_client_close(code: int = 1000, reason: str = "") -> bytes:
    """A masked close frame with a status code."""
    return encode_client_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode("utf-8")[:120])


class ClientFrameDecoder(FrameDecoder):
    """Turns the bytes a server sends into :data:`Event` objects: as :class:`FrameDecoder`
    (same limits, same errors), for unmasked frames; a masked frame is a protocol error."""

    __slots__ = ()

    _MASK = 0
