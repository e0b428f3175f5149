"""Churn over real loopback TCP: many connect / emit / disconnect cycles, then nothing left.

Clients come and go over every transport (WebSocket, polling, polling upgraded to WebSocket,
some leaving mid-upgrade), and some connections are abandoned half-way: half an HTTP request
then a close, a WebSocket upgrade of a polling session dropped before or after the probe,
a polling session never used again. At the end the server must be back where it started:
no Engine.IO session, no socket in any namespace, as many Trio tasks as before, and a bounded
growth of its memory (RSS, after ``gc.collect()``). Nothing may be logged at ERROR.

The normal suite runs a short version; ``TRIO_SIO_SOAK=full`` (``nox -s soak``) runs
5,000 cycles. The figures are printed (run pytest with ``-s`` to see them).
"""

from __future__ import annotations

import gc
import os
import time
from collections import Counter
from collections.abc import Callable

import trio
from robustness_support import (
    PATH,
    capture_errors,
    count_tasks,
    if_supported,
    make_server,
    rss_bytes,
)
from robustness_wire import GOOD_KEY, message_frame, open_websocket, polling_handshake

import trio_sio

FULL = os.environ.get("TRIO_SIO_SOAK", "").lower() == "full"
CYCLES = 5_000 if FULL else 200
WORKERS = 4
#: RSS growth allowed between the warmed-up start and the end (after gc.collect()). Python
#: keeps freed memory in its arenas, so this is a bound on leaks, not an exact figure.
MIB = 1024 * 1024
RSS_BOUND = 16 * MIB
#: seconds for abandoned sessions to be closed by their heartbeat, and everything to settle.
SETTLE = 30.0

OPTIONS = {
    "ping_interval": 1.0,
    "ping_timeout": 2.0,
    "upgrade_timeout": 2.0,
    "connect_timeout": 5.0,
    **if_supported(http_keepalive_timeout=2.0, http_headers_timeout=5.0),
}

KINDS = [
    "websocket",
    "polling",
    "upgrade",
    "upgrade-then-leave",  # disconnects while the upgrade may still be going on
    "websocket",
    "polling",
    "upgrade",
    "half-request",
    "dropped-upgrade",
    "dropped-probe",
    "abandoned-polling",
    "dropped-websocket-request",
]


