"""Compression on the standalone server, over loopback: permessage-deflate on the native
WebSocket (negotiation, compressed frames both ways, the threshold, ``compress(False)``,
the deflate bomb) and gzip/deflate of polling responses."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import logging
import os
import pickle
import re
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import trio

import trio_sio
from trio_sio.adapters.base import BroadcastOptions
from trio_sio.engineio import EngineServer, EngineSocket
from trio_sio.engineio.transports import _deflated_frame
from trio_sio.frontends.standalone import serve
from trio_sio.protocol.deflate import DeflateParams, deflate_message
from trio_sio.protocol.engineio import Packet, PacketType, mark_uncompressed, may_compress

OFFER = "permessage-deflate; client_max_window_bits"
BIG = "x" * 5000  # over the 1024-byte threshold, and compresses to a few dozen bytes


@pytest.fixture(autouse=True)
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG, logger="trio_sio")
    yield
    errors = [
        r
        for r in caplog.get_records("call")
        if r.name.startswith("trio_sio") and r.levelno >= logging.ERROR
    ]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


async def echo(socket: EngineSocket) -> None:
    async for message in socket:
        await socket.send(message)


async def start(nursery: trio.Nursery, **options: Any) -> int:
    options.setdefault("close_timeout", 0.1)  # the clients here never answer a CLOSE
    server = EngineServer(echo, **options)
    listeners = await nursery.start(serve, server, "127.0.0.1", 0)
    return int(listeners[0].socket.getsockname()[1])


class RawWebSocket:
    """A WebSocket client written out by hand, to see the RSV1 bit of each frame."""

    def __init__(self, stream: trio.SocketStream, head: str, rest: bytes) -> None:
        self.stream = stream
        self.head = head
        self.buffer = bytearray(rest)

    @classmethod
    async def open(
        cls, port: int, extensions: str | None, path: str = "/engine.io/"
    ) -> RawWebSocket:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        offer = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
        await stream.send_all(
            f"GET {path}?EIO=4&transport=websocket HTTP/1.1\r\nHost: localhost\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\n{offer}\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            assert chunk, "closed during the handshake"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        return cls(stream, head.decode("latin-1"), rest)

    @property
    def extensions(self) -> str | None:
        found = re.search(r"(?im)^sec-websocket-extensions: *(.*?)\r?$", self.head)
        return None if found is None else found.group(1)

    async def _need(self, size: int) -> None:
        while len(self.buffer) < size:
            chunk = await self.stream.receive_some(1 << 20)
            if not chunk:
                raise EOFError
            self.buffer += chunk

    async def frame(self) -> tuple[int, bytes]:
        """The next frame: its first byte, and its payload as sent."""
        await self._need(2)
        first, size = self.buffer[0], self.buffer[1] & 0x7F
        offset = 2
        if size == 126:
            await self._need(4)
            (size,) = struct.unpack_from("!H", self.buffer, 2)
            offset = 4
        elif size == 127:
            await self._need(10)
            (size,) = struct.unpack_from("!Q", self.buffer, 2)
            offset = 10
        await self._need(offset + size)
        payload = bytes(self.buffer[offset : offset + size])
        del self.buffer[: offset + size]
        return first, payload

    async def message(self) -> tuple[bool, str]:
        """The next text message, and whether it came compressed."""
        first, payload = await self.frame()
        assert first & 0x0F == 0x1, hex(first)
        compressed = bool(first & 0x40)
        if compressed:
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        return compressed, payload.decode()

    async def send(self, text: str, *, compress: bool = False) -> None:
        payload = text.encode()
        first = 0x81
        if compress:
            payload, first = deflate_message(payload), 0xC1
        await self.send_frame(first, payload)

    async def send_frame(self, first: int, payload: bytes) -> None:
        size = len(payload)
        if size < 126:
            head = struct.pack("!BB", first, 0x80 | size)
        elif size < 1 << 16:
            head = struct.pack("!BBH", first, 0x80 | 126, size)
        else:
            head = struct.pack("!BBQ", first, 0x80 | 127, size)
        await self.stream.send_all(head + b"\0\0\0\0" + payload)

    async def close_code(self) -> int:
        """Read until the close frame; its status."""
        while True:
            first, payload = await self.frame()
            if first & 0x0F == 0x8:
                return int(struct.unpack("!H", payload[:2])[0])


# -- permessage-deflate -----------------------------------------------------------------
async def test_negotiated_and_used_both_ways(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        port = await start(nursery, per_message_deflate=True)
        ws = await RawWebSocket.open(port, OFFER)
        assert ws.extensions == (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        )
        compressed, text = await ws.message()
        assert text.startswith("0{") and not compressed  # the open packet: under 1024 bytes
        await ws.send("4" + BIG, compress=True)
        assert await ws.message() == (True, "4" + BIG)
        await ws.send("4" + BIG)  # an uncompressed message is fine too
        assert await ws.message() == (True, "4" + BIG)
        await ws.send("4small", compress=True)
        assert await ws.message() == (False, "4small")


async def test_threshold_and_context_takeover_settings(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        settings = {"threshold": 0, "client_no_context_takeover": False}
        port = await start(nursery, per_message_deflate=settings)
        ws = await RawWebSocket.open(port, "permessage-deflate; server_max_window_bits=10")
        assert ws.extensions == "permessage-deflate; server_no_context_takeover; " + (
            "server_max_window_bits=10"
        )
        compressed, text = await ws.message()
        assert compressed and text.startswith("0{")
        # the client keeps its context: the second message refers to the first
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        for _ in range(2):
            data = compressor.compress(b"4" + BIG.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
            await ws.send_frame(0xC1, data[:-4])
            assert await ws.message() == (True, "4" + BIG)


async def test_off_by_default_and_rsv1_refused(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        port = await start(nursery)
        ws = await RawWebSocket.open(port, OFFER)
        assert ws.extensions is None
        await ws.message()
        await ws.send("4" + BIG, compress=True)
        assert await ws.close_code() == 1002


async def test_client_without_the_offer_gets_plain_frames(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        port = await start(nursery, per_message_deflate=True)
        ws = await RawWebSocket.open(port, None)
        assert ws.extensions is None
        await ws.message()
        await ws.send("4" + BIG)
        assert await ws.message() == (False, "4" + BIG)


async def test_deflate_bomb_over_the_network(nursery: trio.Nursery) -> None:
    """About 1 MB on the wire that would inflate to 1 GiB: closed with 1009 at once."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    data = block * 1024
    with trio.fail_after(10):
        port = await start(nursery, per_message_deflate=True, max_http_buffer_size=1_100_000)
        ws = await RawWebSocket.open(port, OFFER)
        await ws.message()
        started = time.perf_counter()
        await ws.send_frame(0xC2, data)
        assert await ws.close_code() == 1009
        assert time.perf_counter() - started < 2.0


