"""The messages of the official ``@socket.io/redis-adapter`` (8.x, classic pub/sub), sans-IO.

Nodes of one cluster share three kinds of channel per namespace ``nsp`` (``key`` is
``"socket.io"`` by default):

- ``key#nsp#`` and ``key#nsp#room#``: broadcasts, msgpack ``[uid, packet, opts]`` (the room
  form when exactly one room is targeted, so that nodes without that room drop the message
  before decoding it);
- ``key-request#nsp#``: requests, JSON objects ``{uid, requestId?, type, ...}`` (msgpack for a
  broadcast waiting for acks);
- ``key-response#nsp#`` (and ``key-response#nsp#uid#``): responses, JSON (msgpack for the acks
  of a broadcast).

Everything from the channels is untrusted: :func:`decode_broadcast` and :func:`decode_message`
validate shapes and raise :class:`ValueError` for anything else.
"""

from __future__ import annotations

import enum
import json
import secrets
from dataclasses import dataclass
from typing import Any

try:
    import msgpack
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the Redis adapter needs: pip install 'trio-sio[redis]'") from exc

from ..protocol.serialize import to_wire
from ..protocol.socketio import Packet, PacketType
from .base import BroadcastOptions

__all__ = [
    "Channels",
    "RequestType",
    "decode_broadcast",
    "decode_message",
    "encode_broadcast",
    "encode_json",
    "encode_msgpack",
    "new_id",
    "options_from_wire",
    "options_to_wire",
    "packet_from_wire",
    "packet_to_wire",
]

#: The largest message read from a channel (anything longer is dropped unread).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class RequestType(enum.IntEnum):
    """Request (and response) types, as numbered by the JS adapter."""

    SOCKETS = 0
    ALL_ROOMS = 1
    REMOTE_JOIN = 2
    REMOTE_LEAVE = 3
    REMOTE_DISCONNECT = 4
    REMOTE_FETCH = 5
    SERVER_SIDE_EMIT = 6
    BROADCAST = 7
    BROADCAST_CLIENT_COUNT = 8
    BROADCAST_ACK = 9


def new_id() -> str:
    """A node id or request id: 6 URL-safe characters, as ``uid2(6)`` makes them."""
    return secrets.token_urlsafe(5)[:6]


@dataclass(frozen=True, slots=True)
class Channels:
    """The channel names of one namespace."""

    broadcast: str
    request: str
    response: str
    specific_response: str

    @classmethod
    def of(cls, key: str, namespace: str, uid: str) -> Channels:
        response = f"{key}-response#{namespace}#"
        return cls(
            f"{key}#{namespace}#", f"{key}-request#{namespace}#", response, response + uid + "#"
        )

    def for_rooms(self, rooms: frozenset[str]) -> str:
        """Where a broadcast to ``rooms`` is published."""
        if len(rooms) == 1:
            return f"{self.broadcast}{next(iter(rooms))}#"
        return self.broadcast

    def room_of(self, channel: str) -> str | None:
        """The room a broadcast channel names ('' for none), or None if it is not ours."""
        if not channel.startswith(self.broadcast):
            return None
        return channel[len(self.broadcast) : -1]


# -- values on the wire -----------------------------------------------------------------------


def encode_msgpack(value: Any) -> bytes:
    """msgpack as notepack.io writes it: bytes as ``bin``, text as ``str``."""
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def encode_json(value: Any) -> bytes:
    """Compact JSON as the JS adapter's ``JSON.stringify`` writes it, so that a JS node can
    parse it: values converted as for an emit (a datetime its ISO string, NaN and ±Infinity
    null, never the ``NaN`` JS cannot parse), bytes as a Node Buffer's JSON.

    Raises:
        TypeError: a value that cannot be sent.
    """
    wire = to_wire((value,))[0]
    return json.dumps(wire, separators=(",", ":"), allow_nan=False, default=_json_default).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        # JSON.stringify of a Node Buffer
        return {"type": "Buffer", "data": list(bytes(value))}
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} cannot be sent to other nodes")


