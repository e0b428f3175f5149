"""The msgpack parser: socket.io-msgpack-parser's wire format, notepack.io's special values,
the JS parser's checks plus ours. The official JS peers are in tests/interop."""

from __future__ import annotations

import datetime
import importlib.util
import math
import subprocess
import sys
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_sio.protocol.errors import LocalProtocolError, RemoteProtocolError
from trio_sio.protocol.msgpack_parser import MsgpackDecoder, MsgpackParser, _iso_date
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

PARSER = MsgpackParser()

# notepack.io's special values, as raw msgpack.
UNDEFINED = bytes.fromhex("d40000")  # fixext 1, type 0


def js_date(ms: int) -> bytes:
    """A Date as notepack writes it: fixext 8, type 0, signed 64-bit milliseconds."""
    return b"\xd7\x00" + ms.to_bytes(8, "big", signed=True)


def array_buffer(data: bytes) -> bytes:
    """An ArrayBuffer (or typed array) as notepack writes it in Node: ext 8, type 0."""
    return bytes([0xC7, len(data), 0]) + data


def decode(frame: str | bytes | bytearray) -> Packet:
    decoder = PARSER.decoder()
    decoder.feed(frame)
    packet = decoder.next_packet()
    assert isinstance(packet, Packet)
    assert decoder.next_packet() is NEED_DATA
    return packet


def raw_event(*items: bytes, head: bytes = b"") -> bytes:
    """{"type": 2, "nsp": "/", "data": [<raw items>]} plus ``head`` (raw key/value pairs)."""
    pairs = 2 + (1 if items else 0) + head.count(b"\xa2id")
    out = bytes([0x80 | pairs]) + msgpack.packb("type") + b"\x02" + msgpack.packb("nsp")
    out += msgpack.packb("/") + head
    if items:
        out += msgpack.packb("data") + bytes([0x90 | len(items)]) + b"".join(items)
    return out


def _map(**fields: Any) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


def test_exact_bytes() -> None:
    # {"type": 2, "data": ["hello"], "nsp": "/"}, the key order of a JS server's emit
    assert PARSER.encode(Packet(EVENT, data=["hello"])) == [
        bytes.fromhex("83a47479706502a46461746191a568656c6c6fa36e7370a12f")
    ]
    # {"type": 3, "data": [bin 01], "nsp": "/a", "id": 12}
    assert PARSER.encode(Packet(ACK, "/a", [b"\x01"], 12)) == [
        bytes.fromhex("84a47479706503a46461746191c40101a36e7370a22f61a269640c")
    ]
    # {"type": 1, "nsp": "/"}: no data, no id
    assert PARSER.encode(Packet(DISCONNECT)) == [bytes.fromhex("82a47479706501a36e7370a12f")]


