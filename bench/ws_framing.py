"""Server-side cost of WebSocket framing: trio_sio's own RFC 6455 code against ``websockets``.

    python bench/ws_framing.py            # full counts, best of 5 repeats (a few seconds)
    python bench/ws_framing.py --quick    # a tenth of the counts, one repeat (smoke run)

Everything runs in this process, on bytes prepared up front: no sockets, no event loop.
Both implementations get exactly the same client bytes and produce the same server bytes.

- **trio_sio**: ``FrameDecoder`` (``feed`` what was read, then ``next_event`` until None, as
  the native WebSocket of the Engine.IO layer does) and ``encode_frame`` for the replies.
- **websockets**: the sans-IO ``ServerProtocol``, opened by a real client handshake request,
  then ``receive_data`` + ``events_received`` (+ ``data_to_send``, which a server must call
  after receiving) per read, and ``send_text`` / ``send_binary`` + ``data_to_send`` per
  reply. Its frames carry bytes, so text is decoded to ``str`` here, as trio_sio's decoder
  does itself (that is also where both check the UTF-8).

Workloads (the client frames are masked as a browser's are, each with its own random key;
the masking is done once, before anything is timed):

- small text: Socket.IO events such as ``42123["echo",{...}]``, one read per frame, each
  answered with an ack ``43123[...]`` in a text frame;
- 64 KiB binary: 65,536-byte binary messages, one read per frame, each echoed back;
- burst: the same small text events, 100 frames arriving in one read.

Each figure is microseconds per message, the best of the repeats; "total" is the best
receive time plus the best send time. Receiving covers unmasking, frame parsing, the size
limit check and the UTF-8 decoding; sending covers the UTF-8 encoding of text replies and
the frame header. Neither side compresses (no permessage-deflate offered, none agreed),
both accept messages up to 1 MiB, and both unmask with the same C function when the
``websockets`` C speedups are installed (the output says whether they were). The garbage
collector is off while timing, as ``timeit`` does. A first, untimed pass checks every
decoded message and every encoded frame against the originals.
"""

from __future__ import annotations

import argparse
import base64
import collections
import gc
import hashlib
import importlib.metadata
import itertools
import math
import operator
import platform
import random
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from websockets import frames as ws_frames
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from trio_sio.protocol import websocket as own_websocket
from trio_sio.protocol.websocket import OP_BINARY, OP_TEXT, FrameDecoder, Message, encode_frame

#: the largest message either implementation accepts.
MAX_SIZE: Final = 1 << 20
#: frames per read in the burst workload.
BURST: Final = 100
#: distinct payloads of the binary workload, cycled through (their frames stay in cache, as
#: freshly read data would be).
BINARY_POOL: Final = 16
BINARY_SIZE: Final = 65_536
PAD: Final = "x" * 16

#: opcodes, written out here so that building and checking frames owes nothing to either
#: implementation.
_TEXT: Final = 0x1
_BINARY: Final = 0x2

Sink = Callable[[object], None]
Reply = str | bytes


# --- the bytes both implementations see ---------------------------------------------------


def _xor_with_key(payload: bytes, key: bytes) -> bytes:
    return bytes(map(operator.xor, payload, itertools.cycle(key)))


