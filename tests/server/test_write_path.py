"""The write path, counted rather than timed: what a broadcast costs per recipient in task
switches and system calls, over real loopback TCP connections.

- A broadcast from a task of the application (a game tick) reaches each idle socket with one
  non-blocking write from the emitting task: no task switch, one send call per socket.
- A burst of broadcasts from one handler is corked: each socket gets one write for the
  whole burst.
- Replies to the messages of one network read share one write, and the replies to reads
  that were ready together go out after all of those reads.
"""

from __future__ import annotations

import base64
import os
import socket as stdlib_socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.lowlevel

import trio_sio
from trio_sio.engineio import _inline as inline_module
from trio_sio.engineio import websocket as websocket_module
from trio_sio.engineio._inline import SLICE_FRAMES, schedule_point_trap
from trio_sio.engineio.transports import WebSocketTransport
from trio_sio.protocol.websocket import FrameDecoder
from trio_sio.server.connection import Connection

N = 40


class Raw:
    """A minimal WebSocket client on a blocking socket (frames read in a thread)."""

    def __init__(self, port: int) -> None:
        self.sock = stdlib_socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(10)
        self.buffer = bytearray()

    def handshake(self) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buffer = bytearray(rest)
        assert self.frame().startswith("0{")
        self.send("40")
        assert self.frame().startswith("40{")

    def send(self, text: str) -> None:
        payload = text.encode()
        assert len(payload) < 126
        self.sock.sendall(bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload)

    def frame(self) -> str:
        while True:
            if len(self.buffer) >= 2:
                size, start = self.buffer[1] & 0x7F, 2
                if size == 126:
                    (size,) = struct.unpack("!H", self.buffer[2:4])
                    start = 4
                elif size == 127:
                    (size,) = struct.unpack("!Q", self.buffer[2:10])
                    start = 10
                if len(self.buffer) >= start + size:
                    payload = bytes(self.buffer[start : start + size])
                    del self.buffer[: start + size]
                    return payload.decode()
            chunk = self.sock.recv(65536)
            assert chunk, "closed"
            self.buffer += chunk

    def frames(self, count: int) -> list[str]:
        return [self.frame() for _ in range(count)]


class Counter(trio.abc.Instrument):
    """Counts the steps of tasks other than ``me`` while ``on``."""

    def __init__(self, me: trio.lowlevel.Task) -> None:
        self.me = me
        self.on = False
        self.others = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.on and task is not self.me:
            self.others += 1


@asynccontextmanager
async def served(sio: trio_sio.Server, count: int) -> AsyncIterator[list[Raw]]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        clients = [Raw(port) for _ in range(count)]
        for client in clients:
            await trio.to_thread.run_sync(client.handshake)
        while len(sio.main.sockets) < count:
            await trio.sleep(0.01)
        await trio.testing.wait_all_tasks_blocked()
        try:
            yield clients
        finally:
            for client in clients:
                client.sock.close()
            nursery.cancel_scope.cancel()


def count_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the server WebSockets' non-blocking send calls (one entry per call)."""
    calls: list[int] = []
    original: Callable[[Any, bytes], int] = websocket_module.write_now

    def counted(sock: Any, data: bytes) -> int:
        calls.append(len(data))
        return original(sock, data)

    monkeypatch.setattr(websocket_module, "write_now", counted)
    return calls


async def test_a_broadcast_to_idle_sockets_makes_no_task_switch_and_one_send_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sio = trio_sio.Server()
    async with served(sio, N) as clients:
        writes = count_writes(monkeypatch)
        counter = Counter(trio.lowlevel.current_task())
        trio.lowlevel.add_instrument(counter)
        try:
            counter.on = True
            await sio.emit("tick", 1, "hello")
            counter.on = False
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert counter.others == 0
        assert len(writes) == N
        for client in clients:
            assert await trio.to_thread.run_sync(client.frame) == '42["tick",1,"hello"]'


async def test_a_burst_of_broadcasts_from_one_handler_is_one_write_per_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sio = trio_sio.Server()
    burst = 50

    @sio.on("burst")
    async def on_burst(socket: trio_sio.Socket, n: int) -> None:
        for i in range(n):
            await sio.emit("tick", i)

    async with served(sio, N) as clients:
        writes = count_writes(monkeypatch)
        await trio.to_thread.run_sync(clients[0].send, f'42["burst",{burst}]')
        for client in clients:
            frames = await trio.to_thread.run_sync(client.frames, burst)
            assert frames == [f'42["tick",{i}]' for i in range(burst)]
        assert len(writes) == N


