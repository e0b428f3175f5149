"""No cyclic garbage on the hot paths: what a message costs is freed by reference counting.

CPython's cyclic collector runs when container objects pile up; each run walks the young
objects (and, every so often, all of them: every connection's state). Garbage in reference
cycles (an exception kept in a frame it references, an object holding a bound method of
itself, a closure over its own cell, ...) is what only that collector frees. Each test runs
a hot path with the collector off and then counts what one collection finds unreachable
(``gc.collect()``'s value), per 10,000 messages: echoes with an ack, broadcasts, and echoes
over a real TCP connection (the standalone front end and the native WebSocket, which the
in-memory kit does not use).

The bound is small: a cycle per message would show up as at least 10,000.
"""

from __future__ import annotations

import base64
import collections
import gc
import os
import struct
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

import trio_sio
from trio_sio.testing import RawClient, open_raw_client

MESSAGES = 10_000
#: unreachable objects allowed per 10,000 messages (one-off cycles of the run, if any).
BOUND = 100


@dataclass
class Garbage:
    """What one collection found after the measured code ran with the collector off."""

    found: int = 0
    types: collections.Counter[str] = field(default_factory=collections.Counter)
    #: collections run per generation while measuring (``gc.get_stats()``).
    collections: list[int] = field(default_factory=list)

    def check(self, messages: int) -> None:
        """Assert that the count is whole (no collection ran meanwhile) and within bounds."""
        assert self.collections == [0, 0, 0], "a collection ran while measuring"
        per_10k = self.found * MESSAGES / messages
        print(f"\n{per_10k:.0f} unreachable objects per 10,000 messages")
        assert per_10k <= BOUND, f"{per_10k:.0f} per 10,000: {self.types.most_common(15)}"


@contextmanager
def collector_off() -> Iterator[Garbage]:
    """Run the body with the cyclic collector off; then collect once and record what was
    unreachable (kept in ``gc.garbage`` just long enough to name its types)."""
    garbage = Garbage()
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    before = [stats["collections"] for stats in gc.get_stats()]
    try:
        yield garbage
    finally:
        after = [stats["collections"] for stats in gc.get_stats()]
        garbage.collections = [a - b for a, b in zip(after, before, strict=True)]
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            garbage.found = gc.collect()
            garbage.types.update(type(obj).__qualname__ for obj in gc.garbage)
        finally:
            gc.garbage.clear()
            gc.set_debug(0)
            if enabled:
                gc.enable()


def echo_server() -> trio_sio.Server:
    sio = trio_sio.Server()

    @sio.on("echo")
    async def echo(socket: trio_sio.Socket, data: Any) -> Any:
        return data

    return sio


async def echo_round_trips(raw: RawClient, count: int) -> None:
    for i in range(count):
        await raw.send(f'42{i}["echo",{i}]')
        await raw.expect(f"43{i}[{i}]")


async def test_echo_with_ack(nursery: trio.Nursery) -> None:
    sio = echo_server()
    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await echo_round_trips(raw, 200)  # first-use costs (caches, ...) are not counted
        with collector_off() as garbage:
            await echo_round_trips(raw, MESSAGES)
    garbage.check(MESSAGES)


async def test_broadcast(nursery: trio.Nursery) -> None:
    sio = trio_sio.Server()
    await nursery.start(sio.run)
    sockets, rounds = 100, MESSAGES // 100
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(open_raw_client(sio)) for _ in range(sockets)]
        for raw in clients:
            await raw.connect()

        async def broadcast(first: int, count: int) -> None:
            for i in range(first, first + count):
                await sio.emit("tick", i)
                for raw in clients:
                    await raw.expect(f'42["tick",{i}]')

        await broadcast(0, 5)
        with collector_off() as garbage:
            await broadcast(5, rounds)
    garbage.check(sockets * rounds)


# -- over TCP ---------------------------------------------------------------------------------
class TcpClient:
    """Raw Engine.IO frames over a real WebSocket: just enough for an echo (answers pings)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    async def connect(cls, port: int) -> TcpClient:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send_all(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            + f"Sec-WebSocket-Key: {key}\r\n\r\n".encode()
        )
        client = cls(stream)
        while b"\r\n\r\n" not in client.buffer:
            client.buffer += await stream.receive_some()
        head, _, rest = bytes(client.buffer).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        client.buffer = bytearray(rest)
        assert (await client.receive()).startswith("0{")
        await client.send("40")
        assert (await client.receive()).startswith("40{")
        return client

    async def send(self, text: str) -> None:
        data = text.encode()
        assert len(data) < 126
        await self.stream.send_all(bytes((0x81, 0x80 | len(data))) + b"\0\0\0\0" + data)

    async def receive(self) -> str:
        while True:
            if len(self.buffer) >= 2:
                size, start = self.buffer[1] & 0x7F, 2
                if size == 126:
                    (size,) = struct.unpack("!H", self.buffer[2:4])
                    start = 4
                if len(self.buffer) >= start + size:
                    text = self.buffer[start : start + size].decode()
                    del self.buffer[: start + size]
                    if text == "2":
                        await self.send("3")
                        continue
                    return text
            self.buffer += await self.stream.receive_some()


async def test_echo_with_ack_over_tcp(nursery: trio.Nursery) -> None:
    sio = echo_server()
    listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
    client = await TcpClient.connect(listeners[0].socket.getsockname()[1])

    async def round_trips(count: int) -> None:
        for i in range(count):
            await client.send(f'42{i}["echo",{i}]')
            assert await client.receive() == f"43{i}[{i}]"

    await round_trips(200)
    with collector_off() as garbage:
        await round_trips(MESSAGES)
    await client.stream.aclose()
    garbage.check(MESSAGES)
