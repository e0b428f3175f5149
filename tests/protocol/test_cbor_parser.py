"""The CBOR parser: one binary frame per packet, native bytes, same payload rules."""

from __future__ import annotations

import math
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_sio.protocol.cbor_parser import CborDecoder, CborParser
from trio_sio.protocol.errors import LocalProtocolError, RemoteProtocolError
from trio_sio.protocol.socketio import (
    MAX_ACK_ID,
    NEED_DATA,
    RESERVED_EVENTS,
    Packet,
    PacketDecoder,
    PacketType,
    Parser,
    check_payload,
)

CONNECT = PacketType.CONNECT
DISCONNECT = PacketType.DISCONNECT
EVENT = PacketType.EVENT
ACK = PacketType.ACK
CONNECT_ERROR = PacketType.CONNECT_ERROR

PARSER = CborParser()


def decode(frame: str | bytes | bytearray) -> Packet:
    decoder = PARSER.decoder()
    decoder.feed(frame)
    packet = decoder.next_packet()
    assert isinstance(packet, Packet)
    assert decoder.next_packet() is NEED_DATA
    return packet


def test_exact_bytes() -> None:
    # {"type": 2, "nsp": "/", "data": ["hello"]}
    assert PARSER.encode(Packet(EVENT, data=["hello"])) == [
        bytes.fromhex("a3647479706502636e7370612f6464617461816568656c6c6f")
    ]
    # {"type": 3, "nsp": "/a", "data": [h'01'], "id": 12}
    assert PARSER.encode(Packet(ACK, "/a", [b"\x01"], 12)) == [
        bytes.fromhex("a4647479706503636e7370622f6164646174618141016269640c")
    ]
    # {"type": 1, "nsp": "/"}: no data, no id
    assert PARSER.encode(Packet(DISCONNECT)) == [bytes.fromhex("a2647479706501636e7370612f")]


PACKETS = [
    Packet(CONNECT),
    Packet(CONNECT, "/admin", {"token": "123"}),
    Packet(DISCONNECT, "/admin"),
    Packet(EVENT, data=["hello", 1, "2", {"3": "4", "5": b"\x06"}]),
    Packet(EVENT, "/admin", [7, b"", [b"\x00" * 100]], 12),
    Packet(ACK, data=[], id=0),
    Packet(ACK, data=[{"nested": [b"\xff", None, True, 1.5]}], id=MAX_ACK_ID),
    Packet(CONNECT_ERROR, data={"message": "Not authorized"}),
    Packet(CONNECT_ERROR, "/x", "refused"),
]


@pytest.mark.parametrize("packet", PACKETS)
def test_round_trip(packet: Packet) -> None:
    frames = PARSER.encode(packet)
    assert len(frames) == 1
    assert type(frames[0]) is bytes
    assert decode(frames[0]) == packet


def test_decodes_what_a_msgpack_style_peer_sends() -> None:
    # Key order does not matter, "nsp" may be left out, null data means no data,
    # unknown keys are ignored.
    assert decode(cbor2.dumps({"data": ["x"], "type": 2})) == Packet(EVENT, data=["x"])
    assert decode(cbor2.dumps({"type": 0, "nsp": "/", "data": None})) == Packet(CONNECT)
    assert decode(cbor2.dumps({"type": 1, "nsp": "/a", "extra": 1})) == Packet(DISCONNECT, "/a")
    assert decode(bytearray(cbor2.dumps({"type": 3, "data": [], "id": 1}))) == Packet(
        ACK, data=[], id=1
    )


def test_nan_and_infinity_are_carried() -> None:
    packet = decode(PARSER.encode(Packet(EVENT, data=["x", math.inf, math.nan]))[0])
    assert packet.data[1] == math.inf
    assert math.isnan(packet.data[2])


def _tagged(tag: int, value: Any) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(tag, value))


def _packet_with(data: bytes) -> bytes:
    """A CBOR EVENT packet whose data is ["x", <raw CBOR item>]."""
    return bytes.fromhex("a3647479706502636e7370612f6464617461826178") + data


