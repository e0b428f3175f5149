"""Engine.IO protocol v4, sans-IO: packets, polling payloads, the handshake.

Nothing here does I/O or imports an event loop. Every function is pure; malformed input
raises :class:`~trio_sio.protocol.errors.RemoteProtocolError` and nothing else.

Wire forms (Engine.IO v4):

- a text packet is its type digit followed by its data: ``"4hello"``, ``"2"``, ``"2probe"``;
- a binary message travels as a binary WebSocket frame holding just the bytes, or inside a
  polling payload as ``"b"`` followed by the base64 of the bytes;
- a polling payload joins encoded packets with the record separator ``"\\x1e"``.

Engine.IO v3 (for clients such as socket.io-client 2.x, when the server allows them): the
``*_v3`` functions. A text packet is the same; a binary message is a WebSocket frame of the
type byte (``4``) then the bytes, or ``"b4"`` and base64 in text; a polling payload is
``<length>:<packet>`` records (the length counted in UTF-16 code units, as JavaScript counts
a string), or, for clients that take binary, the binary payload form (records of a kind byte
``0``/``1``, the length as decimal digit bytes, ``255``, then the packet).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "CLOSE",
    "NOOP",
    "PING",
    "PING_PROBE",
    "PONG",
    "PONG_PROBE",
    "PROTOCOL_VERSION",
    "RECORD_SEPARATOR",
    "UPGRADE",
    "CloseReason",
    "HandshakeError",
    "HandshakeErrorCode",
    "OpenInfo",
    "Packet",
    "PacketType",
    "RequestInfo",
    "Transport",
    "decode_open",
    "decode_packet",
    "decode_payload",
    "decode_payload_v3",
    "decode_ws_message_v3",
    "encode_open",
    "encode_packet",
    "encode_payload",
    "encode_payload_v3",
    "encode_ws_message_v3",
    "mark_uncompressed",
    "may_compress",
    "validate_request",
]

PROTOCOL_VERSION: Final = 4
#: the older protocol a server may accept besides (``allow_eio3``).
PROTOCOL_VERSION_V3: Final = 3
RECORD_SEPARATOR: Final = "\x1e"


class PacketType(enum.IntEnum):
    """The seven Engine.IO packet types."""

    #: server → client, first packet of a session: the handshake data (JSON).
    OPEN = 0
    #: either way: the session is over.
    CLOSE = 1
    #: server → client heartbeat (``"probe"`` data during an upgrade, client → server).
    PING = 2
    #: the answer to a ping.
    PONG = 3
    #: application data, text or binary.
    MESSAGE = 4
    #: client → server on the new transport: switch to it now.
    UPGRADE = 5
    #: server → client: no data; used to release a pending long-poll.
    NOOP = 6


class Transport(enum.StrEnum):
    """The transports this implementation speaks."""

    POLLING = "polling"
    WEBSOCKET = "websocket"


@dataclass(frozen=True, slots=True)
class Packet:
    """One Engine.IO packet.

    Attributes:
        type: the packet type.
        data: text, or bytes for a binary MESSAGE (only MESSAGE packets may carry bytes).
    """

    type: PacketType
    data: str | bytes = ""
    #: the encoded WebSocket frame, cached by the transport that first writes the packet,
    #: so that a packet broadcast to many sockets is framed once.
    frame_cache: bytes | None = field(default=None, init=False, repr=False, compare=False)
    #: False on a packet that must not be compressed (see :func:`may_compress`).
    compress: bool = field(init=False, repr=False, compare=False)
    #: the frame for a WebSocket with permessage-deflate agreed (compressed, or the plain
    #: frame below the threshold), cached like ``frame_cache``.
    #:
    #: These slots stay unset until needed (read them with ``getattr`` and a default):
    #: an unset slot costs nothing when a packet is made, and a packet is made per message.
    deflate_cache: bytes = field(init=False, repr=False, compare=False)
    #: the packet's segment of a long-polling body, cached like ``frame_cache`` (a packet
    #: broadcast to many polling clients is encoded once).
    segment_cache: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.data, bytes) and self.type is not PacketType.MESSAGE:
            raise LocalProtocolError(f"only MESSAGE packets may carry bytes, not {self.type.name}")

    def __getstate__(self) -> dict[str, object]:
        """For copy and pickle: the slots that are set (unset ones stay unset)."""
        names = ("type", "data", "frame_cache", "compress", "deflate_cache", "segment_cache")
        return {name: getattr(self, name) for name in names if hasattr(self, name)}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    @property
    def is_binary(self) -> bool:
        """True when the data is bytes."""
        return isinstance(self.data, bytes)


def may_compress(packet: Packet) -> bool:
    """Whether ``packet`` may be compressed (True unless :func:`mark_uncompressed`)."""
    return getattr(packet, "compress", True)


def mark_uncompressed(packet: Packet) -> Packet:
    """Mark ``packet`` as one never to compress (``socket.compress(False)``); returns it."""
    object.__setattr__(packet, "compress", False)
    return packet


# Frequently used packets, built once.
PING: Final = Packet(PacketType.PING)
PONG: Final = Packet(PacketType.PONG)
NOOP: Final = Packet(PacketType.NOOP)
CLOSE: Final = Packet(PacketType.CLOSE)
UPGRADE: Final = Packet(PacketType.UPGRADE)
PING_PROBE: Final = Packet(PacketType.PING, "probe")
PONG_PROBE: Final = Packet(PacketType.PONG, "probe")

_TYPE_CHARS: Final = {str(int(t)): t for t in PacketType}
_new_object: Final = object.__new__
_set_slot: Final = object.__setattr__


def encode_packet(packet: Packet) -> str | bytes:
    """Encode one packet for a WebSocket frame.

    Returns:
        ``str`` for a text frame, ``bytes`` for a binary frame (binary MESSAGE only).
    """
    if isinstance(packet.data, bytes):
        return packet.data
    return f"{int(packet.type)}{packet.data}"


def decode_packet(frame: str | bytes | bytearray | memoryview) -> Packet:
    """Decode one WebSocket frame.

    A text frame is ``<type digit><data>``; a binary frame is a MESSAGE with those bytes.

    Raises:
        RemoteProtocolError: the frame is empty or its type is unknown.
    """
    if not isinstance(frame, str):
        return Packet(PacketType.MESSAGE, bytes(frame))
    if not frame:
        raise RemoteProtocolError("empty packet")
    ptype = _TYPE_CHARS.get(frame[0])
    if ptype is None:
        raise RemoteProtocolError(f"unknown packet type {frame[0]!r}")
    # Text data: nothing for Packet.__post_init__ to check (built as its __init__ would).
    packet: Packet = _new_object(Packet)
    _set_slot(packet, "type", ptype)
    _set_slot(packet, "data", frame[1:])
    _set_slot(packet, "frame_cache", None)
    return packet


def _encode_for_payload(packet: Packet) -> str:
    segment: str | None = getattr(packet, "segment_cache", None)
    if segment is None:
        if isinstance(packet.data, bytes):
            segment = "b" + base64.b64encode(packet.data).decode("ascii")
        else:
            segment = f"{int(packet.type)}{packet.data}"
        object.__setattr__(packet, "segment_cache", segment)
    return segment


def encode_payload(packets: Iterable[Packet]) -> str:
    """Encode packets as one HTTP long-polling body (joined by the record separator)."""
    return RECORD_SEPARATOR.join(_encode_for_payload(p) for p in packets)


def decode_payload(body: str | bytes, *, max_packets: int | None = None) -> list[Packet]:
    """Decode one HTTP long-polling body into its packets.

    Args:
        body: the request body, as text or as UTF-8 bytes.
        max_packets: refuse a body with more packets than this (None: no limit).
            The byte size of the body is the caller's to bound; this bounds the work.

    Raises:
        RemoteProtocolError: empty body, invalid UTF-8, bad base64, unknown packet type,
            an empty record, or too many packets.
    """
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError("payload is not valid UTF-8") from None
    if not body:
        raise RemoteProtocolError("empty payload")
    records = body.split(RECORD_SEPARATOR)
    if max_packets is not None and len(records) > max_packets:
        raise RemoteProtocolError(f"payload holds more than {max_packets} packets")
    packets: list[Packet] = []
    for record in records:
        if record[:1] == "b":
            try:
                data = base64.b64decode(record[1:], validate=True)
            except (binascii.Error, ValueError):
                raise RemoteProtocolError("invalid base64 in binary packet") from None
            packets.append(Packet(PacketType.MESSAGE, data))
        else:
            packets.append(decode_packet(record))
    return packets


# -- Engine.IO v3 -----------------------------------------------------------------------------


def _js_length(text: str) -> int:
    """The length JavaScript gives ``text``: UTF-16 code units."""
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _v3_text(packet: Packet) -> str:
    if isinstance(packet.data, bytes):
        return f"b{int(packet.type)}" + base64.b64encode(packet.data).decode("ascii")
    return f"{int(packet.type)}{packet.data}"


def _decode_v3_text(record: str) -> Packet:
    if record[:1] != "b":
        return decode_packet(record)
    if record[1:2] != str(int(PacketType.MESSAGE)):
        raise RemoteProtocolError("a base64 packet must be a MESSAGE")
    try:
        data = base64.b64decode(record[2:], validate=True)
    except (binascii.Error, ValueError):
        raise RemoteProtocolError("invalid base64 in binary packet") from None
    return Packet(PacketType.MESSAGE, data)


def encode_ws_message_v3(packet: Packet) -> str | bytes:
    """Encode one packet as an Engine.IO v3 WebSocket message: text as in v4, binary as
    the type byte followed by the bytes."""
    if isinstance(packet.data, bytes):
        return bytes((int(packet.type),)) + packet.data
    return f"{int(packet.type)}{packet.data}"


def decode_ws_message_v3(message: str | bytes | bytearray | memoryview) -> Packet:
    """Decode one Engine.IO v3 WebSocket message (a binary one starts with its type byte;
    a text one may be ``"b4"`` and base64).

    Raises:
        RemoteProtocolError: empty, an unknown type, or binary that is not a MESSAGE.
    """
    if isinstance(message, str):
        return _decode_v3_text(message)
    data = bytes(message)
    if data[:1] != bytes((int(PacketType.MESSAGE),)):
        raise RemoteProtocolError("a binary v3 message must be a MESSAGE")
    return Packet(PacketType.MESSAGE, data[1:])


def encode_payload_v3(packets: Sequence[Packet], *, binary: bool = False) -> str | bytes:
    """Encode packets as one Engine.IO v3 polling body.

    Args:
        binary: the client takes binary bodies (it did not ask for ``b64``): a payload
            holding bytes is then the binary form; otherwise (and for text-only payloads)
            ``<length>:<packet>`` records, binary data as ``b4`` and base64.

    Returns:
        ``str`` for a text body, ``bytes`` for a binary one (``application/octet-stream``).
    """
    if binary and any(isinstance(p.data, bytes) for p in packets):
        parts: list[bytes] = []
        for packet in packets:
            if isinstance(packet.data, bytes):
                body, kind = bytes((int(packet.type),)) + packet.data, 1
            else:
                body, kind = f"{int(packet.type)}{packet.data}".encode(), 0
            digits = bytes(int(d) for d in str(len(body)))
            parts.append(bytes((kind,)) + digits + b"\xff" + body)
        return b"".join(parts)
    if not packets:
        return "0:"
    records = []
    for packet in packets:
        text = _v3_text(packet)
        records.append(f"{_js_length(text)}:{text}")
    return "".join(records)


def decode_payload_v3(body: str | bytes, *, max_packets: int | None = None) -> list[Packet]:
    """Decode one Engine.IO v3 polling body.

    Args:
        body: ``str`` for a text body, ``bytes`` for a binary one (a request with
            ``Content-Type: application/octet-stream``).
        max_packets: refuse a body with more packets than this (None: no limit).

    Raises:
        RemoteProtocolError: a malformed record, a length that does not match, bad UTF-8
            or base64, an unknown packet type, or too many packets.
    """
    packets: list[Packet] = []

    def add(packet: Packet) -> None:
        packets.append(packet)
        if max_packets is not None and len(packets) > max_packets:
            raise RemoteProtocolError(f"payload holds more than {max_packets} packets")

    if isinstance(body, bytes):
        pos = 0
        while pos < len(body):
            kind = body[pos]
            end = body.find(b"\xff", pos + 1, pos + 12)
            if kind not in (0, 1) or end < 0 or end == pos + 1:
                raise RemoteProtocolError("malformed binary payload record")
            length_digits = body[pos + 1 : end]
            if any(d > 9 for d in length_digits):
                raise RemoteProtocolError("malformed binary payload length")
            length = int("".join(str(d) for d in length_digits))
            record = body[end + 1 : end + 1 + length]
            if len(record) != length or not length:
                raise RemoteProtocolError("binary payload record shorter than its length")
            pos = end + 1 + length
            if kind == 1:
                add(decode_ws_message_v3(record))
            else:
                try:
                    add(_decode_v3_text(record.decode("utf-8")))
                except UnicodeDecodeError:
                    raise RemoteProtocolError("payload is not valid UTF-8") from None
        if not packets:
            raise RemoteProtocolError("empty payload")
        return packets
    if not body:
        raise RemoteProtocolError("empty payload")
    if body.isascii():
        units, width = body.encode("ascii"), 1
    else:
        # Lengths count UTF-16 code units: cut the records in that form.
        units, width = body.encode("utf-16-le", "surrogatepass"), 2
    codec = "ascii" if width == 1 else "utf-16-le"
    pos, size = 0, len(units) // width
    while pos < size:
        header = units[pos * width : (pos + 12) * width].decode(codec, "replace")
        colon = header.find(":")
        digits = header[:colon]
        if colon < 1 or not digits.isdigit() or not digits.isascii():
            raise RemoteProtocolError("malformed payload record length")
        start = pos + colon + 1
        end = start + int(digits)
        if end > size:
            raise RemoteProtocolError("payload record shorter than its length")
        try:
            text = units[start * width : end * width].decode(codec)
        except UnicodeDecodeError:
            raise RemoteProtocolError("payload record cuts a character in two") from None
        pos = end
        if text:
            add(_decode_v3_text(text))
    return packets


@dataclass(frozen=True, slots=True)
class OpenInfo:
    """The data of the OPEN packet. Times are in milliseconds, as on the wire."""

    sid: str
    upgrades: tuple[str, ...]
    ping_interval: int
    ping_timeout: int
    max_payload: int


def encode_open(info: OpenInfo) -> Packet:
    """Build the OPEN packet for ``info`` (exactly the five v4 keys)."""
    data = json.dumps(
        {
            "sid": info.sid,
            "upgrades": list(info.upgrades),
            "pingInterval": info.ping_interval,
            "pingTimeout": info.ping_timeout,
            "maxPayload": info.max_payload,
        },
        separators=(",", ":"),
    )
    return Packet(PacketType.OPEN, data)


def _non_negative_int(obj: Mapping[str, object], key: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if type(value) is not int or value < 0:
        raise RemoteProtocolError(f"open packet: {key!r} must be a non-negative integer")
    return value


def decode_open(packet: Packet) -> OpenInfo:
    """Read an OPEN packet received by a client.

    ``maxPayload`` is optional (older v4 servers omit it); it then defaults to 1,000,000.

    Raises:
        RemoteProtocolError: not an OPEN packet, not JSON, or a field is missing or mistyped.
    """
    if packet.type is not PacketType.OPEN or not isinstance(packet.data, str):
        raise RemoteProtocolError(f"expected an OPEN packet, got {packet.type.name}")
    try:
        obj = json.loads(packet.data)
    except ValueError:
        raise RemoteProtocolError("open packet is not JSON") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError("open packet is not a JSON object")
    sid = obj.get("sid")
    upgrades = obj.get("upgrades", [])
    if not isinstance(sid, str) or not sid:
        raise RemoteProtocolError("open packet: 'sid' must be a non-empty string")
    if not isinstance(upgrades, list) or not all(isinstance(u, str) for u in upgrades):
        raise RemoteProtocolError("open packet: 'upgrades' must be a list of strings")
    return OpenInfo(
        sid=sid,
        upgrades=tuple(upgrades),
        ping_interval=_non_negative_int(obj, "pingInterval"),
        ping_timeout=_non_negative_int(obj, "pingTimeout"),
        max_payload=_non_negative_int(obj, "maxPayload", 1_000_000),
    )


class HandshakeErrorCode(enum.IntEnum):
    """Error codes of the JS server, sent as ``{"code": n, "message": "..."}`` bodies."""

    UNKNOWN_TRANSPORT = 0
    UNKNOWN_SID = 1
    BAD_HANDSHAKE_METHOD = 2
    BAD_REQUEST = 3
    FORBIDDEN = 4
    UNSUPPORTED_PROTOCOL_VERSION = 5


_ERROR_MESSAGES: Final = {
    HandshakeErrorCode.UNKNOWN_TRANSPORT: "Transport unknown",
    HandshakeErrorCode.UNKNOWN_SID: "Session ID unknown",
    HandshakeErrorCode.BAD_HANDSHAKE_METHOD: "Bad handshake method",
    HandshakeErrorCode.BAD_REQUEST: "Bad request",
    HandshakeErrorCode.FORBIDDEN: "Forbidden",
    HandshakeErrorCode.UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}


class HandshakeError(RemoteProtocolError):
    """A request the server must refuse before any session work.

    Attributes:
        code: the JS server's error code.
        status: the HTTP status to answer with (403 for FORBIDDEN, else 400).
    """

    def __init__(self, code: HandshakeErrorCode, message: str | None = None) -> None:
        self.code = code
        self.status = 403 if code is HandshakeErrorCode.FORBIDDEN else 400
        self.message = message or _ERROR_MESSAGES[code]
        super().__init__(self.message, error_status_hint=self.status)

    def body(self) -> bytes:
        """The JSON error body the JS server sends."""
        return json.dumps({"code": int(self.code), "message": self.message}).encode()


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What :func:`validate_request` learned from a valid request."""

    transport: Transport
    sid: str | None
    protocol: int = PROTOCOL_VERSION


