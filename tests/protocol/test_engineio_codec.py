"""Engine.IO v4 codec: exact wire forms, validation, and property tests. No trio here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_sio.protocol.engineio import (
    HandshakeError,
    HandshakeErrorCode,
    OpenInfo,
    Packet,
    PacketType,
    Transport,
    decode_open,
    decode_packet,
    decode_payload,
    encode_open,
    encode_packet,
    encode_payload,
    validate_request,
)
from trio_sio.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError

MSG = PacketType.MESSAGE

WIRE_CASES = [
    (Packet(PacketType.OPEN, '{"sid":"x"}'), '0{"sid":"x"}'),
    (Packet(PacketType.CLOSE), "1"),
    (Packet(PacketType.PING), "2"),
    (Packet(PacketType.PING, "probe"), "2probe"),
    (Packet(PacketType.PONG, "probe"), "3probe"),
    (Packet(MSG, "hello"), "4hello"),
    (Packet(MSG, ""), "4"),
    (Packet(MSG, "é€😀"), "4é€😀"),
    (Packet(PacketType.UPGRADE), "5"),
    (Packet(PacketType.NOOP), "6"),
]


@pytest.mark.parametrize(("packet", "wire"), WIRE_CASES)
def test_text_packets_exact(packet: Packet, wire: str) -> None:
    assert encode_packet(packet) == wire
    assert decode_packet(wire) == packet


def test_binary_packet_is_raw_bytes_on_websocket() -> None:
    packet = Packet(MSG, b"\x01\x02\x03\x04")
    assert encode_packet(packet) == b"\x01\x02\x03\x04"
    assert decode_packet(b"\x01\x02\x03\x04") == packet
    assert decode_packet(bytearray(b"\x00")) == Packet(MSG, b"\x00")


def test_only_message_packets_carry_bytes() -> None:
    with pytest.raises(LocalProtocolError):
        Packet(PacketType.PING, b"x")


def test_payload_exact() -> None:
    packets = [Packet(MSG, "hello"), Packet(MSG, b"\x01\x02\x03\x04"), Packet(PacketType.PING)]
    assert encode_payload(packets) == "4hello\x1ebAQIDBA==\x1e2"
    assert decode_payload("4hello\x1ebAQIDBA==\x1e2") == packets
    assert decode_payload(b"4test1\x1e4test2\x1e4test3") == [
        Packet(MSG, "test1"),
        Packet(MSG, "test2"),
        Packet(MSG, "test3"),
    ]


@pytest.mark.parametrize(
    "body",
    ["", "abc", "4a\x1e", "\x1e4a", "9", "bAQI*", "b!", b"\xff\xfe", "4a\x1e\x1e4b"],
)
def test_bad_payloads_raise_remote_protocol_error(body: str | bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_payload(body)


def test_payload_packet_limit() -> None:
    assert len(decode_payload("\x1e".join(["4x"] * 5), max_packets=5)) == 5
    with pytest.raises(RemoteProtocolError):
        decode_payload("\x1e".join(["4x"] * 6), max_packets=5)


def test_open_packet_has_exactly_the_v4_keys() -> None:
    info = OpenInfo("abc", ("websocket",), 25000, 20000, 1_000_000)
    packet = encode_open(info)
    assert packet.type is PacketType.OPEN
    assert isinstance(packet.data, str)
    assert json.loads(packet.data) == {
        "sid": "abc",
        "upgrades": ["websocket"],
        "pingInterval": 25000,
        "pingTimeout": 20000,
        "maxPayload": 1000000,
    }
    assert decode_open(packet) == info


@pytest.mark.parametrize(
    "data",
    [
        "",
        "[]",
        "nope",
        '{"sid":1}',
        '{"sid":"a","pingInterval":-1,"pingTimeout":1}',
        '{"sid":"a","pingInterval":true,"pingTimeout":1}',
        '{"sid":"a","upgrades":"x"}',
    ],
)
def test_bad_open_packets(data: str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_open(Packet(PacketType.OPEN, data))


BOTH = (Transport.POLLING, Transport.WEBSOCKET)


@pytest.mark.parametrize(
    ("query", "method", "upgrade", "code"),
    [
        ({"transport": "polling"}, "GET", False, HandshakeErrorCode.UNSUPPORTED_PROTOCOL_VERSION),
        (
            {"EIO": "abc", "transport": "polling"},
            "GET",
            False,
            HandshakeErrorCode.UNSUPPORTED_PROTOCOL_VERSION,
        ),
        (
            {"EIO": "3", "transport": "polling"},
            "GET",
            False,
            HandshakeErrorCode.UNSUPPORTED_PROTOCOL_VERSION,
        ),
        ({"EIO": "4"}, "GET", False, HandshakeErrorCode.UNKNOWN_TRANSPORT),
        ({"EIO": "4", "transport": "abc"}, "GET", False, HandshakeErrorCode.UNKNOWN_TRANSPORT),
        (
            {"EIO": "4", "transport": "polling"},
            "POST",
            False,
            HandshakeErrorCode.BAD_HANDSHAKE_METHOD,
        ),
        (
            {"EIO": "4", "transport": "polling"},
            "PUT",
            False,
            HandshakeErrorCode.BAD_HANDSHAKE_METHOD,
        ),
        ({"EIO": "4", "transport": "websocket"}, "GET", False, HandshakeErrorCode.BAD_REQUEST),
        (
            {"EIO": "4", "transport": "polling", "sid": "x"},
            "PUT",
            False,
            HandshakeErrorCode.BAD_REQUEST,
        ),
    ],
)
def test_request_validation(
    query: dict[str, str], method: str, upgrade: bool, code: HandshakeErrorCode
) -> None:
    with pytest.raises(HandshakeError) as info:
        validate_request(query, method=method, is_upgrade=upgrade, allowed_transports=BOTH)
    assert info.value.code is code
    assert info.value.status == 400
    assert json.loads(info.value.body())["code"] == int(code)


def test_request_validation_accepts() -> None:
    ok = validate_request(
        {"EIO": "4", "transport": "polling"},
        method="GET",
        is_upgrade=False,
        allowed_transports=BOTH,
    )
    assert ok.sid is None and ok.transport is Transport.POLLING
    ws = validate_request(
        {"EIO": "4", "transport": "websocket", "sid": "s"},
        method="GET",
        is_upgrade=True,
        allowed_transports=BOTH,
    )
    assert ws.sid == "s" and ws.transport is Transport.WEBSOCKET
    with pytest.raises(HandshakeError):
        validate_request(
            {"EIO": "4", "transport": "websocket"},
            method="GET",
            is_upgrade=True,
            allowed_transports=(Transport.POLLING,),
        )


def test_protocol_error_is_abstract() -> None:
    with pytest.raises(TypeError):
        ProtocolError("x")


def test_protocol_layer_imports_no_event_loop() -> None:
    code = (
        "import sys, trio_sio.protocol.engineio, trio_sio.protocol.errors; "
        "bad = [m for m in ('trio', 'trio_websocket', 'h11') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- properties -------------------------------------------------------------------------

text_packets = st.builds(
    Packet,
    st.sampled_from(list(PacketType)),
    st.text(alphabet=st.characters(exclude_characters="\x1e", exclude_categories=("Cs",))),
)
binary_packets = st.builds(Packet, st.just(MSG), st.binary())
packets = st.one_of(text_packets, binary_packets)


@given(packets)
def test_packet_round_trip(packet: Packet) -> None:
    assert decode_packet(encode_packet(packet)) == packet


@given(st.lists(packets, min_size=1, max_size=20))
def test_payload_round_trip(batch: list[Packet]) -> None:
    assert decode_payload(encode_payload(batch)) == batch
    assert decode_payload(encode_payload(batch).encode()) == batch


@given(st.one_of(st.text(), st.binary()))
def test_decoding_anything_raises_only_remote_protocol_error(data: str | bytes) -> None:
    for decode in (decode_packet, decode_payload):
        try:
            decode(data)
        except RemoteProtocolError:
            pass


@given(st.text())
def test_decode_open_raises_only_remote_protocol_error(data: str) -> None:
    try:
        decode_open(Packet(PacketType.OPEN, data))
    except RemoteProtocolError:
        pass