async def test_a_long_burst_lets_others_run_at_each_slice_and_still_writes_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sio = trio_sio.Server()
    count = 4
    burst = 2 * SLICE_FRAMES // count + 10  # a little over two slices of frames
    others_ran: list[int] = []

    @sio.on("burst")
    async def on_burst(socket: trio_sio.Socket, n: int) -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await trio.lowlevel.checkpoint()

        socket.start_soon(ticker)  # runs only when the burst yields
        for i in range(n):
            await sio.emit("t", i)
        others_ran.append(ticks)

    async with served(sio, count) as clients:
        writes = count_writes(monkeypatch)
        await trio.to_thread.run_sync(clients[0].send, f'42["burst",{burst}]')
        for client in clients:
            frames = await trio.to_thread.run_sync(client.frames, burst)
            assert frames == [f'42["t",{i}]' for i in range(burst)]
        assert others_ran and others_ran[0] >= 1  # the loop was not held
        assert len(writes) == count  # yet one write per socket


async def test_a_very_long_burst_is_written_every_flush_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inline_module, "FLUSH_FRAMES", 100)
    sio = trio_sio.Server()
    count, burst = 4, 100

    @sio.on("burst")
    async def on_burst(socket: trio_sio.Socket, n: int) -> None:
        for i in range(n):
            await sio.emit("t", i)

    async with served(sio, count) as clients:
        writes = count_writes(monkeypatch)
        await trio.to_thread.run_sync(clients[0].send, f'42["burst",{burst}]')
        for client in clients:
            frames = await trio.to_thread.run_sync(client.frames, burst)
            assert frames == [f'42["t",{i}]' for i in range(burst)]
        assert len(writes) == 4 * count  # every 25 broadcasts (100 frames)


async def test_replies_to_one_read_share_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    sio = trio_sio.Server()

    @sio.on("echo")
    def echo(socket: trio_sio.Socket, value: int) -> int:
        return value

    async with served(sio, 1) as (client,):
        writes = count_writes(monkeypatch)
        frames = b"".join(
            bytes((0x81, 0x80 | len(p))) + b"\0\0\0\0" + p
            for p in (f'42{i}["echo",{i}]'.encode() for i in range(10))
        )
        await trio.to_thread.run_sync(client.sock.sendall, frames)
        replies = await trio.to_thread.run_sync(client.frames, 10)
        assert replies == [f"43{i}[{i}]" for i in range(10)]
        assert len(writes) == 1, writes