def test_compressed_frame_is_cached_per_packet() -> None:
    full = DeflateParams("permessage-deflate", 15)
    packet = Packet(PacketType.MESSAGE, BIG)
    frame = _deflated_frame(packet, full)
    assert frame[0] == 0xC1 and getattr(packet, "deflate_cache", None) is frame
    assert _deflated_frame(packet, full) is frame  # a broadcast compresses once
    narrow = DeflateParams("permessage-deflate", 10)
    assert _deflated_frame(packet, narrow) is not frame  # a smaller window: its own
    small = Packet(PacketType.MESSAGE, "hi")
    assert _deflated_frame(small, full)[0] == 0x81
    flagged = mark_uncompressed(Packet(PacketType.MESSAGE, BIG))
    assert _deflated_frame(flagged, full)[0] == 0x81
    assert not hasattr(flagged, "deflate_cache")
    binary = Packet(PacketType.MESSAGE, bytes(3000))
    assert _deflated_frame(binary, full)[0] == 0xC2


# -- Socket.IO: the compress flag -------------------------------------------------------
async def test_compress_flag_on_socket_and_broadcast(nursery: trio.Nursery) -> None:
    sio = trio_sio.Server(per_message_deflate=True, close_timeout=0.1)

    @sio.on("go")
    async def go(socket: trio_sio.Socket) -> None:
        await socket.emit("a", BIG)
        await socket.compress(False).emit("b", BIG)
        await socket.compress(False).timeout(5).compress(True).emit("c", BIG)
        await sio.emit("d", BIG)
        await sio.compress(False).emit("e", BIG)
        await sio.to(socket.id).compress(False).emit("f", BIG)
        replies = await sio.compress(False).timeout(5).emit_with_ack("g", BIG)
        await socket.compress(False).emit("done", replies)

    with trio.fail_after(10):
        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        ws = await RawWebSocket.open(port, OFFER, "/socket.io/")
        await ws.message()
        await ws.send("40")
        assert (await ws.message())[1].startswith("40")
        await ws.send('42["go"]')
        seen = {}
        for _ in range(6):
            compressed, text = await ws.message()
            event, data = json.loads(text[2:])
            assert data == BIG
            seen[event] = compressed
        assert seen == {"a": True, "b": False, "c": True, "d": True, "e": False, "f": False}
        compressed, text = await ws.message()  # a broadcast waiting for acks
        ack_id = re.match(r"42(\d+)\[", text)
        assert ack_id is not None and not compressed
        assert json.loads(text[ack_id.end() - 1 :]) == ["g", BIG]
        await ws.send(f'43{ack_id.group(1)}["ok"]')
        assert await ws.message() == (False, '42["done",["ok"]]')


