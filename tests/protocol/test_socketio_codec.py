"""Socket.IO v5 default parser: exact wire forms, validation, CVE regressions, properties.

No trio here: the codec is sans-IO.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_sio.protocol.errors import LocalProtocolError, RemoteProtocolError
from trio_sio.protocol.serialize import to_wire
from trio_sio.protocol.socketio import (
    MAX_ACK_ID,
    NEED_DATA,
    RESERVED_EVENTS,
    Decoder,
    JsonParser,
    Packet,
    PacketDecoder,
    PacketType,
    Parser,
    check_payload,
    encode,
)

CONNECT = PacketType.CONNECT
DISCONNECT = PacketType.DISCONNECT
EVENT = PacketType.EVENT
ACK = PacketType.ACK
CONNECT_ERROR = PacketType.CONNECT_ERROR


def ph(num: int) -> dict[str, Any]:
    return {"_placeholder": True, "num": num}


def decode_all(frames: list[str | bytes], **limits: int) -> list[Packet]:
    decoder = Decoder(**limits)
    packets: list[Packet] = []
    for frame in frames:
        decoder.feed(frame)
        while (packet := decoder.next_packet()) is not NEED_DATA:
            assert isinstance(packet, Packet)
            packets.append(packet)
    return packets


# --- exact wire forms -----------------------------------------------------------------------

WIRE_CASES: list[tuple[Packet, list[str | bytes]]] = [
    (Packet(CONNECT), ["0"]),
    (Packet(CONNECT, "/admin"), ["0/admin,"]),
    (Packet(CONNECT, "/admin", {"token": "123"}), ['0/admin,{"token":"123"}']),
    (Packet(CONNECT, "/", {"sid": "oSO0OpakMV_3jnilAAAA"}), ['0{"sid":"oSO0OpakMV_3jnilAAAA"}']),
    (Packet(DISCONNECT), ["1"]),
    (Packet(DISCONNECT, "/admin"), ["1/admin,"]),
    (Packet(EVENT, data=["hello", "world"]), ['2["hello","world"]']),
    (Packet(EVENT, data=["foo"]), ['2["foo"]']),
    (Packet(EVENT, "/admin", ["hello"]), ['2/admin,["hello"]']),
    (Packet(EVENT, "/admin", ["x"], 12), ['2/admin,12["x"]']),
    (Packet(EVENT, data=["foo"], id=12), ['212["foo"]']),
    (Packet(EVENT, data=["test", "foo"], id=1), ['21["test","foo"]']),
    (Packet(EVENT, data=["é€😀", {"k": "ü"}]), ['2["é€😀",{"k":"ü"}]']),
    (Packet(EVENT, data=["n", 1, -2.5, True, None, [], {}]), ['2["n",1,-2.5,true,null,[],{}]']),
    (Packet(ACK, data=[], id=1), ["31[]"]),
    (Packet(ACK, data=[], id=12), ["312[]"]),
    (Packet(ACK, "/admin", ["bar"], 13), ['3/admin,13["bar"]']),
    (Packet(CONNECT_ERROR, data={"message": "Not authorized"}), ['4{"message":"Not authorized"}']),
    (
        Packet(CONNECT_ERROR, "/random", {"message": "Invalid namespace"}),
        ['4/random,{"message":"Invalid namespace"}'],
    ),
    (Packet(CONNECT_ERROR, data="oops"), ['4"oops"']),
    (
        Packet(EVENT, data=["hello", b"\x01\x02\x03\x04"]),
        ['51-["hello",{"_placeholder":true,"num":0}]', b"\x01\x02\x03\x04"],
    ),
    (
        Packet(EVENT, data=["baz", b"\x01\x02", b"\x03\x04"]),
        [
            '52-["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
            b"\x01\x02",
            b"\x03\x04",
        ],
    ),
    (
        Packet(EVENT, "/admin", ["baz", {"a": [b"\x01"]}, b""], 7),
        [
            '52-/admin,7["baz",{"a":[{"_placeholder":true,"num":0}]},{"_placeholder":true,"num":1}]',
            b"\x01",
            b"",
        ],
    ),
    (
        Packet(ACK, data=["bar", b"\x01\x02\x03\x04"], id=15),
        ['61-15["bar",{"_placeholder":true,"num":0}]', b"\x01\x02\x03\x04"],
    ),
    (
        Packet(ACK, "/admin", [b"\xff"], 0),
        ['61-/admin,0[{"_placeholder":true,"num":0}]', b"\xff"],
    ),
]


@pytest.mark.parametrize(("packet", "frames"), WIRE_CASES)
def test_encode_exact(packet: Packet, frames: list[str | bytes]) -> None:
    assert encode(packet) == frames
    assert JsonParser().encode(packet) == frames


@pytest.mark.parametrize(("packet", "frames"), WIRE_CASES)
def test_decode_exact(packet: Packet, frames: list[str | bytes]) -> None:
    assert decode_all(frames) == [packet]


def test_seed_example() -> None:
    # socket.emit("hello", 1, "2", { 3: '4', 5: Buffer.from([6]) })
    data = to_wire(("hello", 1, "2", {3: "4", 5: bytes([6])}))
    frames = encode(Packet(EVENT, data=data))
    assert frames == [
        '51-["hello",1,"2",{"3":"4","5":{"_placeholder":true,"num":0}}]',
        b"\x06",
    ]
    [packet] = decode_all(frames)
    assert packet.data == ["hello", 1, "2", {"3": "4", "5": b"\x06"}]


def test_attachments_numbered_in_traversal_order() -> None:
    data = ["e", {"b": b"1", "a": [b"2", {"c": b"3"}]}, b"4"]
    frames = encode(Packet(EVENT, data=data))
    assert frames[1:] == [b"1", b"2", b"3", b"4"]
    assert str(frames[0]).startswith("54-")
    assert json.loads(str(frames[0])[3:]) == [
        "e",
        {"b": ph(0), "a": [ph(1), {"c": ph(2)}]},
        ph(3),
    ]


def test_bytes_like_values_become_bytes() -> None:
    frames = encode(Packet(EVENT, data=["e", bytearray(b"ab"), memoryview(b"cd")]))
    assert frames[1:] == [b"ab", b"cd"]
    assert all(type(f) is bytes for f in frames[1:])


def test_lone_surrogates_are_escaped_like_json_stringify() -> None:
    packet = Packet(EVENT, data=["x", "a\ud800b", {"\udfff": "é"}])
    [text] = encode(packet)
    assert text == '2["x","a\\ud800b",{"\\udfff":"é"}]'
    assert isinstance(text, str)
    text.encode("utf-8")  # sendable
    assert decode_all([text]) == [packet]


def test_non_ascii_is_sent_raw() -> None:
    assert encode(Packet(EVENT, data=["ü"])) == ['2["ü"]']


# --- decoding what JS accepts beyond our own encoder's output ---------------------------------

ACCEPTED: list[tuple[list[str | bytes], Packet]] = [
    (["1/admin"], Packet(DISCONNECT, "/admin")),
    (["0/admin"], Packet(CONNECT, "/admin")),
    (['2/,["x"]'], Packet(EVENT, "/", ["x"])),
    (['2 [ "x" ] '], Packet(EVENT, data=["x"])),
    (['2\t\n\r["x"]'], Packet(EVENT, data=["x"])),
    (['2[1,"x"]'], Packet(EVENT, data=[1, "x"])),
    (["2[1.5]"], Packet(EVENT, data=[1.5])),
    (["3[]"], Packet(ACK, data=[])),
    (['2007["x"]'], Packet(EVENT, data=["x"], id=7)),
    (['50-["x"]'], Packet(EVENT, data=["x"])),
    (["60-3[]"], Packet(ACK, data=[], id=3)),
    (['501-["x",{"_placeholder":true,"num":0}]', b"a"], Packet(EVENT, data=["x", b"a"])),
    (
        ['52-["x",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]', b"a", b"b"],
        Packet(EVENT, data=["x", b"b", b"a"]),
    ),
    (
        ['52-["x",{"_placeholder":true,"num":1},{"_placeholder":true,"num":1}]', b"a", b"b"],
        Packet(EVENT, data=["x", b"b", b"b"]),
    ),
    # Only dicts whose "_placeholder" is true are placeholders.
    (
        ['51-["x",{"_placeholder":false,"num":0},{"_placeholder":true,"num":0}]', b"a"],
        Packet(EVENT, data=["x", {"_placeholder": False, "num": 0}, b"a"]),
    ),
    # In a non-binary packet a placeholder-shaped dict is plain data (as in JS).
    (['2["x",{"_placeholder":true,"num":0}]'], Packet(EVENT, data=["x", ph(0)])),
    (
        ['4{"message":"no","data":{"a":1}}'],
        Packet(CONNECT_ERROR, data={"message": "no", "data": {"a": 1}}),
    ),
    ([f"2{MAX_ACK_ID}[0]"], Packet(EVENT, data=[0], id=MAX_ACK_ID)),
    # An ack id on any packet type is accepted, as by the JS parser.
    (["01"], Packet(CONNECT, id=1)),
]


@pytest.mark.parametrize(("frames", "packet"), ACCEPTED)
def test_decode_accepts(frames: list[str | bytes], packet: Packet) -> None:
    assert decode_all(frames) == [packet]


def test_numeric_event_name_round_trips() -> None:
    assert decode_all(encode(Packet(EVENT, data=[42, "x"]))) == [Packet(EVENT, data=[42, "x"])]


# --- validation ----------------------------------------------------------------------------

BAD_TEXT = [
    pytest.param("", id="empty"),
    pytest.param("7[]", id="type-7"),
    pytest.param("9", id="type-9"),
    pytest.param("a", id="type-letter"),
    pytest.param("-1", id="type-minus"),
    pytest.param('\u0662["x"]', id="type-arabic-digit"),
    # attachment counts
    pytest.param('5["x"]', id="binary-no-dash"),
    pytest.param('5-["x"]', id="binary-empty-count"),
    pytest.param('5a-["x"]', id="binary-count-letter"),
    pytest.param('5\u0661-["x"]', id="binary-count-arabic-digit"),
    pytest.param('5+1-["x"]', id="binary-count-sign"),
    pytest.param('5 1-["x"]', id="binary-count-space"),
    pytest.param('51.0-["x"]', id="binary-count-float"),
    pytest.param('51e0-["x"]', id="binary-count-exponent"),
    pytest.param('511-["x"]', id="binary-too-many"),
    pytest.param('599999999999999999999-["x"]', id="binary-huge-count"),
    # ack ids
    pytest.param('21234567890123456["x"]', id="ack-id-16-digits"),
    pytest.param("3" + "9" * 5000 + "[]", id="ack-id-5000-digits"),
    # JSON
    pytest.param('2["x"', id="json-truncated"),
    pytest.param('2["x"]]', id="json-trailing"),
    pytest.param('2["x"]x', id="json-trailing-garbage"),
    pytest.param("2 ", id="json-blank"),
    pytest.param('2x["a"]', id="json-garbage-before"),
    pytest.param('2["x",NaN]', id="json-nan"),
    pytest.param('2["x",Infinity]', id="json-infinity"),
    pytest.param('2["x",-Infinity]', id="json-minus-infinity"),
    pytest.param("2['x']", id="json-single-quotes"),
    pytest.param('2["x",' + "1" * 5000 + "]", id="json-int-too-long"),
    pytest.param("2[" * 100_000, id="json-deep-unclosed"),
    pytest.param("2" + "[" * 100_000 + "]" * 100_000, id="json-deep-closed"),
    pytest.param('2["\x01"]', id="json-control-char"),
    # payload per type
    pytest.param("0[]", id="connect-array"),
    pytest.param('0"x"', id="connect-string"),
    pytest.param("0 1", id="connect-number"),
    pytest.param("0null", id="connect-null"),
    pytest.param("1{}", id="disconnect-object"),
    pytest.param("1/admin,{}", id="disconnect-nsp-object"),
    pytest.param("1null", id="disconnect-null"),
    pytest.param("2", id="event-absent"),
    pytest.param("2/admin,", id="event-nsp-absent"),
    pytest.param("21", id="event-only-id"),
    pytest.param("2[]", id="event-empty"),
    pytest.param("2{}", id="event-object"),
    pytest.param('2"x"', id="event-string"),
    pytest.param("2null", id="event-null"),
    pytest.param("2[null]", id="event-name-null"),
    pytest.param("2[true]", id="event-name-bool"),
    pytest.param("2[[]]", id="event-name-array"),
    # CVE-2023-32695: an object as event name crashed the JS server
    pytest.param('2[{"toString":"x"}]', id="event-name-object"),
    *[
        pytest.param(f'2["{name}"]', id=f"event-reserved-{name}")
        for name in sorted(RESERVED_EVENTS)
    ],
    pytest.param('51-[{"_placeholder":true,"num":0}]', id="event-name-placeholder"),
    pytest.param("3", id="ack-absent"),
    pytest.param("3{}", id="ack-object"),
    pytest.param('3"x"', id="ack-string"),
    pytest.param("3null", id="ack-null"),
    pytest.param("4", id="connect-error-absent"),
    pytest.param("4[]", id="connect-error-array"),
    pytest.param("4null", id="connect-error-null"),
    pytest.param("4true", id="connect-error-bool"),
    pytest.param("60-{}", id="binary-ack-object"),
    pytest.param("50-[]", id="binary-event-empty"),
    # placeholders: CVE-2022-2421 (socket.io-parser trusted "num" and "_placeholder")
    pytest.param('51-["x",{"_placeholder":true,"num":"0"}]', id="placeholder-num-str"),
    pytest.param('51-["x",{"_placeholder":true,"num":true}]', id="placeholder-num-bool"),
    pytest.param('51-["x",{"_placeholder":true,"num":-1}]', id="placeholder-num-negative"),
    pytest.param('51-["x",{"_placeholder":true,"num":1}]', id="placeholder-num-out-of-range"),
    pytest.param('51-["x",{"_placeholder":true,"num":0.0}]', id="placeholder-num-float"),
    pytest.param('51-["x",{"_placeholder":true,"num":null}]', id="placeholder-num-null"),
    pytest.param('51-["x",{"_placeholder":true,"num":[0]}]', id="placeholder-num-array"),
    pytest.param('51-["x",{"_placeholder":true,"num":{}}]', id="placeholder-num-object"),
    pytest.param('51-["x",{"_placeholder":true}]', id="placeholder-no-num"),
    pytest.param('51-["x",{"_placeholder":true,"num":0,"x":1}]', id="placeholder-extra-key"),
    pytest.param('51-["x",{"_placeholder":true,"num":"__proto__"}]', id="placeholder-proto"),
    pytest.param(
        '51-["x",{"_placeholder":true,"num":18446744073709551616}]', id="placeholder-num-2**64"
    ),
    pytest.param('50-["x",{"_placeholder":true,"num":0}]', id="placeholder-with-zero-attachments"),
    pytest.param('51-["x",{"a":[{"_placeholder":true,"num":5}]}]', id="placeholder-nested-bad"),
]


@pytest.mark.parametrize("frame", BAD_TEXT)
def test_bad_text_frame(frame: str) -> None:
    decoder = Decoder()
    with pytest.raises(RemoteProtocolError):
        decoder.feed(frame)
    assert decoder.next_packet() is NEED_DATA


def test_binary_frame_without_pending_packet() -> None:
    with pytest.raises(RemoteProtocolError, match="no attachment is expected"):
        Decoder().feed(b"\x01")


def test_binary_frame_after_complete_packet() -> None:
    decoder = Decoder()
    decoder.feed('51-["x",{"_placeholder":true,"num":0}]')
    decoder.feed(b"a")
    with pytest.raises(RemoteProtocolError):
        decoder.feed(b"b")


def test_text_frame_while_attachments_pending() -> None:
    decoder = Decoder()
    decoder.feed('52-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    decoder.feed(b"a")
    assert decoder.pending_attachments == 1
    with pytest.raises(RemoteProtocolError, match="1 attachment"):
        decoder.feed('2["y"]')
    assert decoder.next_packet() is NEED_DATA


def test_too_many_attachments_limit_is_configurable() -> None:
    header = "53-[" + ",".join(json.dumps(ph(i)) for i in range(3)) + "]"
    with pytest.raises(RemoteProtocolError, match="too many attachments"):
        Decoder(max_attachments=2).feed(header)
    header10 = '510-["x"]'
    Decoder().feed(header10)  # the JS default, 10, is allowed
    with pytest.raises(RemoteProtocolError, match="too many attachments"):
        Decoder().feed('511-["x"]')


def test_attachment_bytes_limit() -> None:
    decoder = Decoder(max_attachment_bytes=10)
    decoder.feed('52-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    decoder.feed(b"123456")
    with pytest.raises(RemoteProtocolError, match="exceed 10 bytes"):
        decoder.feed(b"12345")
    # exactly at the limit is fine
    assert decode_all(
        [
            '52-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
            b"12345",
            b"12345",
        ],
        max_attachment_bytes=10,
    ) == [Packet(EVENT, data=["x", b"12345", b"12345"])]


def test_errors_are_final() -> None:
    decoder = Decoder()
    with pytest.raises(RemoteProtocolError):
        decoder.feed("2[]")
    with pytest.raises(RemoteProtocolError, match="already failed"):
        decoder.feed('2["fine"]')
    with pytest.raises(RemoteProtocolError, match="already failed"):
        decoder.feed(b"x")


def test_non_frame_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Decoder().feed(42)  # type: ignore[arg-type]


def test_bad_limits() -> None:
    with pytest.raises(ValueError):
        Decoder(max_attachments=-1)
    with pytest.raises(ValueError):
        Decoder(max_attachment_bytes=-1)


# --- the decoder's queue -------------------------------------------------------------------


def test_several_frames_then_drain() -> None:
    decoder = Decoder()
    decoder.feed('2["a"]')
    decoder.feed('51-["b",{"_placeholder":true,"num":0}]')
    assert decoder.pending_attachments == 1
    decoder.feed(bytearray(b"z"))
    decoder.feed("31[]")
    assert decoder.pending_attachments == 0
    assert decoder.next_packet() == Packet(EVENT, data=["a"])
    assert decoder.next_packet() == Packet(EVENT, data=["b", b"z"])
    assert decoder.next_packet() == Packet(ACK, data=[], id=1)
    assert decoder.next_packet() is NEED_DATA
    assert repr(NEED_DATA) == "NEED_DATA"


def test_binary_packet_waits_for_all_attachments() -> None:
    decoder = Decoder()
    decoder.feed('52-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    assert decoder.next_packet() is NEED_DATA
    decoder.feed(memoryview(b"a"))
    assert decoder.next_packet() is NEED_DATA
    decoder.feed(b"b")
    packet = decoder.next_packet()
    assert packet == Packet(EVENT, data=["x", b"a", b"b"])
    assert isinstance(packet, Packet)
    assert type(packet.data[1]) is bytes


# --- local validation ----------------------------------------------------------------------

BAD_PACKETS: list[tuple[Any, ...]] = [
    (PacketType.BINARY_EVENT, "/", ["x"]),
    (PacketType.BINARY_ACK, "/", [], 1),
    (2, "/", ["x"]),
    (EVENT, "admin", ["x"]),
    (EVENT, "", ["x"]),
    (EVENT, "/a,b", ["x"]),
    (EVENT, b"/", ["x"]),
    (EVENT, "/", ["x"], -1),
    (EVENT, "/", ["x"], True),
    (EVENT, "/", ["x"], 1.0),
    (EVENT, "/", ["x"], MAX_ACK_ID + 1),
    (EVENT, "/", None),
    (EVENT, "/", []),
    (EVENT, "/", ("x",)),
    (EVENT, "/", "x"),
    (EVENT, "/", [None]),
    (EVENT, "/", [b"x"]),
    (EVENT, "/", ["disconnect"]),
    (EVENT, "/", ["connect", 1]),
    (ACK, "/", None, 1),
    (ACK, "/", (), 1),
    (CONNECT, "/", []),
    (CONNECT, "/", "x"),
    (DISCONNECT, "/", {}),
    (CONNECT_ERROR, "/", None),
    (CONNECT_ERROR, "/", 1),
]


@pytest.mark.parametrize("args", BAD_PACKETS)
def test_packet_validation(args: tuple[Any, ...]) -> None:
    with pytest.raises(LocalProtocolError):
        Packet(*args)


BAD_DATA: list[Packet] = [
    Packet(EVENT, data=["x", {1, 2}]),
    Packet(EVENT, data=["x", object()]),
    Packet(EVENT, data=["x", float("nan")]),
    Packet(EVENT, data=["x", float("inf")]),
    Packet(EVENT, data=["x", {b"k": 1}]),
    Packet(CONNECT, data={"token": b"x"}),
    Packet(CONNECT_ERROR, data={"data": b"x"}),
]


@pytest.mark.parametrize("packet", BAD_DATA)
def test_encode_refuses(packet: Packet) -> None:
    with pytest.raises(LocalProtocolError):
        encode(packet)


def test_encode_refuses_cycles_and_deep_data() -> None:
    cyclic: list[Any] = ["x"]
    cyclic.append(cyclic)
    with pytest.raises(LocalProtocolError):
        encode(Packet(EVENT, data=cyclic))
    deep: list[Any] = ["x"]
    for _ in range(100_000):
        deep = ["x", deep]
    with pytest.raises(LocalProtocolError):
        encode(Packet(EVENT, data=deep))


def test_encode_failure_leaves_no_attachments_behind() -> None:
    with pytest.raises(LocalProtocolError):
        encode(Packet(EVENT, data=["x", b"a", {1, 2}]))
    assert encode(Packet(EVENT, data=["y", b"b"])) == [
        '51-["y",{"_placeholder":true,"num":0}]',
        b"b",
    ]


def test_check_payload() -> None:
    assert check_payload(EVENT, ["x"]) is None
    assert check_payload(PacketType.BINARY_EVENT, [1]) is None
    assert check_payload(PacketType.BINARY_ACK, []) is None
    assert check_payload(EVENT, ["connect"]) == "'connect' is a reserved event name"
    assert check_payload(99, None) is not None  # type: ignore[arg-type]


def test_parser_protocol() -> None:
    parser: Parser = JsonParser(max_attachments=3, max_attachment_bytes=5)
    decoder: PacketDecoder = parser.decoder()
    assert isinstance(decoder, Decoder)
    with pytest.raises(RemoteProtocolError):
        decoder.feed('54-["x"]')


NO_EVENT_LOOP_SCRIPT = """
import importlib.util, sys, types
# Load the protocol modules without running trio_sio/__init__.py, which may import the
# Trio layers: this checks what these modules themselves import.
spec = importlib.util.find_spec("trio_sio")
package = types.ModuleType("trio_sio")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["trio_sio"] = package
import trio_sio.protocol.socketio, trio_sio.protocol.serialize
assert "cbor2" not in sys.modules, "cbor2 imported outside cbor_parser"
import trio_sio.protocol.cbor_parser
print(",".join(m for m in ("trio", "trio_websocket", "h11") if m in sys.modules))
"""


def test_no_event_loop_imported() -> None:
    result = subprocess.run(
        [sys.executable, "-c", NO_EVENT_LOOP_SCRIPT], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


# --- properties ----------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
# "_placeholder" is the one key the binary format reserves (as in JS): keep it out of data.
keys = st.text(max_size=10).filter(lambda k: k != "_placeholder")
wire_values = st.recursive(
    json_scalars | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)
event_names = st.one_of(
    st.text(max_size=20).filter(lambda n: n not in RESERVED_EVENTS),
    st.integers(min_value=0, max_value=2**53),
)
namespaces = st.just("/") | st.text(max_size=10).map(lambda s: "/" + s.replace(",", ""))
ack_ids = st.none() | st.integers(min_value=0, max_value=MAX_ACK_ID)


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    ptype = draw(st.sampled_from([CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR]))
    nsp = draw(namespaces)
    ack_id = draw(ack_ids)
    if ptype is EVENT:
        data: Any = [draw(event_names), *draw(st.lists(wire_values, max_size=5))]
    elif ptype is ACK:
        data = draw(st.lists(wire_values, max_size=5))
    elif ptype is CONNECT:
        data = draw(st.none() | st.dictionaries(keys, json_scalars, max_size=4))
    elif ptype is CONNECT_ERROR:
        data = draw(st.text(max_size=10) | st.dictionaries(keys, json_scalars, max_size=4))
    else:
        data = None
    return Packet(ptype, nsp, data, ack_id)


@given(packets())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip(packet: Packet) -> None:
    frames = encode(packet)
    text = frames[0]
    assert isinstance(text, str)
    assert all(type(f) is bytes for f in frames[1:])
    assert decode_all(frames, max_attachments=1000) == [packet]


@given(st.lists(packets(), max_size=5))
@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_stream(batch: list[Packet]) -> None:
    frames = [frame for packet in batch for frame in encode(packet)]
    assert decode_all(frames, max_attachments=1000) == batch


@given(packets(), st.lists(st.text(alphabet=st.characters(codec=None), max_size=5), max_size=3))
@settings(max_examples=100)
def test_round_trip_any_code_point(packet: Packet, texts: list[str]) -> None:
    if packet.type is not EVENT:
        return
    packet = Packet(EVENT, packet.namespace, [*packet.data, *texts], packet.id)
    frames = encode(packet)
    str(frames[0]).encode("utf-8")
    assert decode_all(frames, max_attachments=1000) == [packet]


HEADS = ["0", "1", "2", "3", "4", "5", "6", "51-", "52-", "50-", "511-", "5-", "2/a,", "/", "12"]
BODIES = [
    "",
    "[]",
    "{}",
    '["x"]',
    '["x",{"_placeholder":true,"num":0}]',
    '[{"_placeholder":true,"num":0}]',
    '["x",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]',
    '"s"',
    "null",
    "[1]",
]
frame_parts = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=10),
    st.builds(
        lambda h, i, b, t: h + i + b + t,
        st.sampled_from(HEADS),
        st.sampled_from(["", "1", "007", "9" * 16]),
        st.sampled_from(BODIES),
        st.sampled_from(["", "]", ",", "x", " "]),
    ),
    st.builds(lambda d: "2" + json.dumps(d), wire_values.filter(lambda v: not _has_bytes(v))),
)


def _has_bytes(value: Any) -> bool:
    if isinstance(value, bytes):
        return True
    if isinstance(value, list):
        return any(_has_bytes(v) for v in value)
    if isinstance(value, dict):
        return any(_has_bytes(v) for v in value.values())
    return False


@given(st.lists(frame_parts, max_size=8), st.integers(min_value=0, max_value=3))
@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_frames_raise_only_remote_protocol_error(
    frames: list[str | bytes], max_attachments: int
) -> None:
    decoder = Decoder(max_attachments=max_attachments, max_attachment_bytes=15)
    for frame in frames:
        try:
            decoder.feed(frame)
        except RemoteProtocolError:
            continue
        while (packet := decoder.next_packet()) is not NEED_DATA:
            assert isinstance(packet, Packet)
            assert packet.type < PacketType.BINARY_EVENT
            assert check_payload(packet.type, packet.data) is None


@given(packets(), st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_frames_raise_only_remote_protocol_error(
    packet: Packet, data: st.DataObject
) -> None:
    frames = encode(packet)
    text = str(frames[0])
    pos = data.draw(st.integers(min_value=0, max_value=len(text)))
    cut = data.draw(st.integers(min_value=0, max_value=3))
    insert = data.draw(st.text(alphabet='0123456789-/,[]{}":_ntx', max_size=3))
    frames[0] = text[:pos] + insert + text[pos + cut :]
    decoder = Decoder()
    for frame in frames:
        try:
            decoder.feed(frame)
        except RemoteProtocolError:
            break
    while (result := decoder.next_packet()) is not NEED_DATA:
        assert isinstance(result, Packet)