PACKETS = [
    Packet(CONNECT),
    Packet(CONNECT, "/admin", {"token": "123"}),
    Packet(DISCONNECT, "/admin"),
    Packet(EVENT, data=["hello", 1, "2", {"3": "4", "5": b"\x06"}]),
    Packet(EVENT, "/admin", [7, b"", [b"\x00" * 70_000]], 12),
    Packet(EVENT, data=[1.5, 2**64 - 1, -(2**63), "ünï ☃ 😀"]),
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


@pytest.mark.parametrize(
    ("frame", "packet"),
    [
        # Key order does not matter.
        (_map(data=["x"], nsp="/", type=2), Packet(EVENT, data=["x"])),
        # Unknown keys (socket.io-client's "options") are ignored.
        (_map(type=2, data=["x"], options={"compress": True}, nsp="/"), Packet(EVENT, data=["x"])),
        # Integral floats are integers (JS numbers).
        (_map(type=3.0, data=[], id=7.0, nsp="/"), Packet(ACK, data=[], id=7)),
        # nil data counts as absent (python-socketio sends it).
        (_map(type=0, data=None, nsp="/"), Packet(CONNECT)),
        (bytearray(_map(type=1, nsp="/a")), Packet(DISCONNECT, "/a")),
        # float 32, str 8
        (
            msgpack.packb({"type": 2, "data": ["x" * 40, 0.5], "nsp": "/"}, use_single_float=True),
            Packet(EVENT, data=["x" * 40, 0.5]),
        ),
    ],
)
def test_decodes_what_other_encoders_send(frame: bytes, packet: Packet) -> None:
    assert decode(frame) == packet


def test_undefined() -> None:
    # A Node server's CONNECT answer: {sid, pid: undefined}; the key is dropped.
    frame = bytes.fromhex("83a474797065 00 a464617461 82a3736964a3616263a3706964".replace(" ", ""))
    frame += UNDEFINED + msgpack.packb("nsp") + msgpack.packb("/")
    assert decode(frame) == Packet(CONNECT, data={"sid": "abc"})
    # A Node client's CONNECT without auth: data undefined, i.e. absent.
    frame = b"\x83" + msgpack.packb("type") + b"\x00" + msgpack.packb("data") + UNDEFINED
    frame += msgpack.packb("nsp") + msgpack.packb("/")
    assert decode(frame) == Packet(CONNECT)
    # undefined in a list is None; an undefined id is no id.
    assert decode(raw_event(b"\xa1x", UNDEFINED)).data == ["x", None]
    assert decode(raw_event(b"\xa1x", head=b"\xa2id" + UNDEFINED)).id is None
    # The data byte of a fixext 1 undefined does not matter (notepack skips it).
    assert decode(raw_event(b"\xa1x", b"\xd4\x00\x07")).data == ["x", None]


def _stamp(seconds: int, nanoseconds: int) -> bytes:
    return msgpack.packb(msgpack.Timestamp(seconds, nanoseconds))


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        # Dates: toISOString(), or None (an invalid Date: JSON.stringify writes null).
        pytest.param(js_date(0), "1970-01-01T00:00:00.000Z", id="date-epoch"),
        pytest.param(js_date(1_715_000_000_123), "2024-05-06T12:53:20.123Z", id="date"),
        pytest.param(js_date(-1), "1969-12-31T23:59:59.999Z", id="date-negative"),
        pytest.param(js_date(8_640_000_000_000_000), "+275760-09-13T00:00:00.000Z", id="max"),
        pytest.param(js_date(-8_640_000_000_000_000), "-271821-04-20T00:00:00.000Z", id="min"),
        pytest.param(js_date(8_640_000_000_000_001), None, id="date-invalid"),
        pytest.param(b"\x81\xa1d" + js_date(0), {"d": "1970-01-01T00:00:00.000Z"}, id="in-map"),
        # The msgpack timestamp extension (type -1): 32, 64 (ms truncated) and 96 bits.
        pytest.param(_stamp(0, 0), "1970-01-01T00:00:00.000Z", id="timestamp-32"),
        pytest.param(_stamp(1_715_000_000, 123_999_999), "2024-05-06T12:53:20.123Z", id="ts-64"),
        pytest.param(_stamp(-1, 999_000_000), "1969-12-31T23:59:59.999Z", id="timestamp-96"),
        pytest.param(_stamp(2**50, 0), None, id="timestamp-beyond-a-js-date"),
        # ArrayBuffers and typed arrays (ext 0 in any form but fixext 1 and 8): bytes.
        pytest.param(array_buffer(b"\x09"), b"\x09", id="ext8-1-byte-is-not-undefined"),
        pytest.param(array_buffer(bytes(8)), bytes(8), id="ext8-8-bytes-is-not-a-date"),
        pytest.param(array_buffer(b""), b"", id="ext8-empty"),
        pytest.param(array_buffer(b"\x01\x02\x03"), b"\x01\x02\x03", id="ext8"),
        pytest.param(b"\xc8\x00\x01\x00\x05", b"\x05", id="ext16"),
        pytest.param(b"\xc9\x00\x00\x00\x01\x00\x05", b"\x05", id="ext32"),
        pytest.param(b"\xd5\x00\x01\x02", b"\x01\x02", id="fixext2"),
    ],
)
def test_notepack_values(raw: bytes, value: Any) -> None:
    assert decode(raw_event(b"\xa1x", raw)).data == ["x", value]


def test_ambiguous_extensions_in_keys_order_and_depth() -> None:
    # Each ext 0 of 1 or 8 bytes is told apart by its own form, in stream order, at any depth.
    inner = b"\x82\xa1a" + array_buffer(b"\x01") + b"\xa1b" + UNDEFINED
    deep = b"\x91" * 50 + array_buffer(bytes(8))
    packet = decode(raw_event(b"\xa1x", inner, js_date(0), deep, array_buffer(b"\x02")))
    nested: Any = bytes(8)
    for _ in range(50):
        nested = [nested]
    assert packet.data == ["x", {"a": b"\x01"}, "1970-01-01T00:00:00.000Z", nested, b"\x02"]


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (-62_167_219_200_000, "0000-01-01T00:00:00.000Z"),
        (-62_167_219_200_001, "-000001-12-31T23:59:59.999Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        (8_640_000_000_000_000, "+275760-09-13T00:00:00.000Z"),
        (8_640_000_000_000_001, None),
        (-8_640_000_000_000_001, None),
    ],
)
def test_iso_date(ms: int, text: str | None) -> None:
    assert _iso_date(ms) == text


