"""Socket.IO protocol v5, sans-IO: packets and the default (JSON) parser.

Nothing here does I/O or imports an event loop. Decoding raises
:class:`~trio_sio.protocol.errors.RemoteProtocolError` and nothing else; building or encoding
a packet the protocol forbids raises :class:`~trio_sio.protocol.errors.LocalProtocolError`.

Wire form of the default parser (each frame travels as one Engine.IO MESSAGE)::

    <type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]

followed, for BINARY_EVENT and BINARY_ACK, by ``<attachments>`` binary frames. Inside the
JSON, each binary value is replaced by ``{"_placeholder":true,"num":<index>}``. Examples::

    2["hello","world"]                          EVENT on "/"
    2/admin,12["x"]                             EVENT on "/admin" asking for ack 12
    31[]                                        ACK 1, no arguments
    51-["hello",{"_placeholder":true,"num":0}]  BINARY_EVENT, then 1 binary frame

Binary packet types are a wire detail. A :class:`Packet` is always CONNECT, DISCONNECT, EVENT,
ACK or CONNECT_ERROR; :func:`encode` picks BINARY_EVENT/BINARY_ACK when the data holds
``bytes``, and the :class:`Decoder` hands back BINARY_* packets as EVENT/ACK with the bytes
in place. No flag records which form was used: an EVENT carries binary exactly when its data
contains ``bytes``.

Event names: a string that is not reserved (see :data:`RESERVED_EVENTS`), or, as in the JS
parser, a number (``int`` or ``float``). Numbers are accepted because a JS peer may send them
(``socket.emit(1)``); they are handed on unchanged, so a dispatch layer that keys handlers by
string should convert them with ``str()`` (which is what a JS ``EventEmitter`` does).

Limits shared with JS: in an EVENT/ACK that carries bytes, a dict of the data whose
``"_placeholder"`` is ``true`` is taken for a placeholder. Floats are written the Python way
(``1.0``, where ``JSON.stringify`` writes ``1``): the same JSON value, not the same bytes.
"""

from __future__ import annotations

import enum
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "MAX_ACK_ID",
    "MAX_CONTAINERS",
    "MAX_DEPTH",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "RESERVED_EVENTS",
    "Decoder",
    "JsonParser",
    "NeedData",
    "Packet",
    "PacketDecoder",
    "PacketType",
    "Parser",
    "check_payload",
    "encode",
]

PROTOCOL_VERSION: Final = 5

#: Ack ids have at most 15 decimal digits, so they stay exact as JS numbers.
MAX_ACK_ID: Final = 10**15 - 1

#: The deepest nesting of lists and dicts a packet's data may have, for every parser (JSON,
#: msgpack, CBOR): the data list of an EVENT is level 1, so ``["e", [[1]]]`` has 3 levels.
#: Anything a decoder accepts, :func:`~trio_sio.protocol.serialize.to_wire` and every
#: encoder take back with room to spare (at least ``2 * MAX_DEPTH`` levels), so echoing
#: or acking a peer's data never fails on its depth.
MAX_DEPTH: Final = 128

#: Lists and dicts in one packet's data, at most, by default (the parsers'
#: ``max_containers``). Containers are what decoding amplifies most: ``{}`` is 3 bytes of
#: JSON (1 of msgpack) and about 70 bytes decoded.
MAX_CONTAINERS: Final = 20_000


def shape_problem(data: Any, containers: int, max_containers: int) -> str | None:
    """Say why decoded ``data`` is nested deeper than :data:`MAX_DEPTH` or holds more than
    ``max_containers`` lists and dicts, or return None.

    Args:
        containers: an upper bound of the containers in ``data`` that the caller counted
            cheaply (e.g. the brackets of its JSON): below :data:`MAX_DEPTH` and
            ``max_containers``, nothing is walked.

    Iterative, and it stops as soon as a limit is passed: its work is bounded by the limits,
    not by the data.
    """
    if containers <= MAX_DEPTH and containers <= max_containers:
        return None
    if type(data) is not list and type(data) is not dict:
        return None
    count = 1  # containers seen (counted when found, so the stack stays within the limit)
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        depth += 1
        for child in node if type(node) is list else node.values():
            kind = type(child)
            if kind is list or kind is dict:
                count += 1
                if count > max_containers:
                    return f"more than {max_containers} lists and objects"
                stack.append((child, depth))
    return None