# -- polling ----------------------------------------------------------------------------
async def poll(
    stream: trio.SocketStream, target: str, *headers: str
) -> tuple[dict[str, list[str]], bytes]:
    extra = "".join(f"{h}\r\n" for h in headers)
    await stream.send_all(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        assert chunk
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    fields: dict[str, list[str]] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    length = int(fields["content-length"][0])
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        assert chunk
        body += chunk
    return fields, body


async def open_polling(port: int, sio: trio_sio.Server) -> tuple[trio.SocketStream, str]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    _, body = await poll(stream, "/socket.io/?EIO=4&transport=polling")
    sid = json.loads(body[1:])["sid"]
    await stream.send_all(
        f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: localhost\r\n"
        "Content-Length: 2\r\n\r\n40".encode()
    )
    await poll_rest(stream)
    return stream, f"/socket.io/?EIO=4&transport=polling&sid={sid}"


async def poll_rest(stream: trio.SocketStream) -> None:
    data = b""
    while not data.endswith(b"ok"):
        data += await stream.receive_some(65536)


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        ("gzip, deflate, br", "gzip"),
        ("deflate", "deflate"),
        ("gzip;q=0.5, deflate", "deflate"),
        ("*", "gzip"),
        ("gzip;q=0, deflate;q=0", None),
        ("identity", None),
        (None, None),
    ],
)
async def test_polling_response_compression(
    nursery: trio.Nursery, accept: str | None, coding: str | None
) -> None:
    sio = trio_sio.Server(close_timeout=0.1)
    ready = trio.Event()
    sockets: list[trio_sio.Socket] = []

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket) -> None:
        sockets.append(socket)
        ready.set()

    with trio.fail_after(10):
        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        stream, target = await open_polling(listeners[0].socket.getsockname()[1], sio)
        headers = [f"Accept-Encoding: {accept}"] if accept is not None else []
        fields, body = await poll(stream, target, *headers)  # the CONNECT answer: small
        assert "content-encoding" not in fields and "vary" not in fields
        await ready.wait()
        await sockets[0].emit("big", BIG)
        fields, body = await poll(stream, target, *headers)
        assert fields["vary"] == ["Accept-Encoding"]
        assert fields.get("content-encoding") == ([coding] if coding else None)
        if coding == "gzip":
            body = gzip.decompress(body)
        elif coding == "deflate":
            body = zlib.decompress(body)
        assert json.loads(body[2:]) == ["big", BIG]
        # compress(False): not compressed, whatever the request accepts
        await sockets[0].compress(False).emit("big", BIG)
        fields, body = await poll(stream, target, *headers)
        assert "content-encoding" not in fields and "vary" not in fields
        assert json.loads(body[2:]) == ["big", BIG]


@pytest.mark.parametrize(("setting", "compressed"), [(False, False), (6000, False), (100, True)])
async def test_polling_compression_settings(
    nursery: trio.Nursery, setting: bool | int, compressed: bool
) -> None:
    sio = trio_sio.Server(http_compression=setting, close_timeout=0.1)
    sockets: list[trio_sio.Socket] = []
    ready = trio.Event()

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket) -> None:
        sockets.append(socket)
        ready.set()

    with trio.fail_after(10):
        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        stream, target = await open_polling(listeners[0].socket.getsockname()[1], sio)
        await poll(stream, target)
        await ready.wait()
        await sockets[0].emit("big", BIG)
        fields, body = await poll(stream, target, "Accept-Encoding: gzip")
        assert ("content-encoding" in fields) == compressed
        if compressed:
            body = gzip.decompress(body)
        assert json.loads(body[2:]) == ["big", BIG]


async def test_large_polling_response_compressed_in_a_thread(nursery: trio.Nursery) -> None:
    sio = trio_sio.Server(max_buffer_bytes=10_000_000, close_timeout=0.1)
    sockets: list[trio_sio.Socket] = []
    ready = trio.Event()

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket) -> None:
        sockets.append(socket)
        ready.set()

    with trio.fail_after(10):
        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        stream, target = await open_polling(listeners[0].socket.getsockname()[1], sio)
        await poll(stream, target)
        await ready.wait()
        large = os.urandom(200_000).hex()  # 400 KB, over THREAD_FROM
        await sockets[0].emit("big", large)
        fields, body = await poll(stream, target, "Accept-Encoding: gzip")
        assert fields["content-encoding"] == ["gzip"]
        assert json.loads(gzip.decompress(body)[2:]) == ["big", large]


def test_packet_compress_flag_copy_and_pickle() -> None:
    """The flag and the cache are slots left unset until needed (free when a packet is
    made): copies and pickles keep what is set, and only that."""
    plain = Packet(PacketType.MESSAGE, "x")
    flagged = mark_uncompressed(Packet(PacketType.MESSAGE, "x"))
    assert may_compress(plain) and not may_compress(flagged)
    assert plain == flagged  # the flag is not part of the value
    for packet in (plain, flagged):
        for twin in (copy.copy(packet), pickle.loads(pickle.dumps(packet))):
            assert twin == packet and may_compress(twin) == may_compress(packet)
            assert not hasattr(twin, "deflate_cache")


def test_broadcast_compress_flag_on_the_redis_wire() -> None:
    """As the JS adapter sends it: ``flags.compress`` false, absent when true."""
    wire = pytest.importorskip("trio_sio.adapters._redis_wire")
    off = BroadcastOptions(rooms=frozenset({"r"}), compress=False)
    assert wire.options_to_wire(off)["flags"] == {"compress": False}
    assert wire.options_to_wire(BroadcastOptions())["flags"] == {}
    assert wire.options_from_wire(wire.options_to_wire(off)) == off
    assert wire.options_from_wire({"flags": {"compress": True}}).compress
    assert wire.options_from_wire({"flags": {}}).compress