@given(st.datetimes(timezones=st.just(datetime.UTC)))
def test_iso_date_agrees_with_datetime(when: datetime.datetime) -> None:
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    ms = (when - epoch) // datetime.timedelta(milliseconds=1)
    assert _iso_date(ms) == (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:"
        f"{when.second:02d}.{when.microsecond // 1000:03d}Z"
    )


BAD_FRAMES: list[Any] = [
    pytest.param('2["x"]', id="text-frame"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\xc1", id="never-used-byte"),
    pytest.param(b"\x83\xa4type\x02", id="truncated"),
    pytest.param(_map(type=2, data=["x"], nsp="/") + b"\x00", id="trailing-bytes"),
    pytest.param(msgpack.packb([2, "/", ["x"]]), id="not-a-map"),
    pytest.param(msgpack.packb(None), id="nil"),
    pytest.param(_map(nsp="/", data=["x"]), id="no-type"),
    pytest.param(_map(type=5, data=["x"], nsp="/"), id="type-binary-event"),
    pytest.param(_map(type=6, data=[], nsp="/"), id="type-binary-ack"),
    pytest.param(_map(type=7, nsp="/"), id="type-7"),
    pytest.param(_map(type=-1, nsp="/"), id="type-negative"),
    pytest.param(_map(type=True, nsp="/"), id="type-bool"),
    pytest.param(_map(type=2.5, data=["x"], nsp="/"), id="type-fraction"),
    pytest.param(_map(type="2", data=["x"], nsp="/"), id="type-string"),
    pytest.param(_map(type=None, nsp="/"), id="type-nil"),
    pytest.param(_map(type=0), id="nsp-absent"),
    pytest.param(_map(type=0, nsp=None), id="nsp-nil"),
    pytest.param(_map(type=0, nsp=1), id="nsp-int"),
    pytest.param(_map(type=0, nsp=""), id="nsp-empty"),
    pytest.param(_map(type=0, nsp="admin"), id="nsp-no-slash"),
    pytest.param(_map(type=0, nsp="/a,b"), id="nsp-comma"),
    pytest.param(_map(type=0, nsp=b"/"), id="nsp-bytes"),
    pytest.param(_map(type=3, data=[], nsp="/", id=-1), id="id-negative"),
    pytest.param(_map(type=3, data=[], nsp="/", id="1"), id="id-string"),
    pytest.param(_map(type=3, data=[], nsp="/", id=True), id="id-bool"),
    pytest.param(_map(type=3, data=[], nsp="/", id=1.5), id="id-fraction"),
    pytest.param(_map(type=3, data=[], nsp="/", id=math.inf), id="id-infinity"),
    pytest.param(_map(type=3, data=[], nsp="/", id=math.nan), id="id-nan"),
    pytest.param(_map(type=3, data=[], nsp="/", id=None), id="id-nil"),
    pytest.param(_map(type=3, data=[], nsp="/", id=MAX_ACK_ID + 1), id="id-too-big"),
    pytest.param(raw_event(b"\xa1x", head=b"\xa2id" + js_date(1)), id="id-date"),
    pytest.param(_map(type=0, data=[], nsp="/"), id="connect-array"),
    pytest.param(_map(type=1, data={}, nsp="/"), id="disconnect-data"),
    pytest.param(_map(type=2, nsp="/"), id="event-absent"),
    pytest.param(_map(type=2, data=[], nsp="/"), id="event-empty"),
    pytest.param(_map(type=2, data=[None], nsp="/"), id="event-name-nil"),
    pytest.param(raw_event(UNDEFINED), id="event-name-undefined"),
    pytest.param(_map(type=2, data=[{"a": 1}], nsp="/"), id="event-name-map"),
    pytest.param(_map(type=2, data=[b"x"], nsp="/"), id="event-name-bytes"),
    *[
        pytest.param(_map(type=2, data=[name], nsp="/"), id=f"event-reserved-{name}")
        for name in sorted(RESERVED_EVENTS)
    ],
    pytest.param(_map(type=3, data={}, nsp="/"), id="ack-map"),
    pytest.param(_map(type=4, nsp="/"), id="connect-error-absent"),
    pytest.param(_map(type=4, data=1, nsp="/"), id="connect-error-int"),
    pytest.param(b"\x83\xa4type\x04\xa3nsp\xa1/\xa4data" + js_date(0), id="connect-error-date"),
    pytest.param(b"\x83\xa4type\x03\xa3nsp\xa1/\xa4data" + array_buffer(b"\x01"), id="ack-bin"),
    pytest.param(raw_event(b"\xa1x", b"\x81\x01\x02"), id="int-map-key"),
    pytest.param(raw_event(b"\xa1x", b"\x81\xc4\x01k\x02"), id="bin-map-key"),
    pytest.param(raw_event(b"\xa1x", b"\x81\x91\x01\x02"), id="array-map-key"),
    pytest.param(raw_event(b"\xa1x", b"\x81" + UNDEFINED + b"\x02"), id="undefined-map-key"),
    pytest.param(raw_event(b"\xa1x", b"\xd4\x01\x00"), id="ext-type-1"),
    pytest.param(raw_event(b"\xa1x", b"\xc7\x03\x7f\x01\x02\x03"), id="ext-type-127"),
    pytest.param(raw_event(b"\xa1x", b"\xd5\xff\x00\x00"), id="timestamp-bad-length"),
    pytest.param(raw_event(b"\xa1x", b"\xa2\xff\xfe"), id="invalid-utf8"),
    pytest.param(raw_event(b"\xa1x", b"\xdd\xff\xff\xff\xff"), id="huge-array-header"),
    pytest.param(raw_event(b"\xa1x", b"\xdb\xff\xff\xff\xff"), id="huge-str-header"),
    pytest.param(raw_event(b"\xa1x", b"\x91" * 100_000 + b"\xc0"), id="deep-nesting"),
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
        decoder.feed(b"\xc1")
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
        ["x", memoryview(b"a")],
        ["x", {1: "int key"}],
        ["x", (1, 2)],
        ["x", object()],
        ["x", datetime.datetime(2024, 1, 1)],
        ["x", 2**64],
        ["x", -(2**63) - 1],
        ["x", "\ud800"],
    ],
)
def test_encode_refuses_what_decode_would_refuse(data: list[Any]) -> None:
    with pytest.raises(LocalProtocolError):
        PARSER.encode(Packet(EVENT, data=data))