#: Event names with a special meaning on one side or the other; a peer may not send them.
RESERVED_EVENTS: Final = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)


class PacketType(enum.IntEnum):
    """The seven Socket.IO packet types (the first character of a text frame)."""

    #: client → server: join a namespace (data: optional auth object);
    #: server → client: joined (data: ``{"sid": ...}``).
    CONNECT = 0
    #: either way: leave a namespace. No data.
    DISCONNECT = 1
    #: either way: an event; data is ``[name, *args]``.
    EVENT = 2
    #: either way: the answer to an event sent with an ack id; data is the list of args.
    ACK = 3
    #: server → client: joining the namespace was refused (data: object or string).
    CONNECT_ERROR = 4
    #: wire only: an EVENT whose data holds binary attachments.
    BINARY_EVENT = 5
    #: wire only: an ACK whose data holds binary attachments.
    BINARY_ACK = 6


class NeedData(enum.Enum):
    """Type of the :data:`NEED_DATA` sentinel."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by ``next_packet()`` when no complete packet is ready yet.
NEED_DATA: Final = NeedData.NEED_DATA

_CONNECT: Final = PacketType.CONNECT
_DISCONNECT: Final = PacketType.DISCONNECT
_EVENT: Final = PacketType.EVENT
_ACK: Final = PacketType.ACK
_CONNECT_ERROR: Final = PacketType.CONNECT_ERROR
_BINARY_EVENT: Final = PacketType.BINARY_EVENT
_BINARY_ACK: Final = PacketType.BINARY_ACK


def check_payload(packet_type: PacketType, data: Any) -> str | None:
    """Say why ``data`` is not a valid payload for ``packet_type``, or return None.

    The rules of the JS parser (``isPayloadValid``), with "absent" spelled ``None``:

    - CONNECT: absent or an object (``dict``);
    - DISCONNECT: absent;
    - EVENT, BINARY_EVENT: a non-empty list whose first item, the event name, is a string not
      in :data:`RESERVED_EVENTS`, or a number;
    - ACK, BINARY_ACK: a list (possibly empty);
    - CONNECT_ERROR: an object or a string.

    Parsers other than the default one use this to validate what they decoded.
    """
    if packet_type is _EVENT or packet_type is _BINARY_EVENT:
        if type(data) is not list or not data:
            return "EVENT data must be a non-empty list"
        name = data[0]
        kind = type(name)
        if kind is str:
            if name in RESERVED_EVENTS:
                return f"{name!r} is a reserved event name"
            return None
        if kind is int or kind is float:
            return None
        return f"the event name must be a string or a number, not {kind.__name__}"
    if packet_type is _ACK or packet_type is _BINARY_ACK:
        return None if type(data) is list else "ACK data must be a list"
    if packet_type is _CONNECT:
        return None if data is None or type(data) is dict else "CONNECT data must be an object"
    if packet_type is _DISCONNECT:
        return None if data is None else "DISCONNECT carries no data"
    if packet_type is _CONNECT_ERROR:
        ok = type(data) is dict or type(data) is str
        return None if ok else "CONNECT_ERROR data must be an object or a string"
    return f"unknown packet type {packet_type!r}"


@dataclass(frozen=True, slots=True)
class Packet:
    """One Socket.IO packet, validated on construction.

    Attributes:
        type: CONNECT, DISCONNECT, EVENT, ACK or CONNECT_ERROR. The BINARY_* types exist only
            on the wire: use EVENT/ACK, the encoder picks the binary form when needed.
        namespace: starts with ``"/"`` and contains no ``","``.
        data: the payload, ``None`` when absent (rules in :func:`check_payload`). EVENT and
            ACK data are lists of JSON values (``None``, ``bool``, ``int``, ``float``,
            ``str``, ``list``, ``dict`` with ``str`` keys) and ``bytes`` at any depth. Build
            it with :func:`trio_sio.protocol.serialize.to_wire`.
        id: the ack id (``0 <= id <= MAX_ACK_ID``) or ``None``.

    Raises:
        LocalProtocolError: any field breaks the rules above.
    """

    type: PacketType
    namespace: str = "/"
    data: Any = None
    id: int | None = None

    def __post_init__(self) -> None:
        problem = _packet_problem(self.type, self.namespace, self.data, self.id)
        if problem is not None:
            raise LocalProtocolError(problem)


_new_object: Final = object.__new__
_set_slot: Final = object.__setattr__


def checked_packet(ptype: PacketType, namespace: str, data: Any, ack_id: int | None) -> Packet:
    """A :class:`Packet` from fields already known to pass its checks (a decoder's, or an
    ack's reply to a decoded packet), built without checking them again. Never raises."""
    packet: Packet = _new_object(Packet)
    _set_slot(packet, "type", ptype)
    _set_slot(packet, "namespace", namespace)
    _set_slot(packet, "data", data)
    _set_slot(packet, "id", ack_id)
    return packet


def _packet_problem(ptype: Any, namespace: Any, data: Any, ack_id: Any) -> str | None:
    if type(ptype) is not PacketType or ptype >= _BINARY_EVENT:
        return f"a packet's type must be CONNECT … CONNECT_ERROR, not {ptype!r}"
    if type(namespace) is not str or namespace[:1] != "/" or "," in namespace:
        return f"a namespace must start with '/' and contain no ',': {namespace!r}"
    if ack_id is not None and (type(ack_id) is not int or not 0 <= ack_id <= MAX_ACK_ID):
        return f"an ack id must be an int in [0, {MAX_ACK_ID}], not {ack_id!r}"
    return check_payload(ptype, data)


# --------------------------------------------------------------------------------------------
# Encoding


class _Attachments(threading.local):
    """Where the JSON encoder's ``default`` hook puts the binary values it meets.

    One shared encoder (cheaper than building one per call) walks the data once in C; each
    ``bytes`` it cannot serialise goes to ``_default`` below, which numbers it in traversal
    order, exactly as the JS ``deconstructPacket`` does. Thread-local, so concurrent encodes
    in different threads do not mix their attachments.
    """

    buffers: list[bytes] | None = None


_attachments = _Attachments()


def _default(obj: object) -> object:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        buffers = _attachments.buffers
        if buffers is None:  # pragma: no cover - only if _ENCODER were used elsewhere
            raise TypeError("binary data outside encode()")
        placeholder = {"_placeholder": True, "num": len(buffers)}
        buffers.append(bytes(obj))
        return placeholder
    raise TypeError(f"cannot encode a {type(obj).__name__} (use serialize.to_wire)")


_ENCODER: Final = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default
)
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_TYPE_TEXT: Final = {t: str(int(t)) for t in PacketType}


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _make_dump_chunks() -> Callable[[Any, int], Any] | None:
    """The C encoder that ``_ENCODER.encode`` builds anew for every call, built once.

    Without cycle detection (``markers=None``: a reused marker table would keep the entries
    of an encode that failed half-way): a reference cycle then ends in RecursionError,
    which :func:`_dump` reports like the encoder's own "circular reference" error.
    None where the C accelerator is missing.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    basestring = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or basestring is None:  # pragma: no cover - CPython has both
        return None
    iterencode: Callable[[Any, int], Any] = make(
        None, _default, basestring, None, ":", ",", False, False, False
    )
    return iterencode


_DUMP_CHUNKS: Final = _make_dump_chunks()


def _dump(data: Any, buffers: list[bytes]) -> str:
    _attachments.buffers = buffers
    try:
        if _DUMP_CHUNKS is not None and type(data) is not str:
            text = "".join(_DUMP_CHUNKS(data, 0))
        else:
            text = _ENCODER.encode(data)
    except (TypeError, ValueError, RecursionError) as exc:
        raise LocalProtocolError(f"cannot encode packet data: {exc}") from None
    finally:
        _attachments.buffers = None
    if not text.isascii() and _SURROGATE.search(text):
        # Lone surrogates cannot be sent as UTF-8; escape them as JSON.stringify does.
        text = _SURROGATE.sub(_escape_surrogate, text)
    return text


def encode(packet: Packet) -> list[str | bytes]:
    """Encode a packet with the default parser.

    Args:
        packet: the packet; its data must already be wire-ready (see
            :func:`trio_sio.protocol.serialize.to_wire`).

    Returns:
        The text frame, then one ``bytes`` frame per binary attachment, in placeholder order.
        An EVENT/ACK whose data holds ``bytes`` goes out as BINARY_EVENT/BINARY_ACK.

    Raises:
        LocalProtocolError: the data holds something JSON cannot carry (a ``set``, NaN, a
            reference cycle, ...), or ``bytes`` in a packet other than EVENT/ACK.
    """
    data = packet.data
    ptype = packet.type
    if data is None:
        payload = ""
        head = _TYPE_TEXT[ptype]
        buffers: list[bytes] = []
    else:
        buffers = []
        payload = _dump(data, buffers)
        if not buffers:
            head = _TYPE_TEXT[ptype]
        elif ptype is _EVENT:
            head = f"5{len(buffers)}-"
        elif ptype is _ACK:
            head = f"6{len(buffers)}-"
        else:
            raise LocalProtocolError(f"only EVENT and ACK may carry binary data, not {ptype.name}")
    namespace = packet.namespace
    if namespace != "/":
        head += namespace + ","
    if packet.id is not None:
        head += str(packet.id)
    text = head + payload
    if buffers:
        return [text, *buffers]
    return [text]


# --------------------------------------------------------------------------------------------
# Decoding


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_JSON: Final = json.JSONDecoder(parse_constant=_reject_constant)
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")  # what JSON calls whitespace


#: what JSON counts as whitespace (what _WHITESPACE skips)
_JSON_WS: Final = frozenset(" \t\n\r")


def _skip_ws(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    return pos if match is None else match.end()


_TYPE_OF_CHAR: Final = {str(int(t)): t for t in PacketType}
_MAX_ID_DIGITS: Final = len(str(MAX_ACK_ID))
# Bounded scans: at most 10 digits then "-"; at most 15 digits not followed by another.
_COUNT: Final = re.compile("([0-9]{1,10})-")
_ACK_ID: Final = re.compile(f"[0-9]{{1,{_MAX_ID_DIGITS}}}(?![0-9])")


def _find_placeholders(data: list[Any], count: int) -> list[tuple[Any, Any, int]]:
    """Find every placeholder in ``data``: (container, key, index) triples.

    A dict whose ``"_placeholder"`` is ``true`` must be exactly
    ``{"_placeholder": true, "num": n}`` with ``n`` an int in ``[0, count)``; other dicts are
    plain data. Iterative, so any depth the JSON decoder accepted is fine.
    """
    found: list[tuple[Any, Any, int]] = []
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        items = enumerate(node) if type(node) is list else node.items()
        for key, value in items:
            kind = type(value)
            if kind is dict:
                if value.get("_placeholder") is True:
                    num = value.get("num")
                    if len(value) != 2 or type(num) is not int or not 0 <= num < count:
                        raise RemoteProtocolError(f"illegal attachment placeholder {value!r}")
                    found.append((node, key, num))
                else:
                    stack.append(value)
            elif kind is list:
                stack.append(value)
    return found


@dataclass(slots=True)
class _Pending:
    """A binary packet waiting for its attachments."""

    type: PacketType
    namespace: str
    ack_id: int | None
    data: list[Any]
    expected: int
    placeholders: list[tuple[Any, Any, int]]
    buffers: list[bytes] = field(default_factory=list)
    size: int = 0


class Decoder:
    """Turns the frames of one connection into packets (the default parser).

    Feed every frame the Engine.IO layer delivers, in order, then collect packets::

        decoder.feed(frame)
        while (packet := decoder.next_packet()) is not NEED_DATA:
            handle(packet)

    A BINARY_EVENT/BINARY_ACK text frame is held until its attachments (the following binary
    frames) have arrived; it then comes out as EVENT/ACK with the ``bytes`` in place.

    Errors are final, as in h11: once :meth:`feed` has raised, the connection must be closed
    and every later call to :meth:`feed` raises again.

    Args:
        max_attachments: refuse a binary packet that announces more attachments than this
            (the JS default is 10).
        max_attachment_bytes: refuse a binary packet whose attachments add up to more bytes.
        max_containers: refuse a packet whose data holds more lists and objects (a packet
            nested deeper than :data:`MAX_DEPTH` is refused too).

    The JSON is decoded by the standard library's C decoder. A payload with more brackets
    than :data:`MAX_DEPTH` is then walked once, which stops at the first limit passed.
    """

    __slots__ = (
        "_error",
        "_max_attachment_bytes",
        "_max_attachments",
        "_max_containers",
        "_pending",
        "_ready",
    )

    def __init__(
        self,
        *,
        max_attachments: int = 10,
        max_attachment_bytes: int = 10_000_000,
        max_containers: int = MAX_CONTAINERS,
    ) -> None:
        if max_attachments < 0 or max_attachment_bytes < 0:
            raise ValueError("limits must be non-negative")
        if max_containers < MAX_DEPTH:
            raise ValueError(f"max_containers must be at least {MAX_DEPTH}")
        self._max_attachments = max_attachments
        self._max_attachment_bytes = max_attachment_bytes
        self._max_containers = max_containers
        self._pending: _Pending | None = None
        # Packets decoded and not yet taken: one at most when each frame fed is followed by
        # next_packet() until NEED_DATA, so a list (a deque costs 760 bytes per connection).
        self._ready: list[Packet] = []
        self._error: str | None = None

    @property
    def pending_attachments(self) -> int:
        """How many binary frames the packet being reassembled still needs (0 if none)."""
        pending = self._pending
        return 0 if pending is None else pending.expected - len(pending.buffers)

    def feed(self, frame: str | bytes | bytearray | memoryview) -> None:
        """Take one frame: ``str`` for a text frame, bytes-like for a binary frame.

        Raises:
            RemoteProtocolError: the frame breaks the protocol (see :class:`Decoder`), or an
                earlier frame did.
            TypeError: ``frame`` is neither text nor bytes-like (a bug in the caller).
        """
        if self._error is not None:
            raise RemoteProtocolError(f"decoder already failed: {self._error}")
        try:
            if isinstance(frame, str):
                self._feed_text(frame)
            elif isinstance(frame, (bytes, bytearray, memoryview)):
                self._feed_binary(bytes(frame))
            else:
                raise TypeError(f"a frame is str or bytes, not {type(frame).__name__}")
        except RemoteProtocolError as exc:
            self._error = str(exc)
            self._pending = None
            raise

    def next_packet(self) -> Packet | NeedData:
        """Return the next complete packet, or :data:`NEED_DATA` if none is ready."""
        if self._ready:
            return self._ready.pop(0)
        return NEED_DATA

    def _feed_text(self, frame: str) -> None:
        if self._pending is not None:
            raise RemoteProtocolError(
                f"text frame while {self.pending_attachments} attachment(s) are still expected"
            )
        ptype = _TYPE_OF_CHAR.get(frame[:1])
        if ptype is None:
            raise RemoteProtocolError(f"unknown packet type {frame[:1]!r}")
        pos = 1
        end = len(frame)
        count = -1
        if ptype >= _BINARY_EVENT:
            match = _COUNT.match(frame, 1)
            if match is None:
                raise RemoteProtocolError("illegal attachment count")
            count = int(match.group(1))
            if count > self._max_attachments:
                raise RemoteProtocolError(
                    f"too many attachments ({count} > {self._max_attachments})"
                )
            pos = match.end()
        namespace = "/"
        if frame.startswith("/", pos):
            comma = frame.find(",", pos)
            if comma < 0:
                namespace = frame[pos:]
                pos = end
            else:
                namespace = frame[pos:comma]
                pos = comma + 1
        ack_id = None
        if pos < end and "0" <= frame[pos] <= "9":
            match = _ACK_ID.match(frame, pos)
            if match is None:
                raise RemoteProtocolError(f"ack id longer than {_MAX_ID_DIGITS} digits")
            ack_id = int(match.group())
            pos = match.end()
        data: Any = None
        if pos < end:
            # (whitespace around the JSON is rare: skipped only where there is some)
            start = _skip_ws(frame, pos) if frame[pos] in _JSON_WS else pos
            try:
                data, stop = _JSON.raw_decode(frame, start)
            except (ValueError, RecursionError):
                raise RemoteProtocolError("payload is not valid JSON") from None
            if stop != end and _skip_ws(frame, stop) != end:
                raise RemoteProtocolError("payload is not valid JSON (trailing data)")
            if data is None:  # present but null: valid for no packet type
                raise RemoteProtocolError("invalid payload: null")
            brackets = frame.count("[", pos) + frame.count("{", pos)
            if brackets > MAX_DEPTH or brackets > self._max_containers:  # else nothing to walk
                problem = shape_problem(data, brackets, self._max_containers)
                if problem is not None:
                    raise RemoteProtocolError(f"invalid payload: {problem}")
        problem = check_payload(ptype, data)
        if problem is not None:
            raise RemoteProtocolError(f"invalid payload: {problem}")
        if count < 0:
            self._emit(ptype, namespace, data, ack_id)
            return
        placeholders = _find_placeholders(data, count)
        final = _EVENT if ptype is _BINARY_EVENT else _ACK
        if count == 0:
            self._emit(final, namespace, data, ack_id)
        else:
            self._pending = _Pending(final, namespace, ack_id, data, count, placeholders)

    def _feed_binary(self, frame: bytes) -> None:
        pending = self._pending
        if pending is None:
            raise RemoteProtocolError("binary frame while no attachment is expected")
        pending.size += len(frame)
        if pending.size > self._max_attachment_bytes:
            raise RemoteProtocolError(
                f"attachments exceed {self._max_attachment_bytes} bytes in one packet"
            )
        buffers = pending.buffers
        buffers.append(frame)
        if len(buffers) < pending.expected:
            return
        for container, key, num in pending.placeholders:
            container[key] = buffers[num]
        self._pending = None
        self._emit(pending.type, pending.namespace, pending.data, pending.ack_id)

    def _emit(self, ptype: PacketType, namespace: str, data: Any, ack_id: int | None) -> None:
        # Every field was checked as it was decoded (the payload by check_payload).
        self._ready.append(checked_packet(ptype, namespace, data, ack_id))


# --------------------------------------------------------------------------------------------
# Parsers


class PacketDecoder(Protocol):
    """What a parser's decoder offers (see :class:`Decoder`)."""

    def feed(self, frame: str | bytes) -> None:
        """Take one frame; raise :class:`RemoteProtocolError` if it breaks the protocol."""
        ...

    def next_packet(self) -> Packet | NeedData:
        """Return the next complete packet, or :data:`NEED_DATA`."""
        ...


