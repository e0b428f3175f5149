"""permessage-deflate, sans-IO: negotiation, compression, and bounded inflation (the
deflate bomb)."""

from __future__ import annotations

import gc
import os
import struct
import time
import tracemalloc
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_sio.protocol.deflate import (
    STEP,
    DeflateOptions,
    DeflateParams,
    Inflater,
    deflate_message,
    negotiate_deflate,
    parse_extensions,
)
from trio_sio.protocol.websocket import (
    FrameDecoder,
    Message,
    WebSocketError,
    encode_frame,
)

CHROME = "permessage-deflate; client_max_window_bits"
FIREFOX = "permessage-deflate"


def masked(first: int, payload: bytes) -> bytes:
    """A client frame: ``first`` is the first byte (FIN, RSV bits, opcode); zero mask."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", first, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, size)
    return head + b"\0\0\0\0" + payload


def decode_all(decoder: FrameDecoder, data: bytes) -> list[object]:
    decoder.feed(data)
    events = []
    while (event := decoder.next_event()) is not None:
        events.append(event)
    return events


# -- negotiation ------------------------------------------------------------------------
def test_parse_extensions() -> None:
    offers = parse_extensions(
        'permessage-deflate; client_max_window_bits="10" ;server_no_context_takeover, '
        "x-webkit-deflate-frame, , Permessage-Deflate"
    )
    assert offers == [
        (
            "permessage-deflate",
            [("client_max_window_bits", "10"), ("server_no_context_takeover", None)],
        ),
        ("x-webkit-deflate-frame", []),
        ("permessage-deflate", []),
    ]


@pytest.mark.parametrize(
    ("offer", "header", "bits"),
    [
        (CHROME, "permessage-deflate; server_no_context_takeover; client_no_context_takeover", 15),
        (FIREFOX, "permessage-deflate; server_no_context_takeover; client_no_context_takeover", 15),
        (
            "permessage-deflate; client_max_window_bits=12; server_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=10; client_max_window_bits=12",
            10,
        ),
        # not acceptable (window of 8, unknown or repeated parameter): the next offer is
        ("permessage-deflate; server_max_window_bits=8, " + FIREFOX, None, 15),
        ("permessage-deflate; foo, " + FIREFOX, None, 15),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", "", 0),
        ("permessage-deflate; client_max_window_bits=010", "", 0),
        ("permessage-deflate; server_max_window_bits", "", 0),
        ("permessage-deflate; client_no_context_takeover=1", "", 0),
        ("x-webkit-deflate-frame", "", 0),
    ],
)
def test_negotiation(offer: str, header: str | None, bits: int) -> None:
    agreed = negotiate_deflate(offer, DeflateOptions())
    if bits == 0:
        assert agreed is None
        return
    assert agreed is not None
    if header is not None:
        assert agreed.header == header
    assert agreed.server_window_bits == bits
    assert agreed.cacheable == (bits == 15)


def test_negotiation_with_client_context_takeover() -> None:
    options = DeflateOptions(client_no_context_takeover=False, threshold=10, level=1)
    agreed = negotiate_deflate(CHROME, options)
    assert agreed == DeflateParams(
        "permessage-deflate; server_no_context_takeover", 15, False, 10, 1
    )
    # the client asking for it gets it anyway
    agreed = negotiate_deflate(FIREFOX + "; client_no_context_takeover", options)
    assert agreed is not None and agreed.client_no_context_takeover
    assert negotiate_deflate(None, options) is None
    assert negotiate_deflate("", options) is None


def test_options_from_setting() -> None:
    assert DeflateOptions.from_setting(False) is None
    assert DeflateOptions.from_setting(True) == DeflateOptions()
    assert DeflateOptions.from_setting({"threshold": 0}) == DeflateOptions(threshold=0)
    with pytest.raises(ValueError, match="unknown"):
        DeflateOptions.from_setting({"treshold": 0})
    with pytest.raises(ValueError):
        DeflateOptions.from_setting({"level": 10})


# -- round trips ------------------------------------------------------------------------
@given(st.binary(max_size=5000), st.sampled_from([9, 12, 15]), st.integers(1, 4))
def test_round_trip_through_the_decoder(data: bytes, bits: int, pieces: int) -> None:
    compressed = deflate_message(data, 6, bits)
    decoder = FrameDecoder(1 << 20, inflater=Inflater())
    # the first frame carries RSV1, the continuation frames do not
    step = max(1, len(compressed) // pieces)
    chunks = [compressed[i : i + step] for i in range(0, len(compressed), step)] or [b""]
    wire = b""
    for index, chunk in enumerate(chunks):
        fin = 0x80 if index == len(chunks) - 1 else 0
        first = (0x42 | fin) if index == 0 else fin
        wire += masked(first, chunk)
    assert decode_all(decoder, wire) == [Message(data)]


def test_text_message_and_server_frame() -> None:
    text = "héllo " * 500
    payload = deflate_message(text.encode())
    assert len(payload) < 100
    decoder = FrameDecoder(inflater=Inflater())
    assert decode_all(decoder, masked(0xC1, payload)) == [Message(text)]
    frame = encode_frame(0x1, payload, rsv1=True)
    assert frame[0] == 0xC1  # FIN, RSV1, text
    assert zlib.decompressobj(-15).decompress(frame[2:] + b"\x00\x00\xff\xff") == text.encode()


def test_uncompressed_messages_still_pass() -> None:
    decoder = FrameDecoder(inflater=Inflater())
    assert decode_all(decoder, masked(0x81, b"4hi")) == [Message("4hi")]


def test_context_takeover_inflater_keeps_the_window() -> None:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)

    def message(data: bytes) -> bytes:
        return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]

    first, second = message(b"abcdefgh" * 50), message(b"abcdefgh" * 50)
    assert len(second) < len(first)  # refers back to the first message
    kept = FrameDecoder(inflater=Inflater(no_context_takeover=False))
    assert (
        decode_all(kept, masked(0xC2, first) + masked(0xC2, second))
        == [Message(b"abcdefgh" * 50)] * 2
    )
    fresh = FrameDecoder(inflater=Inflater(no_context_takeover=True))
    assert decode_all(fresh, masked(0xC2, first)) == [Message(b"abcdefgh" * 50)]
    with pytest.raises(WebSocketError) as caught:
        decode_all(fresh, masked(0xC2, second))
    assert caught.value.close_code == 1007


# -- refusals ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (masked(0x42, deflate_message(b"x")) + masked(0xC0, b""), 1002),  # RSV1 on continuation
        (masked(0xC9, b""), 1002),  # RSV1 on a ping
        (masked(0xA1, b"x"), 1002),  # RSV2
        (masked(0xC1, b"\xff\xff\xff"), 1007),  # not deflate data
        (masked(0xC1, deflate_message(b"\xff\xfe")), 1007),  # not UTF-8 once inflated
    ],
)
def test_refused(wire: bytes, code: int) -> None:
    with pytest.raises(WebSocketError) as caught:
        decode_all(FrameDecoder(inflater=Inflater()), wire)
    assert caught.value.close_code == code


def test_rsv1_without_the_extension_is_a_protocol_error() -> None:
    with pytest.raises(WebSocketError, match="no extension") as caught:
        decode_all(FrameDecoder(), masked(0xC1, deflate_message(b"x")))
    assert caught.value.close_code == 1002


def test_exactly_the_limit_passes_one_more_byte_does_not() -> None:
    limit = 10_000
    ok = FrameDecoder(limit, inflater=Inflater())
    assert decode_all(ok, masked(0xC2, deflate_message(b"a" * limit))) == [Message(b"a" * limit)]
    over = FrameDecoder(limit, inflater=Inflater())
    with pytest.raises(WebSocketError) as caught:
        decode_all(over, masked(0xC2, deflate_message(b"a" * (limit + 1))))
    assert caught.value.close_code == 1009


# -- the deflate bomb -------------------------------------------------------------------
def bomb(megabytes: int) -> bytes:
    """A raw deflate stream of ``megabytes`` MiB of zeros, built without inflating them:
    one fully flushed MiB (a self-contained run of blocks) repeated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * megabytes