def decode_message(raw: bytes) -> dict[str, Any]:
    """A request or response: JSON when it starts with ``{``, msgpack otherwise.

    Raises:
        ValueError: not a well-formed object.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ValueError("message too large")
    try:
        value = json.loads(raw) if raw[:1] == b"{" else _unpack(raw)
    except (ValueError, OverflowError, msgpack.UnpackException, RecursionError) as exc:
        raise ValueError(f"malformed message: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("a request must be an object")
    return value


def _unpack(raw: bytes) -> Any:
    # timestamp=3: a JS Date (notepack writes the msgpack timestamp) as an aware datetime
    return msgpack.unpackb(raw, raw=False, strict_map_key=False, timestamp=3)


def packet_to_wire(packet: Packet) -> dict[str, Any]:
    """A Socket.IO EVENT as the JS adapter sends it (not encoded: binary stays in place)."""
    wire: dict[str, Any] = {
        "type": int(PacketType.EVENT),
        "data": packet.data,
        "nsp": packet.namespace,
    }
    return wire


def packet_from_wire(value: Any, namespace: str) -> Packet:
    """The EVENT packet of a broadcast from another node.

    Raises:
        ValueError: not an event of ``namespace``.
    """
    if not isinstance(value, dict):
        raise ValueError("a packet must be an object")
    nsp = value.get("nsp", "/")
    if nsp != namespace:
        raise ValueError(f"a packet of namespace {nsp!r}")
    if value.get("type") not in (PacketType.EVENT, PacketType.BINARY_EVENT):
        raise ValueError(f"unexpected packet type {value.get('type')!r}")
    data = value.get("data")
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise ValueError("an event needs [name, ...args]")
    try:
        # what msgpack carries but JSON cannot, made what a JS node's JSON.stringify makes of
        # it: a Date its ISO string, NaN and ±Infinity null
        data = to_wire(data)
        return Packet(PacketType.EVENT, namespace, data)
    except Exception as exc:  # the packet's own validation
        raise ValueError(str(exc)) from None


def options_to_wire(options: BroadcastOptions) -> dict[str, Any]:
    """``{rooms, except, flags}`` as the JS adapter sends them (a timeout in milliseconds)."""
    flags: dict[str, Any] = {}
    if options.volatile:
        flags["volatile"] = True
    if options.local:
        flags["local"] = True
    if options.timeout is not None:
        flags["timeout"] = round(options.timeout * 1000)
    if not options.compress:
        flags["compress"] = False
    return {"rooms": sorted(options.rooms), "except": sorted(options.except_rooms), "flags": flags}


def options_from_wire(value: Any) -> BroadcastOptions:
    """The broadcast options of a message from another node.

    Raises:
        ValueError: malformed.
    """
    if value is None:
        return BroadcastOptions()
    if not isinstance(value, dict):
        raise ValueError("options must be an object")
    rooms = _rooms(value.get("rooms"))
    except_rooms = _rooms(value.get("except"))
    flags = value.get("flags") or {}
    if not isinstance(flags, dict):
        raise ValueError("flags must be an object")
    timeout = flags.get("timeout")
    if timeout is not None and (not isinstance(timeout, int | float) or timeout < 0):
        raise ValueError("bad timeout")
    return BroadcastOptions(
        rooms=rooms,
        except_rooms=except_rooms,
        volatile=bool(flags.get("volatile")),
        timeout=None if timeout is None else timeout / 1000,
        compress=flags.get("compress") is not False,
    )


def _rooms(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise ValueError("rooms must be a list")
    # JS rooms may be numbers; they match our str rooms by their text
    return frozenset(str(room) if isinstance(room, int | float) else _str(room) for room in value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a room must be a string")
    return value


# -- broadcasts -------------------------------------------------------------------------------


def encode_broadcast(uid: str, packet: Packet, options: BroadcastOptions) -> bytes:
    """The msgpack message of a broadcast."""
    return encode_msgpack([uid, packet_to_wire(packet), options_to_wire(options)])


def decode_broadcast(raw: bytes, namespace: str) -> tuple[str, Packet, BroadcastOptions]:
    """``(uid, packet, options)`` of a broadcast message.

    Raises:
        ValueError: malformed, or not for ``namespace``.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ValueError("message too large")
    try:
        value = _unpack(raw)
    except (ValueError, OverflowError, msgpack.UnpackException, RecursionError) as exc:
        raise ValueError(f"malformed broadcast: {exc}") from None
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError("a broadcast is [uid, packet, opts]")
    uid, packet, opts = value
    if not isinstance(uid, str):
        raise ValueError("a uid must be a string")
    return uid, packet_from_wire(packet, namespace), options_from_wire(opts)
