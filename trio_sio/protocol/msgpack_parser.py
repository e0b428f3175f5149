"""A MessagePack parser for Socket.IO, wire-compatible with ``socket.io-msgpack-parser`` 3.x.

Each packet is a single binary frame holding the msgpack of the packet object, as the
official JS parser (on ``notepack.io``) sends it::

    {"type": 2, "data": ["hello", <bin 0102>], "nsp": "/", "id": 12}

``data`` and ``id`` are left out when absent. ``type`` is 0 to 4: binary stays in place as
msgpack ``bin``, so there are no BINARY_* packets and no attachments. Both ends must use
this parser: in JS, ``parser: require("socket.io-msgpack-parser")`` on the server and on
every client.

Decoding mirrors the checks of the JS parser (``checkPacket``), then applies the rules every
trio_sio packet follows (:func:`~trio_sio.protocol.socketio.check_payload`, as for the JSON
parser):

- the packet is a map; ``type`` an integer from 0 to 4 (an integral float counts, as a JS
  number would); ``nsp`` a string (required, as in JS), starting with ``"/"`` and without
  ``","``; ``id`` absent or an integer in ``[0, MAX_ACK_ID]``;
- ``data`` as for the JSON parser: CONNECT an object or nothing, DISCONNECT nothing, EVENT a
  non-empty list whose first item is a (non-reserved) name, ACK a list, CONNECT_ERROR an
  object or a string. A ``nil`` ``data`` counts as absent (python-socketio's msgpack parser
  sends one; the JS parser refuses it);
- map keys must be strings; strings must be valid UTF-8.

What ``notepack.io`` makes of JavaScript values, and what we make of them on the way in:

- ``undefined`` (fixext 1, type 0): dropped from an object, ``None`` in a list (as
  ``JSON.stringify`` does), "absent" as a packet's ``data`` or ``id``. A Node server's
  CONNECT answer carries ``{sid, pid: undefined}``; a Node client's CONNECT without ``auth``
  carries ``data: undefined``.
- a ``Date`` (fixext 8, type 0: milliseconds since the epoch, signed 64-bit): the string
  ``Date.prototype.toISOString()`` gives, e.g. ``"1970-01-01T00:00:00.000Z"`` (years outside
  0..9999 as ``"+010000-..."``), which is what a JS peer's Date becomes through the JSON
  parser and what :func:`~trio_sio.protocol.serialize.to_wire` makes of a ``datetime``. A
  time outside the range of a JS Date gives ``None`` (``JSON.stringify`` writes ``null``).
  The msgpack timestamp extension (type -1), which other msgpack libraries use for dates, is
  read the same way.
- an ``ArrayBuffer`` or typed array from Node (ext 8/16/32, type 0) and a ``Buffer`` (bin):
  ``bytes``.
- any other extension type is refused (notepack would hand ``[type, Buffer]`` to the app).

Encoding sends ``None``, ``bool``, ``int`` (64-bit at most), ``float``, ``str``, ``bytes``
(as ``bin``, a ``Buffer`` in Node), ``list`` and ``dict`` with string keys: what
:func:`~trio_sio.protocol.serialize.to_wire` produces (a ``datetime`` is already an ISO
string by then). A lone surrogate in a string cannot be sent (UTF-8 cannot carry it).

Of the sans-IO layer, this module alone imports ``msgpack`` (the ``msgpack`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Final

try:
    import msgpack
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "trio_sio.protocol.msgpack_parser needs the msgpack package: "
        "pip install 'trio-sio[msgpack]'"
    ) from exc

from ._frame_decoder import WholeFrameDecoder
from .errors import LocalProtocolError, RemoteProtocolError
from .socketio import (
    MAX_ACK_ID,
    MAX_CONTAINERS,
    MAX_DEPTH,
    Packet,
    PacketType,
    check_payload,
    shape_problem,
)

__all__ = ["MsgpackDecoder", "MsgpackParser"]

_PACKET_TYPES: Final = {int(t): t for t in PacketType if t < PacketType.BINARY_EVENT}
_SCALARS: Final = frozenset({str, int, float, bool, type(None), bytes})
_CONTAINERS: Final = frozenset({list, dict})
#: The largest time a JS Date holds, in milliseconds either side of the epoch.
_MAX_DATE_MS: Final = 8_640_000_000_000_000
_MS_PER_DAY: Final = 86_400_000


class _Undefined:
    """JavaScript's ``undefined``, while a decoded packet is being cleaned up."""

    __slots__ = ()