BAD_FRAMES: list[Any] = [
    pytest.param('{"type":2}', id="text-frame"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\xff", id="invalid-cbor"),
    pytest.param(b"\xa1", id="truncated"),
    pytest.param(cbor2.dumps({"type": 2, "data": ["x"]}) + b"\x00", id="trailing-bytes"),
    pytest.param(cbor2.dumps([2, "/", ["x"]]), id="not-a-map"),
    pytest.param(cbor2.dumps({"nsp": "/", "data": ["x"]}), id="no-type"),
    pytest.param(cbor2.dumps({"type": 5, "data": ["x"]}), id="type-binary-event"),
    pytest.param(cbor2.dumps({"type": 6, "data": []}), id="type-binary-ack"),
    pytest.param(cbor2.dumps({"type": 7}), id="type-7"),
    pytest.param(cbor2.dumps({"type": -1}), id="type-negative"),
    pytest.param(cbor2.dumps({"type": True}), id="type-bool"),
    pytest.param(cbor2.dumps({"type": 2.0, "data": ["x"]}), id="type-float"),
    pytest.param(cbor2.dumps({"type": "2", "data": ["x"]}), id="type-string"),
    pytest.param(cbor2.dumps({"type": 0, "nsp": 1}), id="nsp-int"),
    pytest.param(cbor2.dumps({"type": 0, "nsp": "admin"}), id="nsp-no-slash"),
    pytest.param(cbor2.dumps({"type": 0, "nsp": "/a,b"}), id="nsp-comma"),
    pytest.param(cbor2.dumps({"type": 0, "nsp": b"/"}), id="nsp-bytes"),
    pytest.param(cbor2.dumps({"type": 3, "data": [], "id": -1}), id="id-negative"),
    pytest.param(cbor2.dumps({"type": 3, "data": [], "id": "1"}), id="id-string"),
    pytest.param(cbor2.dumps({"type": 3, "data": [], "id": True}), id="id-bool"),
    pytest.param(cbor2.dumps({"type": 3, "data": [], "id": 1.0}), id="id-float"),
    pytest.param(cbor2.dumps({"type": 3, "data": [], "id": MAX_ACK_ID + 1}), id="id-too-big"),
    pytest.param(cbor2.dumps({"type": 0, "data": []}), id="connect-array"),
    pytest.param(cbor2.dumps({"type": 1, "data": {}}), id="disconnect-data"),
    pytest.param(cbor2.dumps({"type": 2}), id="event-absent"),
    pytest.param(cbor2.dumps({"type": 2, "data": []}), id="event-empty"),
    pytest.param(cbor2.dumps({"type": 2, "data": [None]}), id="event-name-null"),
    pytest.param(cbor2.dumps({"type": 2, "data": [{"a": 1}]}), id="event-name-map"),
    pytest.param(cbor2.dumps({"type": 2, "data": [b"x"]}), id="event-name-bytes"),
    *[
        pytest.param(cbor2.dumps({"type": 2, "data": [name]}), id=f"event-reserved-{name}")
        for name in sorted(RESERVED_EVENTS)
    ],
    pytest.param(cbor2.dumps({"type": 3, "data": {}}), id="ack-map"),
    pytest.param(cbor2.dumps({"type": 4}), id="connect-error-absent"),
    pytest.param(cbor2.dumps({"type": 4, "data": 1}), id="connect-error-int"),
    pytest.param(_packet_with(cbor2.dumps({1: 2})), id="int-map-key"),
    pytest.param(_packet_with(cbor2.dumps({b"k": 2})), id="bytes-map-key"),
    pytest.param(_packet_with(bytes.fromhex("a1810102")), id="array-map-key"),
    pytest.param(_packet_with(bytes.fromhex("f7")), id="undefined"),
    pytest.param(_packet_with(bytes.fromhex("f0")), id="simple-value"),
    pytest.param(_packet_with(_tagged(0, "2024-01-01T00:00:00Z")), id="tag-0-datetime"),
    pytest.param(_packet_with(_tagged(1, 0)), id="tag-1-epoch"),
    pytest.param(_packet_with(_tagged(2, b"\x01" * 20)), id="tag-2-bignum"),
    pytest.param(_packet_with(_tagged(4, [-2, 1234])), id="tag-4-decimal"),
    pytest.param(_packet_with(_tagged(5, [10**9, 1])), id="tag-5-bigfloat"),
    pytest.param(_packet_with(_tagged(30, [1, 3])), id="tag-30-rational"),
    pytest.param(_packet_with(_tagged(35, "(a+)+$")), id="tag-35-regex"),
    pytest.param(_packet_with(_tagged(37, b"\x00" * 16)), id="tag-37-uuid"),
    pytest.param(_packet_with(_tagged(258, [1, 2])), id="tag-258-set"),
    pytest.param(_packet_with(_tagged(55799, 1)), id="tag-55799-self-describe"),
    pytest.param(_packet_with(_tagged(1234, 1)), id="tag-unknown"),
    # A shareable array that contains a reference to itself.
    pytest.param(_packet_with(bytes.fromhex("d81c81d81d00")), id="tag-28-29-cycle"),
    pytest.param(_packet_with(b"\x81" * 10_000 + b"\x00"), id="deep-nesting"),
]


@pytest.mark.parametrize("frame", BAD_FRAMES)
def test_bad_frame(frame: str | bytes) -> None:
    decoder = PARSER.decoder()
    with pytest.raises(RemoteProtocolError):
        decoder.feed(frame)
    assert decoder.next_packet() is NEED_DATA


def test_errors_are_final() -> None:
    decoder = PARSER.decoder()
    with pytest.raises(RemoteProtocolError):
        decoder.feed(b"\xff")
    with pytest.raises(RemoteProtocolError, match="already failed"):
        decoder.feed(PARSER.encode(Packet(CONNECT))[0])


def test_non_frame_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        PARSER.decoder().feed(1)  # type: ignore[arg-type]


def test_queue() -> None:
    decoder = PARSER.decoder()
    for packet in PACKETS:
        decoder.feed(PARSER.encode(packet)[0])
    assert [decoder.next_packet() for _ in PACKETS] == PACKETS
    assert decoder.next_packet() is NEED_DATA


@pytest.mark.parametrize(
    "data",
    [
        ["x", {1, 2}],
        ["x", bytearray(b"a")],
        ["x", {1: "int key"}],
        ["x", (1, 2)],
        ["x", object()],
    ],
)
def test_encode_refuses_what_decode_would_refuse(data: list[Any]) -> None:
    with pytest.raises(LocalProtocolError):
        PARSER.encode(Packet(EVENT, data=data))


def test_encode_refuses_cycles() -> None:
    cyclic: list[Any] = ["x"]
    cyclic.append(cyclic)
    with pytest.raises(LocalProtocolError):
        PARSER.encode(Packet(EVENT, data=cyclic))


def test_shared_subtrees_are_fine() -> None:
    shared = {"a": [1]}
    packet = Packet(EVENT, data=["x", shared, shared])
    assert decode(PARSER.encode(packet)[0]) == packet


def test_parser_protocol() -> None:
    parser: Parser = CborParser()
    decoder: PacketDecoder = parser.decoder()
    assert isinstance(decoder, CborDecoder)


# --- properties ----------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64) + 1, max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
names = st.text(max_size=10).filter(lambda n: n not in RESERVED_EVENTS) | st.integers(0, 2**53)
namespaces = st.just("/") | st.text(max_size=8).map(lambda s: "/" + s.replace(",", ""))
ack_ids = st.none() | st.integers(min_value=0, max_value=MAX_ACK_ID)


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    ptype = draw(st.sampled_from([CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR]))
    if ptype is EVENT:
        data: Any = [draw(names), *draw(st.lists(values, max_size=4))]
    elif ptype is ACK:
        data = draw(st.lists(values, max_size=4))
    elif ptype is CONNECT:
        data = draw(st.none() | st.dictionaries(st.text(max_size=8), values, max_size=4))
    elif ptype is CONNECT_ERROR:
        data = draw(st.text(max_size=10) | st.dictionaries(st.text(max_size=8), values, max_size=4))
    else:
        data = None
    return Packet(ptype, draw(namespaces), data, draw(ack_ids))


@given(packets())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_property(packet: Packet) -> None:
    [frame] = PARSER.encode(packet)
    assert decode(frame) == packet


def _mutations(packet: Packet) -> st.SearchStrategy[bytes]:
    """Valid frames with a few bytes cut out and a few random bytes put in."""
    [frame] = PARSER.encode(packet)
    assert isinstance(frame, bytes)
    edits = st.tuples(st.integers(0, len(frame)), st.integers(0, 3), st.binary(max_size=3))
    return edits.map(lambda e: frame[: e[0]] + e[2] + frame[e[0] + e[1] :])


@given(st.binary(max_size=60) | packets().flatmap(_mutations))
@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_frames_raise_only_remote_protocol_error(frame: bytes) -> None:
    decoder = PARSER.decoder()
    try:
        decoder.feed(frame)
    except RemoteProtocolError:
        return
    packet = decoder.next_packet()
    assert isinstance(packet, Packet)
    assert check_payload(packet.type, packet.data) is None
