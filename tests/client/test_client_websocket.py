"""The client side of our WebSocket framing and of permessage-deflate, byte for byte against
the server side (which reads masked frames and writes unmasked ones)."""

from __future__ import annotations

import pytest

from trio_sio.protocol.deflate import (
    ClientDeflate,
    Inflater,
    accept_client_deflate,
    deflate_message,
)
from trio_sio.protocol.websocket import (
    OP_BINARY,
    OP_TEXT,
    ClientFrameDecoder,
    Close,
    FrameDecoder,
    Message,
    Ping,
    WebSocketError,
    encode_client_close,
    encode_client_frame,
    encode_close,
    encode_frame,
)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_client_frames_are_masked_and_read_by_the_server(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    frame = encode_client_frame(OP_BINARY, payload)
    assert frame[1] & 0x80  # masked
    decoder = FrameDecoder(max_message_size=1 << 20)
    decoder.feed(frame)
    assert decoder.next_event() == Message(payload)
    assert decoder.next_event() is None


def test_each_frame_has_its_own_mask() -> None:
    assert encode_client_frame(OP_TEXT, b"same") != encode_client_frame(OP_TEXT, b"same")


def test_masks_come_from_the_secure_source_4_kib_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each mask is the next 4 bytes of ``os.urandom`` output, read in 4 KiB blocks: one
    system call per 1,024 frames, no key used twice."""
    from trio_sio.protocol import websocket

    blocks: list[bytes] = []

    def urandom(size: int) -> bytes:
        block = bytes((len(blocks) * 7 + i) % 251 for i in range(size))
        blocks.append(block)
        return block

    monkeypatch.setattr(websocket.os, "urandom", urandom)
    masks = websocket._Masks()
    got = b"".join(masks.next() for _ in range(1025))
    assert [len(b) for b in blocks] == [4096, 4096]
    assert got == blocks[0] + blocks[1][:4]


@pytest.mark.parametrize("size", [0, 5, 125, 126, 70_000])
def test_server_frames_are_read_by_the_client(size: int) -> None:
    text = "é" * size
    decoder = ClientFrameDecoder(max_message_size=1 << 20)
    data = encode_frame(OP_TEXT, text.encode()) + encode_frame(0x9, b"hi") + encode_close(1001)
    for i in range(0, len(data), 1000):  # in pieces: a frame is whole only at its end
        decoder.feed(data[i : i + 1000])
    assert decoder.frame_ready or not data
    assert decoder.next_event() == Message(text)
    assert decoder.next_event() == Ping(b"hi")
    assert decoder.next_event() == Close(1001, "")
    assert decoder.next_event() is None


def test_the_client_refuses_masked_and_oversized_frames() -> None:
    decoder = ClientFrameDecoder()
    decoder.feed(encode_client_frame(OP_TEXT, b"masked"))
    with pytest.raises(WebSocketError, match="must not be masked"):
        decoder.next_event()
    small = ClientFrameDecoder(max_message_size=10)
    small.feed(encode_frame(OP_BINARY, b"x" * 11))
    with pytest.raises(WebSocketError) as info:
        small.next_event()
    assert info.value.close_code == 1009


def test_client_close_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_client_close(1000, "bye"))
    assert decoder.next_event() == Close(1000, "bye")


def test_compressed_frames_both_ways() -> None:
    agreed = ClientDeflate()
    text = b"compressible " * 200
    compressed = agreed.deflate(text)
    assert compressed is not None and len(compressed) < len(text) // 5
    server = FrameDecoder(inflater=Inflater())
    server.feed(encode_client_frame(OP_TEXT, compressed, rsv1=True))
    assert server.next_event() == Message(text.decode())
    client = ClientFrameDecoder(inflater=agreed.inflater())
    for _ in range(2):  # the server may keep its context: the client's inflater does too
        client.feed(encode_frame(OP_TEXT, deflate_message(text), rsv1=True))
        assert client.next_event() == Message(text.decode())


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("permessage-deflate", ClientDeflate(15, False)),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            ClientDeflate(15, True),
        ),
        ("permessage-deflate; client_max_window_bits=10", ClientDeflate(10, False)),
        ("permessage-deflate; server_max_window_bits=12", ClientDeflate(15, False)),
    ],
)
def test_accepting_the_servers_answer(header: str | None, expected: ClientDeflate | None) -> None:
    assert accept_client_deflate(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "x-webkit-deflate-frame",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; unknown=1",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_max_window_bits",
    ],
)
def test_refusing_an_answer_the_offer_does_not_allow(header: str) -> None:
    with pytest.raises(WebSocketError):
        accept_client_deflate(header)


def test_a_window_too_small_for_zlib_sends_plain() -> None:
    assert ClientDeflate(8, False).deflate(b"x" * 2000) is None
