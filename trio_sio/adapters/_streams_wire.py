"""The messages of the official ``@socket.io/redis-streams-adapter`` (0.3), sans-IO.

That adapter is a ``ClusterAdapter`` of ``socket.io-adapter`` 2.5: every message is
``{uid, nsp, type, data}`` with the types of :class:`MessageType`. Messages that must
outlive an outage, and that recovery reads back, are entries of one Redis stream
(``streamName``, ``socket.io`` by default), with the string fields ``uid``, ``nsp``,
``type`` (the number as text) and ``data`` (JSON, or base64 of msgpack when the data holds
bytes). The others (a broadcast waiting for acks, a server-side emit, a fetch of sockets)
and every response go through pub/sub as msgpack: requests on ``prefix#nsp#``, responses on
``prefix#nsp#uid#`` of the node that asked.

A session kept for recovery is ``prefix + pid`` (``sio:session:`` by default), the base64 of
the msgpack of ``{sid, pid, rooms, data}``, expiring after the recovery's duration.

Everything read from Redis is untrusted: the decoders raise :class:`ValueError` for any
other shape.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from typing import Any

from ..protocol.serialize import to_wire
from ._redis_wire import MAX_MESSAGE_BYTES, encode_json, encode_msgpack
from ._redis_wire import _unpack as unpack_msgpack
from .base import BroadcastOptions

__all__ = [
    "MAY_HOLD_BYTES",
    "MessageType",
    "decode_entry",
    "decode_pubsub",
    "decode_session",
    "encode_entry",
    "encode_pubsub",
    "encode_session",
    "has_bytes",
    "is_offset",
    "next_offset",
    "reaches",
]


class MessageType(enum.IntEnum):
    """The message types of ``socket.io-adapter``'s ``ClusterAdapter``."""

    INITIAL_HEARTBEAT = 1
    HEARTBEAT = 2
    BROADCAST = 3
    SOCKETS_JOIN = 4
    SOCKETS_LEAVE = 5
    DISCONNECT_SOCKETS = 6
    FETCH_SOCKETS = 7
    FETCH_SOCKETS_RESPONSE = 8
    SERVER_SIDE_EMIT = 9
    SERVER_SIDE_EMIT_RESPONSE = 10
    BROADCAST_CLIENT_COUNT = 11
    BROADCAST_ACK = 12
    ADAPTER_CLOSE = 13


#: The types whose data may hold bytes (written as base64 msgpack when it does).
MAY_HOLD_BYTES = frozenset(
    {
        MessageType.BROADCAST,
        MessageType.FETCH_SOCKETS_RESPONSE,
        MessageType.SERVER_SIDE_EMIT,
        MessageType.SERVER_SIDE_EMIT_RESPONSE,
        MessageType.BROADCAST_ACK,
    }
)

_OFFSET = re.compile(r"[0-9]+-[0-9]+")


def has_bytes(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes | bytearray | memoryview):
            return True
        if isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return False


def encode_entry(uid: str, nsp: str, kind: MessageType, data: Any = None) -> dict[str, str]:
    """The fields of a stream entry, as the JS adapter's ``XADD`` writes them."""
    fields = {"uid": uid, "nsp": nsp, "type": str(int(kind))}
    if data:
        if kind in MAY_HOLD_BYTES and has_bytes(data):
            wire = to_wire((data,))[0]
            fields["data"] = base64.b64encode(encode_msgpack(wire)).decode("ascii")
        else:
            fields["data"] = encode_json(data).decode("utf-8")
    return fields


def decode_entry(fields: dict[Any, Any]) -> dict[str, Any]:
    """``{uid, nsp, type, data}`` of a stream entry (bytes or text fields).

    Raises:
        ValueError: not an entry of this format.
    """
    text = {_str(key): _str(value) for key, value in fields.items()}
    uid, nsp, kind = text.get("uid"), text.get("nsp"), text.get("type")
    if uid is None or nsp is None or kind is None or not kind.isdigit() or len(kind) > 3:
        raise ValueError("an entry needs uid, nsp and a numeric type")
    message: dict[str, Any] = {"uid": uid, "nsp": nsp, "type": int(kind)}
    raw = text.get("data")
    if raw:
        if len(raw) > MAX_MESSAGE_BYTES:
            raise ValueError("message too large")
        try:
            if raw.startswith("{"):
                message["data"] = json.loads(raw)
            else:
                message["data"] = unpack_msgpack(base64.b64decode(raw, validate=True))
        except (ValueError, binascii.Error, RecursionError, OverflowError) as exc:
            raise ValueError(f"malformed data: {exc}") from None
        except Exception as exc:  # msgpack's own errors
            raise ValueError(f"malformed data: {exc}") from None
    return message


def _str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise ValueError("a field must be text")
    return value


def encode_pubsub(uid: str, nsp: str, kind: MessageType, data: Any) -> bytes:
    """A request or response sent through pub/sub (msgpack of the whole message; values
    converted as for an emit: a datetime its ISO string, NaN and ±Infinity null).

    Raises:
        TypeError: a value that cannot be sent.
    """
    wire = to_wire((data,))[0]
    return encode_msgpack({"type": int(kind), "data": wire, "uid": uid, "nsp": nsp})


def decode_pubsub(raw: bytes) -> dict[str, Any]:
    """A pub/sub message: ``{uid, nsp, type, data}``.

    Raises:
        ValueError: malformed.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ValueError("message too large")
    try:
        value = unpack_msgpack(raw)
    except Exception as exc:  # msgpack's errors, ValueError, RecursionError...
        raise ValueError(f"malformed message: {exc}") from None
    if not isinstance(value, dict) or not isinstance(value.get("type"), int):
        raise ValueError("a message must be an object with a type")
    return value


def encode_session(sid: str, pid: str, rooms: frozenset[str], data: Any) -> str:
    """A session kept for recovery, as the JS adapter stores it."""
    session = {"sid": sid, "pid": pid, "rooms": sorted(rooms), "data": data}
    return base64.b64encode(encode_msgpack(session)).decode("ascii")


def decode_session(raw: bytes | str) -> tuple[str, frozenset[str], dict[str, Any]]:
    """``(sid, rooms, data)`` of a stored session.

    Raises:
        ValueError: malformed.
    """
    try:
        value = unpack_msgpack(base64.b64decode(raw, validate=True))
    except Exception as exc:
        raise ValueError(f"malformed session: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("a session must be an object")
    sid, rooms, data = value.get("sid"), value.get("rooms"), value.get("data")
    if not isinstance(sid, str) or not isinstance(rooms, list):
        raise ValueError("a session needs sid and rooms")
    return sid, frozenset(str(room) for room in rooms), data if isinstance(data, dict) else {}


def is_offset(value: str) -> bool:
    """Whether ``value`` is a stream id (what a client presents as its offset)."""
    return len(value) < 48 and _OFFSET.fullmatch(value) is not None


def next_offset(offset: str) -> str:
    """The smallest id after ``offset`` (for an exclusive ``XRANGE`` on Redis < 6.2)."""
    timestamp, sequence = offset.split("-")
    return f"{timestamp}-{int(sequence) + 1}"


def reaches(options: BroadcastOptions, rooms: frozenset[str]) -> bool:
    """Whether a socket in ``rooms`` was among the recipients of a broadcast."""
    included = not options.rooms or not options.rooms.isdisjoint(rooms)
    return included and options.except_rooms.isdisjoint(rooms)