class Parser(Protocol):
    """A Socket.IO parser: a stateless encoder plus a factory of per-connection decoders.

    Both ends of a connection must use the same parser. Choose one per server or client
    (``Server(parser=...)``); :class:`JsonParser` is the default.
    """

    def encode(self, packet: Packet) -> list[str | bytes]:
        """Encode one packet as the frames to send, in order."""
        ...

    def decoder(self) -> PacketDecoder:
        """Return a fresh decoder for one connection."""
        ...


@dataclass(frozen=True, slots=True)
class JsonParser:
    """The default parser (JSON text plus binary attachments), compatible with socket.io-parser.

    Attributes:
        max_attachments: passed to every :class:`Decoder`.
        max_attachment_bytes: passed to every :class:`Decoder`.
        max_containers: passed to every :class:`Decoder`.
    """

    max_attachments: int = 10
    max_attachment_bytes: int = 10_000_000
    max_containers: int = MAX_CONTAINERS

    def encode(self, packet: Packet) -> list[str | bytes]:
        """Encode with :func:`encode`."""
        return encode(packet)

    def decoder(self) -> Decoder:
        """Return a new :class:`Decoder` with this parser's limits."""
        return Decoder(
            max_attachments=self.max_attachments,
            max_attachment_bytes=self.max_attachment_bytes,
            max_containers=self.max_containers,
        )
