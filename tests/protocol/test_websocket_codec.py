"""Server-side WebSocket framing (RFC 6455): exact bytes, errors and properties."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_sio.protocol.errors import RemoteProtocolError
from trio_sio.protocol.websocket import (
    OP_BINARY,
    OP_TEXT,
    Close,
    FrameDecoder,
    Message,
    Ping,
    Pong,
    WebSocketError,
    accept_key,
    encode_close,
    encode_frame,
)


def masked(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes = b"\x37\xfa\x21\x3d"
) -> bytes:
    """A client frame (masked), as a browser sends it."""
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, size)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def events(decoder: FrameDecoder) -> list[object]:
    found = []
    while (event := decoder.next_event()) is not None:
        found.append(event)
    return found


def test_rfc_examples() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    decoder = FrameDecoder()
    decoder.feed(bytes.fromhex("818537fa213d7f9f4d5158"))  # the RFC's masked "Hello"
    assert events(decoder) == [Message("Hello")]
    assert encode_frame(OP_TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")
    assert encode_frame(OP_BINARY, b"x" * 256)[:4] == bytes.fromhex("827e0100")
    assert encode_frame(OP_BINARY, b"x" * 65536)[:10] == bytes.fromhex("827f0000000000010000")
    assert encode_close(1000) == bytes.fromhex("880203e8")


def test_byte_by_byte_fragmented_with_control_frames_between() -> None:
    data = (
        masked(OP_TEXT, "héllo ".encode(), fin=False)
        + masked(0x9, b"ping!")
        + masked(0x0, "wörld".encode())
        + masked(OP_BINARY, b"\x00" * 300)
        + masked(OP_BINARY, os.urandom(70_000))[:0]
        + masked(0xA, b"")
        + masked(0x8, struct.pack("!H", 1001) + b"bye")
    )
    decoder = FrameDecoder()
    found: list[object] = []
    for byte in data:
        decoder.feed(bytes((byte,)))
        found.extend(events(decoder))
    assert found == [
        Ping(b"ping!"),
        Message("héllo wörld"),
        Message(b"\x00" * 300),
        Pong(b""),
        Close(1001, "bye"),
    ]


def test_large_message_with_64_bit_length() -> None:
    payload = os.urandom(70_000)
    decoder = FrameDecoder(max_message_size=100_000)
    decoder.feed(masked(OP_BINARY, payload))
    assert events(decoder) == [Message(payload)]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (bytes((0x81, 0x05)) + b"Hello", 1002),  # not masked
        (masked(0x1 | 0x40, b"x"), 1002),  # reserved bit
        (masked(0x3, b"x"), 1002),  # unknown opcode
        (masked(0x0, b"x"), 1002),  # continuation without a message
        (masked(0x9, b"x", fin=False), 1002),  # fragmented control frame
        (masked(0x9, b"x" * 126), 1002),  # control frame too long
        (masked(0x8, b"\x03"), 1002),  # one-byte close body
        (masked(OP_TEXT, b"\xff\xfe"), 1007),  # bad UTF-8
        (masked(OP_BINARY, b"x" * 2000), 1009),  # too big
        (masked(OP_TEXT, b"x" * 1000, fin=False) + masked(0x0, b"x" * 1001), 1009),
        (masked(OP_TEXT, b"a", fin=False) + masked(OP_TEXT, b"b"), 1002),
    ],
)
def test_protocol_errors_carry_the_close_code(frame: bytes, code: int) -> None:
    decoder = FrameDecoder(max_message_size=2000 if code != 1009 or len(frame) < 2000 else 1500)
    decoder.feed(frame)
    with pytest.raises(WebSocketError) as info:
        events(decoder)
    assert info.value.close_code == code


def test_declared_size_over_limit_fails_before_the_body_arrives() -> None:
    decoder = FrameDecoder(max_message_size=1000)
    decoder.feed(struct.pack("!BBQ", 0x82, 0x80 | 127, 10**12))
    with pytest.raises(WebSocketError) as info:
        decoder.next_event()
    assert info.value.close_code == 1009


@given(
    st.lists(st.one_of(st.text(), st.binary()), max_size=5),
    st.binary(min_size=4, max_size=4),
    st.integers(min_value=1, max_value=7),
)
def test_round_trip_any_fragmentation(
    messages: list[str | bytes], mask: bytes, pieces: int
) -> None:
    stream = b""
    for message in messages:
        payload = message.encode() if isinstance(message, str) else message
        opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
        step = max(1, len(payload) // pieces)
        chunks = [payload[i : i + step] for i in range(0, len(payload), step)] or [b""]
        for index, chunk in enumerate(chunks):
            stream += masked(
                opcode if index == 0 else 0, chunk, fin=index == len(chunks) - 1, mask=mask
            )
    decoder = FrameDecoder()
    decoder.feed(stream)
    assert events(decoder) == [Message(m) for m in messages]


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes) -> None:
    decoder = FrameDecoder(max_message_size=1000)
    decoder.feed(data)
    try:
        events(decoder)
    except RemoteProtocolError:
        pass


@given(st.binary(max_size=2000), st.binary(min_size=4, max_size=4))
def test_python_unmasking_matches_the_definition(data: bytes, mask: bytes) -> None:
    from trio_sio.protocol.websocket import _unmask, _unmask_python

    expected = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert _unmask_python(data, mask) == expected
    assert _unmask(bytearray(data), mask) == expected