def validate_request(
    query: Mapping[str, str],
    *,
    method: str,
    is_upgrade: bool,
    allowed_transports: Sequence[Transport],
    allow_eio3: bool = False,
) -> RequestInfo:
    """Check the query of an Engine.IO request, in the order the JS server checks it.

    Args:
        query: the decoded query parameters (first value of each).
        method: the HTTP method (``"GET"``, ``"POST"``, ...).
        is_upgrade: True for a WebSocket upgrade request.
        allowed_transports: the transports the server accepts.
        allow_eio3: accept Engine.IO v3 requests (``EIO=3``) too.

    Returns:
        The transport, the sid (None for a new session) and the protocol version.

    Raises:
        HandshakeError: with the code and status the JS server would answer with.
    """
    version = query.get("EIO")
    if version == "3" and allow_eio3:
        protocol = PROTOCOL_VERSION_V3
    elif version == str(PROTOCOL_VERSION):
        protocol = PROTOCOL_VERSION
    else:
        raise HandshakeError(HandshakeErrorCode.UNSUPPORTED_PROTOCOL_VERSION)
    if protocol == PROTOCOL_VERSION_V3 and "j" in query:
        # JSONP polling (v3 clients in browsers without CORS): not implemented.
        raise HandshakeError(HandshakeErrorCode.BAD_REQUEST, "JSONP polling is not supported")
    try:
        transport = Transport(query.get("transport", ""))
    except ValueError:
        raise HandshakeError(HandshakeErrorCode.UNKNOWN_TRANSPORT) from None
    if transport not in allowed_transports:
        raise HandshakeError(HandshakeErrorCode.UNKNOWN_TRANSPORT)
    if is_upgrade != (transport is Transport.WEBSOCKET):
        raise HandshakeError(HandshakeErrorCode.BAD_REQUEST)
    sid = query.get("sid") or None
    if sid is None and method != "GET":
        raise HandshakeError(HandshakeErrorCode.BAD_HANDSHAKE_METHOD)
    if sid is not None and method not in ("GET", "POST"):
        raise HandshakeError(HandshakeErrorCode.BAD_REQUEST)
    return RequestInfo(transport, sid, protocol)


class CloseReason(enum.StrEnum):
    """Why an Engine.IO session ended: the strings the JS implementation uses."""

    #: the peer closed the transport or sent a CLOSE packet.
    TRANSPORT_CLOSE = "transport close"
    #: the transport failed (I/O error, protocol violation at the HTTP level).
    TRANSPORT_ERROR = "transport error"
    #: no pong (server) or no ping (client) in time.
    PING_TIMEOUT = "ping timeout"
    #: the peer sent a packet that could not be decoded.
    PARSE_ERROR = "parse error"
    #: our side closed the session on purpose.
    FORCED_CLOSE = "forced close"
    #: the server is shutting down.
    SERVER_SHUTDOWN = "server shutting down"
    #: the peer did not read what was sent to it: its send queue stayed over its bound for
    #: longer than the grace period, or went far over it (not a JS reason: the JS server
    #: buffers without a bound).
    SLOW_CONSUMER = "slow consumer"