def client_frame(opcode: int, payload: bytes, rng: random.Random) -> bytes:
    """One final frame as a client sends it: mask bit set, random key, payload XORed."""
    size = len(payload)
    first = 0x80 | opcode
    if size < 126:
        header = bytes((first, 0x80 | size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    key = rng.randbytes(4)
    return header + key + _xor_with_key(payload, key)


def read_server_frame(frame: bytes) -> tuple[int, bytes]:
    """Opcode and payload of one unmasked, final, uncompressed frame (raise otherwise)."""
    assert frame[0] & 0xF0 == 0x80, "FIN must be set, reserved bits clear"
    assert not frame[1] & 0x80, "a server frame must not be masked"
    size, offset = frame[1] & 0x7F, 2
    if size == 126:
        (size,) = struct.unpack_from("!H", frame, 2)
        offset = 4
    elif size == 127:
        (size,) = struct.unpack_from("!Q", frame, 2)
        offset = 10
    assert len(frame) == offset + size, "frame length does not match its header"
    return frame[0] & 0x0F, frame[offset:]


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    #: what each read returns: one or more masked client frames.
    reads: list[bytes]
    #: the messages those frames carry, in order (str for text, bytes for binary).
    messages: list[Reply]
    #: one reply per message.
    replies: list[Reply]


def _event(i: int) -> tuple[str, str]:
    body = f'{{"i":{i},"pad":"{PAD}"}}'
    return f'42{i}["echo",{body}]', f"43{i}[{body}]"


def small_text(count: int, rng: random.Random, burst: int = 1) -> Workload:
    messages: list[Reply] = []
    replies: list[Reply] = []
    frames: list[bytes] = []
    for i in range(count):
        message, reply = _event(i)
        messages.append(message)
        replies.append(reply)
        frames.append(client_frame(_TEXT, message.encode(), rng))
    reads = [b"".join(frames[i : i + burst]) for i in range(0, count, burst)]
    name = "small text" if burst == 1 else f"burst of {burst}"
    return Workload(name, reads, messages, replies)


def big_binary(count: int, rng: random.Random) -> Workload:
    payloads = [rng.randbytes(BINARY_SIZE) for _ in range(BINARY_POOL)]
    pool = [client_frame(_BINARY, payload, rng) for payload in payloads]
    reads = [pool[i % BINARY_POOL] for i in range(count)]
    messages: list[Reply] = [payloads[i % BINARY_POOL] for i in range(count)]
    return Workload("64 KiB binary", reads, messages, list(messages))


# --- the two implementations --------------------------------------------------------------


class Implementation(Protocol):
    name: str

    def reset(self) -> None:
        """A fresh connection, ready for messages (not timed)."""

    def receive(self, reads: Sequence[bytes], sink: Sink) -> None:
        """Decode every read, passing each message to ``sink``."""

    def send(self, replies: Sequence[Reply], sink: Sink) -> None:
        """Encode every reply, passing what is to be written to ``sink``."""

    def check(self) -> None:
        """Raise if the connection saw a protocol error."""


class OwnFraming:
    """trio_sio's decoder and encoder, used the way its native WebSocket uses them."""

    name = "trio_sio"

    def __init__(self) -> None:
        self._decoder = FrameDecoder(MAX_SIZE)

    def reset(self) -> None:
        self._decoder = FrameDecoder(MAX_SIZE)

    def receive(self, reads: Sequence[bytes], sink: Sink) -> None:
        decoder = self._decoder
        for data in reads:
            decoder.feed(data)
            while (event := decoder.next_event()) is not None:
                if type(event) is not Message:
                    raise AssertionError(f"unexpected event {event!r}")
                sink(event.data)

    def send(self, replies: Sequence[Reply], sink: Sink) -> None:
        for reply in replies:
            if isinstance(reply, str):
                sink(encode_frame(OP_TEXT, reply.encode("utf-8")))
            else:
                sink(encode_frame(OP_BINARY, reply))

    def check(self) -> None:
        assert self._decoder.buffered == 0, "bytes left over in the decoder"


def _handshake_request(rng: random.Random) -> tuple[bytes, str]:
    key = base64.b64encode(rng.randbytes(16)).decode("ascii")
    lines = [
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1",
        "Host: localhost:3000",
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Origin: http://localhost:3000",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Key: {key}",
        "",
        "",
    ]
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    accept = base64.b64encode(hashlib.sha1(key.encode("ascii") + guid).digest()).decode()
    return "\r\n".join(lines).encode("ascii"), accept


class WebsocketsFraming:
    """The sans-IO server protocol of ``websockets``, after an opening handshake."""

    name = "websockets"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._protocol = self._open()

    def _open(self) -> ServerProtocol:
        protocol = ServerProtocol(max_size=MAX_SIZE)
        request_bytes, accept = _handshake_request(self._rng)
        protocol.receive_data(request_bytes)
        (request,) = protocol.events_received()
        assert isinstance(request, Request)
        response = protocol.accept(request)
        assert response.status_code == 101, response
        assert response.headers["Sec-WebSocket-Accept"] == accept
        protocol.send_response(response)
        assert b"".join(protocol.data_to_send()).startswith(b"HTTP/1.1 101 ")
        assert protocol.state is State.OPEN
        return protocol

    def reset(self) -> None:
        self._protocol = self._open()

    def receive(self, reads: Sequence[bytes], sink: Sink) -> None:
        protocol = self._protocol
        for data in reads:
            protocol.receive_data(data)
            for event in protocol.events_received():
                if not isinstance(event, Frame) or not event.fin:
                    raise AssertionError(f"unexpected event {event!r}")
                if event.opcode is Opcode.TEXT:
                    sink(str(event.data, "utf-8"))
                elif event.opcode is Opcode.BINARY:
                    sink(event.data)
                else:
                    raise AssertionError(f"unexpected frame {event!r}")
            # A pong or a close frame would be waiting here; none is expected.
            if protocol.data_to_send():
                raise AssertionError("the protocol wants to write while receiving")

    def send(self, replies: Sequence[Reply], sink: Sink) -> None:
        protocol = self._protocol
        for reply in replies:
            if isinstance(reply, str):
                protocol.send_text(reply.encode("utf-8"))
            else:
                protocol.send_binary(reply)
            sink(protocol.data_to_send())

    def check(self) -> None:
        # It never raises on bad input: it records the error and queues a close frame.
        protocol = self._protocol
        assert protocol.parser_exc is None, protocol.parser_exc
        assert protocol.state is State.OPEN
        assert not protocol.reader.buffer, "bytes left over in the reader"


# --- checking and timing ------------------------------------------------------------------


def _frame_bytes(output: object) -> bytes:
    if isinstance(output, bytes):
        return output
    assert isinstance(output, list) and all(isinstance(part, bytes) for part in output)
    return b"".join(output)


def verify(impl: Implementation, workload: Workload) -> None:
    """One untimed pass: every message decoded and every reply encoded correctly."""
    impl.reset()
    decoded: list[object] = []
    impl.receive(workload.reads, decoded.append)
    impl.check()
    assert len(decoded) == len(workload.messages), f"{impl.name}: wrong message count"
    for got, want in zip(decoded, workload.messages, strict=True):
        assert type(got) is type(want) and got == want, f"{impl.name}: {got!r} != {want!r}"
    written: list[object] = []
    impl.send(workload.replies, written.append)
    impl.check()
    for output, reply in zip(written, workload.replies, strict=True):
        opcode, payload = read_server_frame(_frame_bytes(output))
        if isinstance(reply, str):
            assert (opcode, payload) == (_TEXT, reply.encode()), f"{impl.name}: bad text frame"
        else:
            assert (opcode, payload) == (_BINARY, reply), f"{impl.name}: bad binary frame"


@dataclass(slots=True)
class Timing:
    receive: float = math.inf
    send: float = math.inf


def measure(impls: Sequence[Implementation], workload: Workload, repeats: int) -> dict[str, Timing]:
    """Best receive and send times (seconds) of each implementation; they take turns."""
    best = {impl.name: Timing() for impl in impls}
    last: collections.deque[object] = collections.deque(maxlen=1)  # keeps one result alive
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for impl in impls:
                impl.reset()
                start = time.perf_counter()
                impl.receive(workload.reads, last.append)
                middle = time.perf_counter()
                impl.send(workload.replies, last.append)
                end = time.perf_counter()
                impl.check()
                last.clear()
                timing = best[impl.name]
                timing.receive = min(timing.receive, middle - start)
                timing.send = min(timing.send, end - middle)
    finally:
        if was_enabled:
            gc.enable()
    return best


def _speedups_loaded() -> bool:
    try:
        from websockets import speedups  # noqa: PLC0415 - an optional C extension
    except ImportError:
        return False
    # what the frame parser calls: the C function when the import there succeeded
    return getattr(ws_frames, "apply_mask", None) is speedups.apply_mask


def main() -> None:
    parser = argparse.ArgumentParser(description="WebSocket framing micro-benchmark.")
    parser.add_argument(
        "--quick", action="store_true", help="a tenth of the counts, one repeat (smoke run)"
    )
    args = parser.parse_args()
    scale, repeats = (10, 1) if args.quick else (1, 5)

    rng = random.Random(6455)
    workloads = [
        small_text(20_000 // scale, rng),
        big_binary(2_000 // scale, rng),
        small_text(20_000 // scale, rng, burst=BURST),
    ]
    impls: list[Implementation] = [OwnFraming(), WebsocketsFraming(rng)]

    speedups = _speedups_loaded()
    own_c = getattr(own_websocket, "_apply_mask", None) is not None
    print(
        f"Python {platform.python_version()}, websockets {importlib.metadata.version('websockets')}"
    )
    print(f"websockets C speedups: {'loaded' if speedups else 'NOT loaded (pure Python)'}")
    print(f"trio_sio unmasking: {'C (websockets speedups)' if own_c else 'pure Python'}")
    print(f"best of {repeats}, microseconds per message, garbage collector off while timing")
    print()

    header = f"{'workload':<15} {'messages':>8}  {'implementation':<16}"
    header += f" {'receive':>8} {'send':>8} {'total':>8}"
    print(header)
    print("-" * len(header))
    for workload in workloads:
        for impl in impls:
            verify(impl, workload)
        timings = measure(impls, workload, repeats)
        count = len(workload.messages)
        rows: dict[str, tuple[float, float, float]] = {}
        for impl in impls:
            timing = timings[impl.name]
            receive = timing.receive / count * 1e6
            send = timing.send / count * 1e6
            rows[impl.name] = (receive, send, receive + send)
        own, theirs = rows[OwnFraming.name], rows[WebsocketsFraming.name]
        ratio = tuple(b / a for a, b in zip(own, theirs, strict=True))
        lines = [
            (OwnFraming.name, "{:8.2f}", own),
            (WebsocketsFraming.name, "{:8.2f}", theirs),
            ("websockets/own", "{:7.2f}x", ratio),
        ]
        for i, (label, cell, values) in enumerate(lines):
            first = f"{workload.name:<15} {count:>8}" if i == 0 else " " * 24
            print(f"{first}  {label:<16} " + " ".join(cell.format(v) for v in values))
        print()


if __name__ == "__main__":
    main()