def test_encode_refuses_cycles_and_excessive_depth() -> None:
    cyclic: list[Any] = ["x"]
    cyclic.append(cyclic)
    with pytest.raises(LocalProtocolError):
        PARSER.encode(Packet(EVENT, data=cyclic))
    deep: list[Any] = []
    for _ in range(2000):
        deep = [deep]
    with pytest.raises(LocalProtocolError):
        PARSER.encode(Packet(EVENT, data=["x", deep]))


def test_shared_subtrees_are_fine() -> None:
    shared = {"a": [1]}
    packet = Packet(EVENT, data=["x", shared, shared])
    assert decode(PARSER.encode(packet)[0]) == packet


def test_parser_protocol() -> None:
    parser: Parser = MsgpackParser()
    decoder: PacketDecoder = parser.decoder()
    assert isinstance(decoder, MsgpackDecoder)


def test_python_socketio_msgpack_packets() -> None:
    """python-socketio's msgpack parser (the msgpack package too) reads what we write, and
    we read what it writes, nil data included."""
    if importlib.util.find_spec("socketio") is None:
        pytest.skip("python-socketio is not installed")
    from socketio.msgpack_packet import MsgPackPacket

    data = ["hi", {"b": b"\x01"}]
    theirs = MsgPackPacket(encoded_packet=PARSER.encode(Packet(EVENT, "/chat", data, 5))[0])
    assert (theirs.packet_type, theirs.namespace, theirs.data, theirs.id) == (2, "/chat", data, 5)
    assert decode(MsgPackPacket(2, data, "/chat", 9).encode()) == Packet(EVENT, "/chat", data, 9)
    assert decode(MsgPackPacket(0, None, "/").encode()) == Packet(CONNECT)
    assert decode(MsgPackPacket(1, None, "/chat").encode()) == Packet(DISCONNECT, "/chat")


IMPORT_SCRIPT = """
import importlib.util, sys, types
spec = importlib.util.find_spec("trio_sio")
package = types.ModuleType("trio_sio")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["trio_sio"] = package
import trio_sio.protocol.socketio, trio_sio.protocol.serialize
assert "msgpack" not in sys.modules, "msgpack imported outside msgpack_parser"
if sys.argv[1] == "without":
    sys.modules["msgpack"] = None  # as if not installed
    try:
        import trio_sio.protocol.msgpack_parser
    except ImportError as exc:
        print(exc)
else:
    import trio_sio.protocol.msgpack_parser
    print(",".join(m for m in ("trio", "trio_websocket", "h11") if m in sys.modules))
"""


