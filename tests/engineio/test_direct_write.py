"""Direct writes: a packet sent while nothing is queued or being written goes out from the
sending task, without waking the session's send task. What the socket does not take at once
is kept, counted against the send queue's bound, and written first by the next write.

Over real socket pairs with small kernel buffers, so that partial writes happen for sure.
"""

from __future__ import annotations

import socket as stdlib_socket
import struct

import trio

from trio_sio.engineio._inline import run_inline
from trio_sio.engineio.config import EngineConfig
from trio_sio.engineio.memory import request_head
from trio_sio.engineio.socket import EngineSocket
from trio_sio.engineio.transports import WebSocketTransport
from trio_sio.engineio.websocket import NativeWebSocket
from trio_sio.protocol.engineio import Packet, PacketType
from trio_sio.protocol.websocket import OP_TEXT, FrameDecoder, encode_frame

BIG = 4_000_000


def small_buffered_pair() -> tuple[trio.SocketStream, stdlib_socket.socket]:
    """A server-side Trio stream and the peer's plain blocking socket."""
    ours, theirs = stdlib_socket.socketpair()
    for sock in (ours, theirs):
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 16384)
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 16384)
    return trio.SocketStream(trio.socket.from_stdlib_socket(ours)), theirs


async def read_frames(peer: stdlib_socket.socket, count: int) -> list[tuple[int, bytes]]:
    """Read ``count`` unmasked frames (opcode, payload) in a thread."""

    def read() -> list[tuple[int, bytes]]:
        buffer = bytearray()
        frames: list[tuple[int, bytes]] = []
        while len(frames) < count:
            while True:
                if len(buffer) >= 2:
                    size, start = buffer[1] & 0x7F, 2
                    if size == 126:
                        (size,) = struct.unpack("!H", buffer[2:4])
                        start = 4
                    elif size == 127:
                        (size,) = struct.unpack("!Q", buffer[2:10])
                        start = 10
                    if len(buffer) >= start + size:
                        frames.append((buffer[0] & 0x0F, bytes(buffer[start : start + size])))
                        del buffer[: start + size]
                        break
                chunk = peer.recv(65536)
                assert chunk, "the server closed early"
                buffer += chunk
        return frames

    return await trio.to_thread.run_sync(read)


async def test_what_the_socket_does_not_take_is_written_first_by_the_next_write() -> None:
    stream, peer = small_buffered_pair()
    ws = NativeWebSocket(stream, b"", max_message_size=1_000_000)
    first = encode_frame(OP_TEXT, b"a" * BIG)
    kept = ws.try_write([first, encode_frame(OP_TEXT, b"b")])
    assert kept is not None and 0 < kept < BIG
    # Another direct write must not overtake what is kept.
    assert ws.try_write([encode_frame(OP_TEXT, b"never")]) is None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.send_frames, encode_frame(OP_TEXT, b"c"))
        frames = await read_frames(peer, 3)
    assert frames == [(OP_TEXT, b"a" * BIG), (OP_TEXT, b"b"), (OP_TEXT, b"c")]
    assert ws.try_write([encode_frame(OP_TEXT, b"d")]) == 0  # nothing kept any more
    assert await read_frames(peer, 1) == [(OP_TEXT, b"d")]
    peer.close()
    await stream.aclose()


async def test_a_direct_write_waits_its_turn_behind_a_write_under_way() -> None:
    stream, peer = small_buffered_pair()
    ws = NativeWebSocket(stream, b"", max_message_size=1_000_000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.send_frames, encode_frame(OP_TEXT, b"x" * BIG))
        await trio.testing.wait_all_tasks_blocked()  # that write fills the socket and waits
        assert ws.try_write([encode_frame(OP_TEXT, b"y")]) is None
        frames = await read_frames(peer, 1)
    assert frames == [(OP_TEXT, b"x" * BIG)]
    peer.close()
    await stream.aclose()


async def test_the_close_frame_comes_after_what_was_kept() -> None:
    stream, peer = small_buffered_pair()
    ws = NativeWebSocket(stream, b"", max_message_size=1_000_000)
    assert ws.try_write([encode_frame(OP_TEXT, b"z" * BIG)])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.aclose)
        frames = await read_frames(peer, 2)
    assert frames[0] == (OP_TEXT, b"z" * BIG)
    assert frames[1][0] == 0x8  # close
    peer.close()