class Churn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.kinds: Counter[str] = Counter()

    async def connect(self) -> trio.abc.Stream:
        return await trio.open_tcp_stream("127.0.0.1", self.port)

    async def cycle(self, i: int) -> None:
        kind = KINDS[i % len(KINDS)]
        self.kinds[kind] += 1
        await getattr(self, kind.replace("-", "_"))(i)

    async def _client(self, i: int, transports: tuple[str, ...], *, upgraded: bool) -> None:
        client = trio_sio.Client(self.url, transports=transports, reconnection=False, path=PATH)
        async with client:
            assert await client.emit_with_ack("echo", i, timeout=10) == i
            await client.emit("join", f"room-{i % 7}")
            if upgraded:
                while client.transport != "websocket":
                    await trio.sleep(0.01)
                assert await client.emit_with_ack("echo", [i, "ws"], timeout=10) == [i, "ws"]

    async def websocket(self, i: int) -> None:
        await self._client(i, ("websocket",), upgraded=False)

    async def polling(self, i: int) -> None:
        await self._client(i, ("polling",), upgraded=False)

    async def upgrade(self, i: int) -> None:
        await self._client(i, ("polling", "websocket"), upgraded=True)

    async def upgrade_then_leave(self, i: int) -> None:
        await self._client(i, ("polling", "websocket"), upgraded=False)

    async def half_request(self, i: int) -> None:
        stream = await self.connect()
        request = f"GET {PATH}?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n".encode()
        await stream.send_all(request[: len(request) // 2 + i % 10])
        await trio.aclose_forcefully(stream)

    async def _upgrade_request(self, i: int, *, probe: bool) -> None:
        sid = await polling_handshake(self.connect, PATH)
        target = f"{PATH}?EIO=4&transport=websocket&sid={sid}"
        response, ws = await open_websocket(self.connect, target)
        assert ws is not None, response
        if probe:
            await ws.send_raw(message_frame("2probe"))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ws.reader)
                assert await ws.next_message() == "3probe"
                await ws.abort()
        else:
            await ws.abort()

    async def dropped_upgrade(self, i: int) -> None:
        await self._upgrade_request(i, probe=False)

    async def dropped_probe(self, i: int) -> None:
        await self._upgrade_request(i, probe=True)

    async def abandoned_polling(self, i: int) -> None:
        await polling_handshake(self.connect, PATH)

    async def dropped_websocket_request(self, i: int) -> None:
        stream = await self.connect()
        request = (
            f"GET {PATH}?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {GOOD_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await stream.send_all(request.encode())
        await trio.aclose_forcefully(stream)


async def _run_cycles(churn: Churn, first: int, count: int) -> None:
    next_cycle = first

    async def worker() -> None:
        nonlocal next_cycle
        while next_cycle < first + count:
            i = next_cycle
            next_cycle += 1
            with trio.fail_after(30):
                await churn.cycle(i)

    async with trio.open_nursery() as nursery:
        for _ in range(WORKERS):
            nursery.start_soon(worker)


async def _settle(check: Callable[[], bool], seconds: float) -> bool:
    """Poll ``check`` (real I/O must finish) until it holds or ``seconds`` pass."""
    with trio.move_on_after(seconds):
        while not check():
            await trio.sleep(0.01)
        return True
    return check()


def _tasks_steady(polls: int = 20) -> Callable[[], bool]:
    """A check that holds once the number of tasks has not changed for ``polls`` polls (the
    connections of the last cycles are closing)."""
    seen: list[int] = []

    def check() -> bool:
        seen.append(count_tasks())
        return len(seen) >= polls and len(set(seen[-polls:])) == 1

    return check


def _leftovers(sio: trio_sio.Server) -> dict[str, int]:
    left = {name: len(ns.sockets) for name, ns in sio.namespaces.items() if ns.sockets}
    if sio.engine.session_count:
        left["engine sessions"] = sio.engine.session_count
    return left


async def test_churn() -> None:
    sio = make_server(**OPTIONS)
    crashes: list[BaseException] = []
    with capture_errors() as errors:
        async with trio.open_nursery() as nursery:

            async def serve(*, task_status: trio.TaskStatus[list[trio.SocketListener]]) -> None:
                try:
                    await sio.serve("127.0.0.1", 0, task_status=task_status)
                except Exception as exc:
                    crashes.append(exc)

            listeners = await nursery.start(serve)
            churn = Churn(listeners[0].socket.getsockname()[1])

            # Warm up (imports, caches, the first allocations), then take the baseline.
            await _run_cycles(churn, 0, 2 * len(KINDS))
            assert await _settle(lambda: not _leftovers(sio), SETTLE), _leftovers(sio)
            assert await _settle(_tasks_steady(), SETTLE), "the task count never settled"
            gc.collect()
            tasks_before, rss_before = count_tasks(), rss_bytes()

            started = time.perf_counter()
            with trio.fail_after(60 + CYCLES):
                await _run_cycles(churn, 2 * len(KINDS), CYCLES)
            elapsed = time.perf_counter() - started

            settled = await _settle(
                lambda: not _leftovers(sio) and count_tasks() == tasks_before, SETTLE
            )
            gc.collect()
            tasks_after, rss_after = count_tasks(), rss_bytes()
            leftovers = _leftovers(sio)
            print(
                f"\nchurn: {CYCLES} cycles ({WORKERS} at a time) in {elapsed:.1f} s "
                f"({CYCLES / elapsed:.0f}/s); kinds {dict(churn.kinds)}\n"
                f"churn: RSS {rss_before / MIB:.1f} -> {rss_after / MIB:.1f} MiB "
                f"({(rss_after - rss_before) / MIB:+.1f} MiB, bound {RSS_BOUND / MIB:.0f}); "
                f"tasks {tasks_before} -> {tasks_after}; left over {leftovers or 'nothing'}"
            )
            sio.shutdown()
    assert not crashes, f"the server crashed: {crashes[0]!r}"
    assert not errors.records, errors.describe()
    assert settled, f"left over: {leftovers}, tasks {tasks_before} -> {tasks_after}"
    assert not leftovers
    assert tasks_after == tasks_before
    assert rss_after - rss_before < RSS_BOUND