_UNDEFINED: Final = _Undefined()


class _Ext0:
    """An extension of type 0 and length 1 or 8, whose meaning depends on its format.

    notepack writes ``undefined`` as fixext 1 and a Date as fixext 8, but an ArrayBuffer of 1
    or 8 bytes as ext 8 with the same type and length, and msgpack's ``ext_hook`` is not told
    which format it read. :func:`_ext0_forms` finds out, when there is such a value.
    """

    __slots__ = ("data", "fixext")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.fixext = False


_SPECIAL: Final = frozenset({_Ext0, msgpack.Timestamp})

# Bytes after the prefix of a scalar of fixed size; bytes of the length of str, bin, ext,
# array and map; data bytes of fixext.
_FIXED: Final = {
    0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,
}  # fmt: skip
_SIZED: Final = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}
_EXT: Final = {0xC7: 1, 0xC8: 2, 0xC9: 4}
_FIXEXT: Final = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
_ARRAY: Final = {0xDC: 2, 0xDD: 4}
_MAP: Final = {0xDE: 2, 0xDF: 4}


def _ext0_forms(frame: bytes) -> list[bool]:
    """For each extension of type 0 and length 1 or 8 in ``frame``, in order: is it fixext?

    Walks the msgpack structure without building values; ``frame`` has been decoded by
    msgpack already, so it is well formed.
    """
    forms: list[bool] = []
    pos = 0
    pending = 1
    while pending:
        pending -= 1
        prefix = frame[pos]
        pos += 1
        if prefix < 0x80 or prefix >= 0xE0:  # fixint
            continue
        if prefix < 0x90:  # fixmap
            pending += 2 * (prefix & 0x0F)
        elif prefix < 0xA0:  # fixarray
            pending += prefix & 0x0F
        elif prefix < 0xC0:  # fixstr
            pos += prefix & 0x1F
        elif (size := _FIXED.get(prefix)) is not None:
            pos += size
        elif (size := _SIZED.get(prefix)) is not None:
            pos += size + int.from_bytes(frame[pos : pos + size], "big")
        elif (size := _ARRAY.get(prefix)) is not None:
            pending += int.from_bytes(frame[pos : pos + size], "big")
            pos += size
        elif (size := _MAP.get(prefix)) is not None:
            pending += 2 * int.from_bytes(frame[pos : pos + size], "big")
            pos += size
        elif (size := _FIXEXT.get(prefix)) is not None:
            if frame[pos] == 0 and size in (1, 8):
                forms.append(True)
            pos += 1 + size
        elif (size := _EXT.get(prefix)) is not None:
            length = int.from_bytes(frame[pos : pos + size], "big")
            pos += size
            if frame[pos] == 0 and length in (1, 8):
                forms.append(False)
            pos += 1 + length
        else:
            raise RemoteProtocolError(f"invalid msgpack prefix 0x{prefix:02x}")
    return forms