async def test_a_session_counts_what_was_kept_until_the_send_task_wrote_it() -> None:
    stream, peer = small_buffered_pair()
    ws = NativeWebSocket(stream, b"", max_message_size=1_000_000)
    config = EngineConfig()
    session = EngineSocket(
        "sid",
        WebSocketTransport(ws),
        config,
        request_head("GET", "/socket.io/?EIO=4&transport=websocket"),
        Packet(PacketType.OPEN, "{}"),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(session.run, None)
        assert await read_frames(peer, 1) == [(OP_TEXT, b"0{}")]
        await trio.testing.wait_all_tasks_blocked()
        assert session.statistics()["queued_bytes"] == 0
        size = config.max_buffer_bytes // 2  # "after" is then queued at once
        await session.send("m" * size)  # written directly, in part
        queued = session.statistics()["queued_bytes"]
        assert isinstance(queued, int) and 0 < queued < size
        assert not session.writable  # a volatile packet would be dropped now
        await session.send("after")  # queued behind what was kept
        frames = await read_frames(peer, 2)
        assert frames == [(OP_TEXT, b"4" + b"m" * size), (OP_TEXT, b"4after")]
        await trio.testing.wait_all_tasks_blocked()
        assert session.statistics()["queued_bytes"] == 0
        assert session.writable
        session.close()
        await session.wait_closed()
    peer.close()


def masked(payload: bytes) -> bytes:
    """A client's text frame (the mask is all zeros: the payload stays as it is)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, 0x80 | size))
    elif size < 65536:
        head = bytes((0x81, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x81, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def test_frame_ready_says_whether_a_whole_frame_is_held() -> None:
    for payload in (b"", b"x" * 125, b"y" * 300, b"z" * 70_000):
        frame = masked(payload)
        for cut in (0, 1, 2, 5, len(frame) - 1):
            decoder = FrameDecoder(max_message_size=1 << 20)
            decoder.feed(frame[:cut])
            assert not decoder.frame_ready, (len(payload), cut)
        decoder = FrameDecoder(max_message_size=1 << 20)
        decoder.feed(frame)
        assert decoder.frame_ready


async def test_corked_frames_go_out_together_when_the_coroutine_yields() -> None:
    stream, peer = small_buffered_pair()
    peer.setblocking(False)
    ws = NativeWebSocket(stream, b"", 1_000_000)

    async def handler() -> None:
        for text in (b"4one", b"4two", b"4three"):
            assert ws.try_write([encode_frame(OP_TEXT, text)]) == 0  # gathered
        try:
            peer.recv(100)
        except BlockingIOError:
            pass
        else:
            raise AssertionError("a corked frame was written before the yield")
        await trio.lowlevel.checkpoint()  # the yield writes them, in one write

    await run_inline(handler(), None)
    peer.setblocking(True)
    assert await read_frames(peer, 3) == [
        (OP_TEXT, b"4one"),
        (OP_TEXT, b"4two"),
        (OP_TEXT, b"4three"),
    ]
    assert ws.try_write([encode_frame(OP_TEXT, b"4direct")]) == 0  # uncorked: written now
    assert await read_frames(peer, 1) == [(OP_TEXT, b"4direct")]
    peer.close()
    await stream.aclose()


async def test_what_a_corked_write_leaves_is_told_and_written_first_next() -> None:
    stream, peer = small_buffered_pair()
    ws = NativeWebSocket(stream, b"", 1_000_000)
    told: list[int] = []

    async def handler() -> None:
        ws.try_write([encode_frame(OP_TEXT, b"a" * BIG)], told.append)

    await run_inline(handler(), None)
    assert len(told) == 1 and 0 < told[0] < BIG
    assert ws.try_write([encode_frame(OP_TEXT, b"never")]) is None  # behind what is kept
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.send_frames, encode_frame(OP_TEXT, b"b"))
        frames = await read_frames(peer, 2)
    assert frames == [(OP_TEXT, b"a" * BIG), (OP_TEXT, b"b")]
    peer.close()
    await stream.aclose()


async def test_an_idle_websocket_session_has_no_send_queue_or_task() -> None:
    stream, peer = small_buffered_pair()
    ws = NativeWebSocket(stream, b"", max_message_size=1_000_000)
    session = EngineSocket(
        "sid",
        WebSocketTransport(ws),
        EngineConfig(),
        request_head("GET", "/socket.io/?EIO=4&transport=websocket"),
        Packet(PacketType.OPEN, "{}"),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(session.run, None)
        assert await read_frames(peer, 1) == [(OP_TEXT, b"0{}")]
        await session.send("hello")  # written at once
        assert await read_frames(peer, 1) == [(OP_TEXT, b"4hello")]
        (session_task,) = nursery.child_tasks
        (session_nursery,) = session_task.child_nurseries
        names = sorted(task.name.rsplit(".", 1)[-1] for task in session_nursery.child_tasks)
        assert names == ["_receive_loop"]  # the session's own task holds the heartbeat
        assert session._out_send is None
        await session.send("m" * 500_000)  # in part: the rest needs the send task
        assert session._out_send is not None
        frames = await read_frames(peer, 1)
        assert frames == [(OP_TEXT, b"4" + b"m" * 500_000)]
        names = sorted(task.name.rsplit(".", 1)[-1] for task in session_nursery.child_tasks)
        assert names == ["_receive_loop", "_send_loop"]
        session.close()
        await session.wait_closed()
    peer.close()
