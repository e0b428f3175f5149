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
    is_valid_key,
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


# -- bounds on fragmented messages and on the buffer -------------------------------------------
def fragments(payload: bytes, size: int, opcode: int = OP_BINARY) -> bytes:
    """``payload`` as a message of frames of ``size`` bytes."""
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
    return b"".join(
        masked(opcode if i == 0 else 0, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    )


def test_message_of_exactly_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_message_size=1000)
    decoder.feed(masked(OP_TEXT, b"x" * 1000) + fragments(b"y" * 808, 202))
    # 808 bytes in 4 frames: 808 + 3 * 64 = 1000 charged, just within the limit
    assert events(decoder) == [Message("x" * 1000), Message(b"y" * 808)]
    decoder.feed(fragments(b"y" * 809, 203))
    with pytest.raises(WebSocketError) as info:
        events(decoder)
    assert info.value.close_code == 1009


def test_tiny_fragments_are_charged_their_overhead() -> None:
    decoder = FrameDecoder(max_message_size=1000)
    decoder.feed(masked(OP_BINARY, b"z" * 100))
    assert events(decoder) == [Message(b"z" * 100)]  # in one frame: fine
    decoder.feed(fragments(b"z" * 100, 1))  # in 100 frames: 100 + 99 * 64 bytes
    with pytest.raises(WebSocketError) as info:
        events(decoder)
    assert info.value.close_code == 1009


def test_fragment_count_is_capped() -> None:
    decoder = FrameDecoder(max_message_size=10**6, max_fragments=10)
    decoder.feed(fragments(b"a" * 10, 1))
    assert events(decoder) == [Message(b"a" * 10)]
    decoder.feed(fragments(b"a" * 11, 1))
    with pytest.raises(WebSocketError, match="too many fragments") as info:
        events(decoder)
    assert info.value.close_code == 1009


def test_flood_of_empty_continuation_frames_is_refused() -> None:
    decoder = FrameDecoder(max_message_size=10**9)
    decoder.feed(masked(OP_TEXT, b"", fin=False))
    empty = masked(0x0, b"", fin=False)
    with pytest.raises(WebSocketError) as info:
        for _ in range(10_000):
            decoder.feed(empty)
            events(decoder)
    assert info.value.close_code == 1009
    assert decoder.buffered <= len(empty)


def test_one_byte_fragments_cost_little_memory() -> None:
    """100,000 one-byte fragments are reassembled in place: about 100 kB, where a list of
    bytes objects would take several megabytes."""
    import tracemalloc

    payload = os.urandom(100_000)
    data = fragments(payload, 1)
    decoder = FrameDecoder(max_message_size=10**7, max_fragments=200_000)
    tracemalloc.start()
    try:
        found: list[object] = []
        for start in range(0, len(data), 65536):
            decoder.feed(data[start : start + 65536])
            found.extend(events(decoder))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == [Message(payload)]
    assert peak < 1_000_000


@given(
    st.lists(st.integers(min_value=0, max_value=3000), max_size=30),
    st.integers(min_value=1, max_value=5000),
)
def test_buffer_holds_at_most_one_message_plus_one_read(sizes: list[int], read: int) -> None:
    """Fed one read at a time, and only when no event is complete, the decoder holds at most
    the limit plus one read (plus a frame header)."""
    limit = 2000
    data = b"".join(masked(OP_BINARY, b"q" * size) for size in sizes)
    decoder = FrameDecoder(max_message_size=limit)
    try:
        for start in range(0, len(data), read):
            decoder.feed(data[start : start + read])
            assert decoder.buffered <= limit + read + 14
            events(decoder)
    except WebSocketError as exc:
        assert exc.close_code == 1009 and max(sizes) > limit
    else:
        assert max(sizes, default=0) <= limit


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_close_codes_a_peer_may_not_send(code: int) -> None:
    decoder = FrameDecoder()
    decoder.feed(masked(0x8, struct.pack("!H", code)))
    with pytest.raises(WebSocketError) as info:
        events(decoder)
    assert info.value.close_code == 1002


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999])
def test_close_codes_a_peer_may_send(code: int) -> None:
    decoder = FrameDecoder()
    decoder.feed(masked(0x8, struct.pack("!H", code)))
    assert events(decoder) == [Close(code, "")]


def test_handshake_keys() -> None:
    assert is_valid_key("dGhlIHNhbXBsZSBub25jZQ==")
    assert is_valid_key(" dGhlIHNhbXBsZSBub25jZQ== ")
    for bad in ("", "abc", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ==x", "é" * 24):
        assert not is_valid_key(bad)
    with pytest.raises(ValueError):
        accept_key("é" * 24)