def _iso_date(ms: int) -> str | None:
    """``new Date(ms).toISOString()``, or None for an invalid Date (out of range)."""
    if not -_MAX_DATE_MS <= ms <= _MAX_DATE_MS:
        return None
    days, rest = divmod(ms, _MS_PER_DAY)
    # Days since 1970-01-01 to a proleptic Gregorian date, for any year (H. Hinnant's
    # civil_from_days): Python's datetime stops at years 1 and 9999, a JS Date does not.
    era, day_of_era = divmod(days + 719_468, 146_097)
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    year = year_of_era + era * 400 + (month <= 2)
    seconds, milli = divmod(rest, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    year_text = f"{year:04d}" if 0 <= year <= 9999 else f"{year:+07d}"  # "+010000", "-000001"
    return f"{year_text}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}Z"


def _resolve(value: Any) -> Any:
    """The value of an extension: ``bytes``, a date string, None or :data:`_UNDEFINED`."""
    if type(value) is _Ext0:
        if not value.fixext:
            return value.data
        if len(value.data) == 1:
            return _UNDEFINED
        return _iso_date(int.from_bytes(value.data, "big", signed=True))
    return _iso_date(value.seconds * 1000 + value.nanoseconds // 1_000_000)


def _clean(root: list[Any] | dict[Any, Any]) -> str | None:
    """Resolve the extensions in ``root`` in place; say why it is not valid data, or None.

    Iterative: any depth msgpack accepted is fine.
    """
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if type(node) is list:
            for index, value in enumerate(node):
                kind = type(value)
                if kind in _CONTAINERS:
                    stack.append(value)
                elif kind in _SPECIAL:
                    new = _resolve(value)
                    node[index] = None if new is _UNDEFINED else new
            continue
        dropped: list[str] = []
        for key, value in node.items():
            if type(key) is not str:
                return f"a map key of type {type(key).__name__}"
            kind = type(value)
            if kind in _CONTAINERS:
                stack.append(value)
            elif kind in _SPECIAL:
                new = _resolve(value)
                if new is _UNDEFINED:
                    dropped.append(key)
                else:
                    node[key] = new  # same keys: fine while iterating
        for key in dropped:
            del node[key]
    return None


def _js_integer(value: Any) -> int | None:
    """``value`` as an int if JavaScript's ``Number.isInteger`` holds for it, else None."""
    kind = type(value)
    if kind is int:
        return int(value)
    if kind is float and value.is_integer():
        return int(value)
    return None


class _TooMany(Exception):
    """Internal: the frame holds more containers than allowed (stops msgpack at once)."""


def _decode_frame(frame: bytes, max_containers: int = MAX_CONTAINERS) -> Packet:
    ambiguous: list[_Ext0] = []
    containers = 0

    def count(value: Any) -> Any:
        # Called by msgpack for each array and map as it is built: a frame of a million
        # 1-byte maps stops here at the limit instead of being built whole.
        nonlocal containers
        containers += 1
        if containers > max_containers + 1:  # (+1: the packet's own map)
            raise _TooMany
        return value

    def ext_hook(code: int, data: bytes) -> Any:
        if code != 0:
            raise ValueError(f"msgpack extension type {code} is not accepted")
        if len(data) in (1, 8):
            marker = _Ext0(data)
            ambiguous.append(marker)
            return marker
        return data  # an ArrayBuffer or typed array from Node

    try:
        obj = msgpack.unpackb(
            frame,
            ext_hook=ext_hook,
            list_hook=count,
            object_hook=count,
            raw=False,
            strict_map_key=True,
        )
    except _TooMany:
        raise RemoteProtocolError(
            f"invalid payload: more than {max_containers} lists and objects"
        ) from None
    except Exception:  # a C extension and our hook: any failure of it means bad input
        raise RemoteProtocolError("invalid msgpack") from None
    if ambiguous:
        try:
            forms = _ext0_forms(frame)
        except IndexError:  # pragma: no cover - msgpack read it: it is well formed
            raise RemoteProtocolError("invalid msgpack") from None
        if len(forms) != len(ambiguous):  # pragma: no cover - msgpack and we disagree
            raise RemoteProtocolError("invalid msgpack extensions")
        for marker, fixext in zip(ambiguous, forms, strict=True):
            marker.fixext = fixext
    if type(obj) is not dict:
        raise RemoteProtocolError("a msgpack packet must be a map")
    raw_type = _js_integer(obj.get("type"))
    ptype = _PACKET_TYPES.get(raw_type) if raw_type is not None else None
    if ptype is None:
        raise RemoteProtocolError(f"invalid packet type {obj.get('type')!r:.40}")
    namespace = obj.get("nsp")
    if type(namespace) is not str or namespace[:1] != "/" or "," in namespace:
        raise RemoteProtocolError("invalid namespace")
    raw_id = obj.get("id", _UNDEFINED)
    if type(raw_id) in _SPECIAL and _resolve(raw_id) is _UNDEFINED:
        raw_id = _UNDEFINED
    ack_id = None
    if raw_id is not _UNDEFINED:
        ack_id = _js_integer(raw_id)
        if ack_id is None or not 0 <= ack_id <= MAX_ACK_ID:
            raise RemoteProtocolError("invalid ack id")
    data = obj.get("data")
    kind = type(data)
    if kind in _SPECIAL:
        if _resolve(data) is not _UNDEFINED:
            raise RemoteProtocolError("invalid payload: a binary or date payload")
        data = None
    elif isinstance(data, (list, dict)):  # msgpack makes no subclasses
        problem = shape_problem(data, containers - 1, max_containers) or _clean(data)
        if problem is not None:
            raise RemoteProtocolError(f"invalid payload: {problem}")
    problem = check_payload(ptype, data)
    if problem is not None:
        raise RemoteProtocolError(f"invalid payload: {problem}")
    try:
        return Packet(ptype, namespace, data, ack_id)
    except LocalProtocolError as exc:  # pragma: no cover - checked above already
        raise RemoteProtocolError(str(exc)) from None


class MsgpackDecoder(WholeFrameDecoder):
    """Decodes the msgpack frames of one connection: one whole packet per binary frame."""

    __slots__ = ()

    def __init__(self, max_containers: int = MAX_CONTAINERS) -> None:
        if max_containers < MAX_DEPTH:
            raise ValueError(f"max_containers must be at least {MAX_DEPTH}")
        super().__init__(partial(_decode_frame, max_containers=max_containers), "msgpack")


def _data_problem(data: Any) -> str | None:
    """Say why ``data`` is not JSON-like data plus bytes, or return None.

    Iterative, and each container is visited once, so deep or cyclic data cannot hang it.
    """
    stack = [data]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind in _SCALARS or id(node) in seen:
            continue
        seen.add(id(node))
        if kind is list:
            stack.extend(node)
        elif kind is dict:
            for key in node:
                if type(key) is not str:
                    return f"a map key of type {type(key).__name__}"
            stack.extend(node.values())
        else:
            return f"a value of type {kind.__name__}"
    return None


@dataclass(frozen=True, slots=True)
class MsgpackParser:
    """Socket.IO parser compatible with the JS ``socket.io-msgpack-parser``: every packet is
    one msgpack-encoded binary frame.

    Needs the ``msgpack`` package (``pip install 'trio-sio[msgpack]'``)::

        from trio_sio.protocol.msgpack_parser import MsgpackParser

        sio = trio_sio.Server(parser=MsgpackParser())
        client = trio_sio.Client(url, parser=MsgpackParser())

    Attributes:
        max_containers: refuse a packet whose data holds more lists and maps (counted while
            msgpack builds them, so decoding stops there); data nested deeper than
            :data:`~trio_sio.protocol.socketio.MAX_DEPTH` is refused too.
    """

    max_containers: int = MAX_CONTAINERS

    def encode(self, packet: Packet) -> list[str | bytes]:
        """Encode one packet as a single binary frame: ``{type, data?, nsp, id?}``.

        The data must be wire-ready (see :func:`trio_sio.protocol.serialize.to_wire`): only
        what the decoder accepts back is sent.

        Raises:
            LocalProtocolError: the data holds something else (a ``set``, a ``bytearray``,
                a non-string map key, ...) or cannot be encoded (an int beyond 64 bits, a
                lone surrogate, nesting over about 1000 levels, a reference cycle).
        """
        obj: dict[str, Any] = {"type": int(packet.type)}
        if packet.data is not None:
            problem = _data_problem(packet.data)
            if problem is not None:
                raise LocalProtocolError(f"cannot encode {problem} (use serialize.to_wire)")
            obj["data"] = packet.data
        obj["nsp"] = packet.namespace
        if packet.id is not None:
            obj["id"] = packet.id
        try:
            return [msgpack.packb(obj, use_bin_type=True)]
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise LocalProtocolError(f"cannot encode packet data: {exc}") from None

    def decoder(self) -> MsgpackDecoder:
        """Return a new :class:`MsgpackDecoder`."""
        return MsgpackDecoder(self.max_containers)
