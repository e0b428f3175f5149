"""A CBOR parser for Socket.IO: one binary frame per packet, bytes carried natively.

The CBOR counterpart of the JS ``socket.io-msgpack-parser``. Each packet is a single binary
frame holding a CBOR map::

    {"type": 2, "nsp": "/", "data": ["hello", h'0102'], "id": 12}

``data`` and ``id`` are left out when absent (a CBOR ``null`` ``data`` also counts as
absent). ``type`` is 0 to 4: there are no BINARY_* packets and no attachments, since CBOR has
byte strings. Both ends must use this parser (for a JS peer, a custom parser built on a CBOR
library with the same map layout).

Decoding accepts only the JSON data model plus byte strings: ``null``, booleans, integers,
floats, text strings, byte strings, arrays and maps with text-string keys. Every CBOR tag is
refused (dates, bignums, sets, shared references, regular expressions, ...), so a peer cannot
make us build arbitrary Python objects or reference cycles. Payloads are validated exactly as
by the default parser (:func:`~trio_sio.protocol.socketio.check_payload`), with the same
depth and container limits (:data:`~trio_sio.protocol.socketio.MAX_DEPTH`,
:data:`~trio_sio.protocol.socketio.MAX_CONTAINERS`).

This module is the only one that imports ``cbor2``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import cbor2

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

__all__ = ["CborDecoder", "CborParser"]

_PACKET_TYPES: Final = {int(t): t for t in PacketType if t < PacketType.BINARY_EVENT}
_SCALARS: Final = frozenset({str, int, float, bool, type(None), bytes})
# The tags cbor2 decodes on its own; each is overridden to fail, and tag_hook refuses the rest.
_BUILTIN_TAGS: Final = (
    0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004,
    43000, 55799,
)  # fmt: skip


def _refuse_tag(*args: Any) -> Any:
    raise ValueError("CBOR tags are not accepted")


_SEMANTIC_DECODERS: Final = dict.fromkeys(_BUILTIN_TAGS, _refuse_tag)


def _data_problem(data: Any) -> str | None:
    """Say why ``data`` is not JSON-like data plus bytes, or return None.

    Iterative, and each container is visited once, so deep or cyclic data cannot hang it.
    """
    stack = [data]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind in _SCALARS:
            continue
        if id(node) in seen:
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


def _decode_frame(frame: bytes, max_containers: int = MAX_CONTAINERS) -> Packet:
    stream = io.BytesIO(frame)
    try:
        decoder = cbor2.CBORDecoder(
            stream,
            tag_hook=_refuse_tag,
            semantic_decoders=_SEMANTIC_DECODERS,
            strict_hashable_types=True,
        )
        obj = decoder.decode()
    except Exception:  # cbor2 is a C extension: any failure of it means bad input
        raise RemoteProtocolError("invalid CBOR") from None
    if stream.tell() != len(frame):
        raise RemoteProtocolError("trailing bytes after the CBOR packet")
    if type(obj) is not dict:
        raise RemoteProtocolError("a CBOR packet must be a map")
    raw_type = obj.get("type")
    ptype = _PACKET_TYPES.get(raw_type) if type(raw_type) is int else None
    if ptype is None:
        raise RemoteProtocolError(f"invalid packet type {raw_type!r}")
    namespace = obj.get("nsp", "/")
    if type(namespace) is not str or namespace[:1] != "/" or "," in namespace:
        raise RemoteProtocolError("invalid namespace")
    ack_id = obj.get("id")
    if ack_id is not None and (type(ack_id) is not int or not 0 <= ack_id <= MAX_ACK_ID):
        raise RemoteProtocolError("invalid ack id")
    data = obj.get("data")
    # (each container takes a byte at least: the frame's length bounds their number)
    problem = shape_problem(data, len(frame), max_containers)
    problem = problem or _data_problem(data) or check_payload(ptype, data)
    if problem is not None:
        raise RemoteProtocolError(f"invalid payload: {problem}")
    try:
        return Packet(ptype, namespace, data, ack_id)
    except LocalProtocolError as exc:  # pragma: no cover - checked above already
        raise RemoteProtocolError(str(exc)) from None


class CborDecoder(WholeFrameDecoder):
    """Decodes the CBOR frames of one connection: one whole packet per binary frame."""

    __slots__ = ()

    def __init__(self, max_containers: int = MAX_CONTAINERS) -> None:
        if max_containers < MAX_DEPTH:
            raise ValueError(f"max_containers must be at least {MAX_DEPTH}")
        super().__init__(partial(_decode_frame, max_containers=max_containers), "CBOR")


@dataclass(frozen=True, slots=True)
class CborParser:
    """Socket.IO parser that sends every packet as one CBOR-encoded binary frame.

    Attributes:
        max_containers: refuse a packet whose data holds more lists and maps (counted once
            cbor2 has decoded the frame, whose length bounds them); data nested deeper than
            :data:`~trio_sio.protocol.socketio.MAX_DEPTH` is refused too.
    """

    max_containers: int = MAX_CONTAINERS

    def encode(self, packet: Packet) -> list[str | bytes]:
        """Encode one packet as a single binary frame.

        The data must be wire-ready (see :func:`trio_sio.protocol.serialize.to_wire`): only
        what the decoder accepts back is sent.

        Raises:
            LocalProtocolError: the data holds something else (a ``set``, a ``bytearray``,
                a non-string map key, ...) or cannot be encoded (a reference cycle).
        """
        obj: dict[str, Any] = {"type": int(packet.type), "nsp": packet.namespace}
        if packet.data is not None:
            problem = _data_problem(packet.data)
            if problem is not None:
                raise LocalProtocolError(f"cannot encode {problem} (use serialize.to_wire)")
            obj["data"] = packet.data
        if packet.id is not None:
            obj["id"] = packet.id
        try:
            return [cbor2.dumps(obj)]
        except (cbor2.CBOREncodeError, TypeError, ValueError, RecursionError) as exc:
            raise LocalProtocolError(f"cannot encode packet data: {exc}") from None

    def decoder(self) -> CborDecoder:
        """Return a new :class:`CborDecoder`."""
        return CborDecoder(self.max_containers)