@pytest.mark.parametrize("msgpack_installed", ["with", "without"])
def test_imports(msgpack_installed: str) -> None:
    """msgpack is imported by this module only, the module imports no event loop, and
    without msgpack the error names the extra to install."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_SCRIPT, msgpack_installed], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    if msgpack_installed == "with":
        assert result.stdout.strip() == ""
    else:
        assert "pip install 'trio-sio[msgpack]'" in result.stdout


# --- properties ----------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
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


def _same(a: Any, b: Any) -> bool:
    """Equality, with NaN equal to itself."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@given(packets())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_property(packet: Packet) -> None:
    [frame] = PARSER.encode(packet)
    back = decode(frame)
    assert (back.type, back.namespace, back.id) == (packet.type, packet.namespace, packet.id)
    assert _same(back.data, packet.data)


def _mutations(packet: Packet) -> st.SearchStrategy[bytes]:
    """Valid frames with a few bytes cut out and a few random bytes put in."""
    [frame] = PARSER.encode(packet)
    assert isinstance(frame, bytes)
    edits = st.tuples(st.integers(0, len(frame)), st.integers(0, 3), st.binary(max_size=3))
    return edits.map(lambda e: frame[: e[0]] + e[2] + frame[e[0] + e[1] :])


# Any msgpack at all in the places a packet has: extensions (notepack's type 0 included),
# timestamps, every kind of map key.
ext_values = st.builds(
    msgpack.ExtType, st.sampled_from([0, 0, 0, 1, 5, 127]), st.binary(max_size=9)
) | st.builds(msgpack.Timestamp, st.integers(-(2**34), 2**34), st.integers(0, 999_999_999))
any_scalars = scalars | ext_values
any_values = st.recursive(
    any_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=4) | st.binary(max_size=2), children, max_size=4)
    ),
    max_leaves=20,
)
packet_maps = st.fixed_dictionaries(
    {},
    optional={
        "type": st.integers(-1, 7) | any_scalars,
        "nsp": namespaces | any_scalars,
        "data": any_values,
        "id": ack_ids | any_scalars,
    },
).map(lambda fields: msgpack.packb(fields, use_bin_type=True, datetime=False))


@given(st.binary(max_size=60) | packets().flatmap(_mutations) | packet_maps)
@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_frames_raise_only_remote_protocol_error(frame: bytes) -> None:
    decoder = PARSER.decoder()
    try:
        decoder.feed(frame)
    except RemoteProtocolError:
        return
    packet = decoder.next_packet()
    assert isinstance(packet, Packet)
    assert check_payload(packet.type, packet.data) is None
    # What was accepted is plain wire data: it encodes again and decodes to the same.
    [again] = PARSER.encode(packet)
    back = decode(again)
    assert _same(back.data, packet.data)


# notepack's type-0 extensions (raw msgpack, decoded value; None in a list for undefined):
# the same type and length in two forms must never be mixed up, wherever they sit.
notepack_items = st.sampled_from(
    [
        (UNDEFINED, None),
        (b"\xd4\x00\x09", None),
        (array_buffer(b"\x09"), b"\x09"),
        (js_date(0), "1970-01-01T00:00:00.000Z"),
        (js_date(-1), "1969-12-31T23:59:59.999Z"),
        (array_buffer(bytes(8)), bytes(8)),
        (array_buffer(b"\xd7\x00" + bytes(6)), b"\xd7\x00" + bytes(6)),
        (array_buffer(b""), b""),
        (b"\xc4\x01\x07", b"\x07"),
        (b"\xa3d40", "d40"),
    ]
)
notepack_trees = st.recursive(
    notepack_items,
    lambda children: st.lists(children, max_size=4).map(
        lambda items: (
            bytes([0x90 | len(items)]) + b"".join(raw for raw, _ in items),
            [value for _, value in items],
        )
    ),
    max_leaves=12,
)


@given(st.lists(notepack_trees, max_size=6))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_notepack_extensions_property(items: list[tuple[bytes, Any]]) -> None:
    packet = decode(raw_event(b"\xa1x", *(raw for raw, _ in items)))
    assert packet.data == ["x", *(value for _, value in items)]
