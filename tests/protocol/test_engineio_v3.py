"""The Engine.IO v3 codec (``allow_eio3``): exact wire forms, as engine.io-parser 2.x (the
JS server's ``parser-v3``) writes them, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_sio.protocol.engineio import (
    HandshakeError,
    Packet,
    PacketType,
    Transport,
    decode_payload_v3,
    decode_ws_message_v3,
    encode_payload_v3,
    encode_ws_message_v3,
    validate_request,
)
from trio_sio.protocol.errors import RemoteProtocolError

MSG = PacketType.MESSAGE


def test_text_payload_exact() -> None:
    packets = [Packet(MSG, "hello"), Packet(PacketType.PING), Packet(MSG, b"\x01\x02\xff")]
    assert encode_payload_v3(packets) == "6:4hello1:26:b4AQL/"
    assert decode_payload_v3("6:4hello1:26:b4AQL/") == packets
    assert encode_payload_v3([]) == "0:"
    assert decode_payload_v3("0:") == []


def test_text_payload_lengths_count_utf16_code_units() -> None:
    # JavaScript's String.length: "é" is one unit, "😀" (outside the BMP) two.
    packet = Packet(MSG, "é😀")
    assert encode_payload_v3([packet]) == "4:4é😀"
    assert decode_payload_v3("4:4é😀2:4a") == [packet, Packet(MSG, "a")]
    with pytest.raises(RemoteProtocolError):
        decode_payload_v3("3:4é😀")  # would cut the astral character in two


def test_binary_payload_exact() -> None:
    # <0: text | 1: binary><length as digit bytes><255><packet>; text as UTF-8, binary
    # with its type byte first (the length counts it).
    packets = [Packet(MSG, "hé"), Packet(MSG, b"\x00\xff")]
    wire = b"\x00\x04\xff4h\xc3\xa9" + b"\x01\x03\xff\x04\x00\xff"
    assert encode_payload_v3(packets, binary=True) == wire
    assert decode_payload_v3(wire) == packets
    long = Packet(MSG, b"x" * 12)
    assert encode_payload_v3([long], binary=True) == b"\x01\x01\x03\xff\x04" + b"x" * 12
    # Text only: the text form, even for a client that takes binary.
    assert encode_payload_v3([Packet(PacketType.PONG)], binary=True) == "1:3"


def test_websocket_messages() -> None:
    assert encode_ws_message_v3(Packet(MSG, b"\x01")) == b"\x04\x01"
    assert encode_ws_message_v3(Packet(MSG, "hi")) == "4hi"
    assert encode_ws_message_v3(Packet(PacketType.PONG, "probe")) == "3probe"
    assert decode_ws_message_v3(b"\x04\x01\x02") == Packet(MSG, b"\x01\x02")
    assert decode_ws_message_v3("b4AQI=") == Packet(MSG, b"\x01\x02")
    assert decode_ws_message_v3("2probe") == Packet(PacketType.PING, "probe")


@pytest.mark.parametrize(
    "body",
    [
        "",
        ":",
        "x:4a",
        "10:4a",
        "2:b",
        "3:b4=",
        "3:b2AA",
        "1:9",
        "99999999999999:4",
        b"",
        b"\x02\x01\xff4",
        b"\x00\x05\xff4",
        b"\x00\xff4",
        b"\x00\x0a\xff4",
        b"\x01\x02\xff\x02\x00",
        b"\x00\x03\xff4\xff\xfe",
        b"\x00\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\xff",
    ],
)
def test_bad_payloads(body: str | bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_payload_v3(body)


@pytest.mark.parametrize("message", [b"", b"\x02", "", "b", "b2AA", "bx", "9"])
def test_bad_websocket_messages(message: str | bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_ws_message_v3(message)


def test_packet_limit() -> None:
    assert len(decode_payload_v3("1:2" * 3, max_packets=3)) == 3
    with pytest.raises(RemoteProtocolError):
        decode_payload_v3("1:2" * 4, max_packets=3)
    with pytest.raises(RemoteProtocolError):
        decode_payload_v3(b"\x00\x01\xff2" * 4, max_packets=3)


def test_eio3_requests_only_when_allowed() -> None:
    query = {"EIO": "3", "transport": "polling"}
    transports = (Transport.POLLING, Transport.WEBSOCKET)
    with pytest.raises(HandshakeError):
        validate_request(query, method="GET", is_upgrade=False, allowed_transports=transports)
    info = validate_request(
        query, method="GET", is_upgrade=False, allowed_transports=transports, allow_eio3=True
    )
    assert info.protocol == 3
    v4 = validate_request(
        {"EIO": "4", "transport": "polling"},
        method="GET",
        is_upgrade=False,
        allowed_transports=transports,
        allow_eio3=True,
    )
    assert v4.protocol == 4
    with pytest.raises(HandshakeError, match="JSONP"):
        validate_request(
            {**query, "j": "0"},
            method="GET",
            is_upgrade=False,
            allowed_transports=transports,
            allow_eio3=True,
        )


# -- properties -------------------------------------------------------------------------

text_packets = st.builds(
    Packet,
    st.sampled_from(list(PacketType)),
    st.text(alphabet=st.characters(exclude_categories=("Cs",))),
)
binary_packets = st.builds(Packet, st.just(MSG), st.binary())
packets = st.one_of(text_packets, binary_packets)


@given(st.lists(packets, max_size=20))
def test_payload_round_trip(batch: list[Packet]) -> None:
    assert decode_payload_v3(encode_payload_v3(batch)) == batch
    binary = encode_payload_v3(batch, binary=True)
    assert decode_payload_v3(binary) == batch


@given(packets)
def test_websocket_round_trip(packet: Packet) -> None:
    assert decode_ws_message_v3(encode_ws_message_v3(packet)) == packet


@given(st.one_of(st.text(), st.binary()))
def test_decoding_anything_raises_only_remote_protocol_error(data: str | bytes) -> None:
    for decode in (decode_payload_v3, decode_ws_message_v3):
        try:
            decode(data)
        except RemoteProtocolError:
            pass