def test_a_small_bomb_is_refused() -> None:
    """About 1 KB that would inflate to 1 MiB, against a 100 KB limit."""
    data = bomb(1)
    assert len(data) < 1100
    with pytest.raises(WebSocketError) as caught:
        decode_all(FrameDecoder(100_000, inflater=Inflater()), masked(0xC2, data))
    assert caught.value.close_code == 1009


def test_a_gigabyte_bomb_is_refused_quickly_with_bounded_memory() -> None:
    """A message under the default limit (1 MB) that would inflate to 950 MiB: refused
    with 1009 after inflating just past the limit, in milliseconds; the decoder's
    allocations peak at the frame (as fed, then unmasked) plus the limit and a few steps."""
    limit = 1_000_000
    data = bomb(950)
    assert len(data) < limit  # the compressed message itself is acceptable
    wire = masked(0xC2, data)
    gc.collect()
    tracemalloc.start()
    try:
        started = time.perf_counter()
        decoder = FrameDecoder(limit, inflater=Inflater())
        with pytest.raises(WebSocketError) as caught:
            decode_all(decoder, wire)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.close_code == 1009
    print(f"bomb: {len(data)} bytes -> 950 MiB, refused in {elapsed * 1000:.1f} ms, peak {peak}")
    assert elapsed < 1.0
    # the frame fed (copied into the buffer) and unmasked, then at most limit + 1 inflated
    assert peak < 2 * len(wire) + limit + 4 * STEP


@pytest.mark.parametrize("megabytes", [1, 1024])
def test_inflation_alone_stays_within_the_limit_and_a_few_steps(megabytes: int) -> None:
    """1 KB (to 1 MiB) or 1 MB (to 1 GiB): the inflater allocates the output up to the
    limit, and little more."""
    data = bomb(megabytes)
    limit = 100_000 if megabytes == 1 else 1_100_000
    gc.collect()
    tracemalloc.start()
    try:
        with pytest.raises(WebSocketError) as caught:
            Inflater().inflate(data, limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.close_code == 1009
    assert peak < limit + 4 * STEP


@pytest.mark.parametrize("size", [STEP - 1, STEP, 3 * STEP + 7])
def test_large_messages_in_several_steps(size: int) -> None:
    """Over a step in (random bytes do not shrink) and out (zeros do)."""
    for data in (os.urandom(size), bytes(size * 10)):
        payload = deflate_message(data)
        assert Inflater().inflate(payload, len(data)) == data
        with pytest.raises(WebSocketError):
            Inflater().inflate(payload, len(data) - 1)