async def test_replies_to_reads_ready_together_are_written_after_all_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Connections whose messages arrive together are read in one scheduler pass; their
    replies go out when that pass ends, one write each, after every read (a reply written
    between two reads costs the peer a wake-up per reply, and the server more CPU)."""
    sio = trio_sio.Server()

    @sio.on("echo")
    def echo(socket: trio_sio.Socket, value: int) -> int:
        return value

    count = 10
    async with served(sio, count) as clients:
        order: list[str] = []
        original_feed = FrameDecoder.feed  # (what a read brought goes there)
        original_write: Callable[[Any, bytes], int] = websocket_module.write_now

        def feed(self: FrameDecoder, data: bytes) -> None:
            order.append("read")
            original_feed(self, data)

        def write(sock: Any, data: bytes) -> int:
            order.append("write")
            return original_write(sock, data)

        monkeypatch.setattr(FrameDecoder, "feed", feed)
        monkeypatch.setattr(websocket_module, "write_now", write)
        for i, client in enumerate(clients):  # all in the sockets before the server runs
            client.send(f'42{i}["echo",{i}]')
        for i, client in enumerate(clients):
            assert await trio.to_thread.run_sync(client.frame) == f"43{i}[{i}]"
        assert order == ["read"] * count + ["write"] * count


async def test_a_corked_reply_the_socket_does_not_take_at_once_is_written_on() -> None:
    """The rest of a corked write that the socket took only in part is written by the
    connection's send task, woken from the scheduler's hook: the poll that follows must not
    wait for other traffic (or a deadline) before that task runs."""
    sio = trio_sio.Server()
    big = "x" * 200_000  # under the cork's bound (one write, at the poll)...
    assert len(big) < websocket_module.CORK_BYTES

    @sio.on("big")
    def on_big(socket: trio_sio.Socket) -> str:
        return big

    async with served(sio, 1) as (client,):
        # ... and over what small socket buffers take at once
        client.sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 8192)
        (engine,) = sio.engine.sessions.values()
        transport = engine._transport
        assert isinstance(transport, WebSocketTransport)
        channel = transport.channel
        assert isinstance(channel, websocket_module.NativeWebSocket)
        server_socket = channel._socket
        assert server_socket is not None
        server_socket.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 8192)
        # Sent from this task (a small frame: the socket takes it at once), so that
        # nothing but the server's own hook can wake the loop until the reply is read.
        client.send('421["big"]')
        with trio.fail_after(10):  # (without the wake-up: the next ping, 25 s away)
            reply = await trio.to_thread.run_sync(client.frame)
        assert reply == f'431["{big}"]'


async def test_a_handler_that_waits_flushes_before_it_waits() -> None:
    sio = trio_sio.Server()
    release = trio.Event()

    @sio.on("slow")
    async def slow(socket: trio_sio.Socket) -> None:
        await socket.emit("before")
        await release.wait()
        await socket.emit("after")

    async with served(sio, 1) as (client,):
        await trio.to_thread.run_sync(client.send, '42["slow"]')
        assert await trio.to_thread.run_sync(client.frame) == '42["before"]'
        release.set()
        assert await trio.to_thread.run_sync(client.frame) == '42["after"]'


async def test_trios_schedule_point_trap_is_still_what_we_recognise() -> None:
    """Inline handlers tell a schedule point from a wait by what Trio yields; if Trio
    changes its private trap, this fails loudly (everything still works, more slowly)."""
    trap = schedule_point_trap()
    assert type(trap) is not object, "trio._core._traps.CancelShieldedCheckpoint is gone"
    yielded: list[object] = []

    async def probe() -> None:
        await trio.lowlevel.cancel_shielded_checkpoint()

    coro = probe()
    yielded.append(coro.send(None))
    coro.close()
    assert yielded == [trap]


async def test_reading_pauses_while_handlers_hold_more_than_max_inflight_bytes() -> None:
    sio = trio_sio.Server(max_inflight_bytes=1000)
    release = trio.Event()
    started: list[int] = []

    @sio.on("hold")
    async def hold(socket: trio_sio.Socket, n: int, pad: str) -> int:
        started.append(n)
        await release.wait()
        return n

    async with served(sio, 1) as (client,):
        pad = "x" * 100
        for n in range(12):  # about 120 bytes each: 8 fit in 1,000
            await trio.to_thread.run_sync(client.send, f'42{n}["hold",{n},"{pad}"]')
        (engine,) = sio.engine.sessions.values()
        connection = engine.handler
        assert isinstance(connection, Connection)
        with trio.fail_after(10):
            while connection._room is None:  # until the reading waits for room
                await trio.sleep(0.01)
        assert started == list(range(8))
        release.set()
        replies = await trio.to_thread.run_sync(client.frames, 12)
        assert sorted(replies) == sorted(f"43{n}[{n}]" for n in range(12))
        assert started == list(range(12))


async def test_a_middleware_that_waits_does_not_hold_up_the_reading() -> None:
    sio = trio_sio.Server()
    admin = sio.of("/admin")
    release = trio.Event()

    @admin.use
    async def slow_check(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        await release.wait()

    @sio.on("echo")
    def echo(socket: trio_sio.Socket, value: int) -> int:
        return value

    async with served(sio, 1) as (client,):
        await trio.to_thread.run_sync(client.send, "40/admin,")
        await trio.to_thread.run_sync(client.send, '421["echo",7]')
        assert await trio.to_thread.run_sync(client.frame) == "431[7]"  # not held up
        release.set()
        assert (await trio.to_thread.run_sync(client.frame)).startswith("40/admin,{")


async def test_a_handler_emitting_to_its_socket_in_a_long_loop_lets_others_run() -> None:
    sio = trio_sio.Server()
    others_ran: list[int] = []

    @sio.on("many")
    async def many(socket: trio_sio.Socket, n: int) -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await trio.lowlevel.checkpoint()

        socket.start_soon(ticker)
        for i in range(n):
            await socket.emit("m", i)
        others_ran.append(ticks)

    async with served(sio, 1) as (client,):
        n = 2 * SLICE_FRAMES + 10
        await trio.to_thread.run_sync(client.send, f'42["many",{n}]')
        frames = await trio.to_thread.run_sync(client.frames, n)
        assert frames == [f'42["m",{i}]' for i in range(n)]
        assert others_ran and others_ran[0] >= 1


async def test_a_long_burst_to_thousands_of_sockets_does_not_starve_others() -> None:
    """While one handler broadcasts 100 times to 2,000 sockets (200,000 frames), another
    client's echo is answered and a new client connects: the burst yields every slice.
    (Times are taken by the server, so that the test's threads do not matter.)"""
    sio = trio_sio.Server()
    finished: list[float] = []
    echoed: list[float] = []
    connected: list[float] = []

    @sio.on("connection")
    def on_connection(socket: trio_sio.Socket, auth: Any) -> None:
        connected.append(trio.current_time())

    @sio.on("burst")
    async def on_burst(socket: trio_sio.Socket, n: int) -> None:
        for i in range(n):
            await sio.emit("t", i)
        finished.append(trio.current_time())

    @sio.on("echo")
    def echo(socket: trio_sio.Socket, value: int) -> int:
        echoed.append(trio.current_time())
        return value

    async with served(sio, 2000) as clients:
        port = clients[0].sock.getpeername()[1]
        trigger, prober = clients[0], clients[1]
        await trio.to_thread.run_sync(trigger.send, '42["burst",100]')
        await trio.to_thread.run_sync(prober.send, '421["echo",7]')
        late = Raw(port)
        await trio.to_thread.run_sync(late.handshake)  # a new connection, served meanwhile
        with trio.fail_after(60):
            while not finished or not echoed:
                await trio.sleep(0.01)
        assert echoed[0] < finished[0]
        assert connected[-1] < finished[0]
        late.sock.close()
