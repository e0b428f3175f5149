"""The game-like server of the slow-consumer test, run as a process of its own.

    python tests/stall/stall_server.py

Listens on 127.0.0.1, on a free port that it prints on stdout (one line, the number alone),
and broadcasts ``("tick", n, "x" * 10_000)`` to every socket of ``"/"`` 30 times a second,
``n`` counting from 1, on absolute deadlines (a late tick does not delay the next ones).
The broadcast is not volatile: every healthy client must get every tick.

The send-queue settings are passed explicitly, with their default values, so that the test
shows that the defaults do the job.

A client may tag itself with a ``role`` query parameter in its handshake URL; disconnects
are recorded with it. The event ``"stats"`` is answered (as its ack) with what the server
saw so far: the disconnects and their reasons, its RSS and peak RSS (``VmHWM``, see
``peak_rss_bytes``), the number of Engine.IO sessions, how late the tick loop woke up and
how long a broadcast took.

Logs at INFO (the ``trio_sio.engineio`` logger says there when it closes a slow consumer)
go to stderr.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from typing import Any

import trio

import trio_sio

TICK_RATE = 30
PAYLOAD = "x" * 10_000
LAG_PERIOD = 0.01  # s between two looks of the event-loop lag monitor
MAX_BUFFER_BYTES = 1_000_000  # the default, passed explicitly
SLOW_CONSUMER_GRACE = 10.0  # the default, passed explicitly


def rss_bytes() -> int:
    """The resident set size of this process, now."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """The largest resident set size this process has had (``VmHWM``).

    Not ``getrusage().ru_maxrss``: Linux carries that one over ``execve``, so a process
    started by a bigger one (pytest) reports its parent's RSS at the fork as its peak.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def ru_maxrss_bytes() -> int:
    """``getrusage().ru_maxrss`` (Linux reports KiB), for comparison only."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class StallServer:
    def __init__(self) -> None:
        self.sio = trio_sio.Server(
            max_buffer_bytes=MAX_BUFFER_BYTES, slow_consumer_grace=SLOW_CONSUMER_GRACE
        )
        self.started = trio.current_time()
        self.connected_at: dict[str, float] = {}
        self.disconnects: list[dict[str, Any]] = []
        self.ticks = 0
        self.max_late = 0.0  # how late the tick loop woke up, worst case (s)
        self.max_emit = 0.0  # how long one broadcast took, worst case (s)
        self.max_lag = 0.0  # how late a 10 ms sleep woke up, worst case (s)
        self.max_lag_at = 0.0  # when that was (time.monotonic(), comparable across processes)
        self.sio.on("connection", self.on_connection)
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.on("stats", self.on_stats)

    def on_connection(self, socket: trio_sio.Socket, auth: Any) -> None:
        self.connected_at[socket.id] = trio.current_time()

    def on_disconnect(self, socket: trio_sio.Socket, reason: str) -> None:
        now = trio.current_time()
        connected = self.connected_at.pop(socket.id, now)
        self.disconnects.append(
            {
                "role": socket.handshake.query.get("role", ""),
                "reason": reason,
                "transport": socket.transport,
                "connected_for": now - connected,
                "at": now - self.started,
            }
        )

    def on_stats(self, socket: trio_sio.Socket) -> dict[str, Any]:
        return {
            "disconnects": self.disconnects,
            "rss": rss_bytes(),
            "peak_rss": peak_rss_bytes(),
            "ru_maxrss": ru_maxrss_bytes(),
            "cpu": time.process_time(),
            "sessions": self.sio.engine.session_count,
            "sockets": len(self.connected_at),
            "ticks": self.ticks,
            "max_late": self.max_late,
            "max_emit": self.max_emit,
            "max_lag": self.max_lag,
            "max_lag_at": self.max_lag_at,
            "max_buffer_bytes": self.sio.engine.config.max_buffer_bytes,
            "slow_consumer_grace": self.sio.engine.config.slow_consumer_grace,
        }

    async def tick_loop(self) -> None:
        period = 1 / TICK_RATE
        start = trio.current_time()
        n = 0
        while True:
            n += 1
            deadline = start + n * period
            await trio.sleep_until(deadline)
            woke = trio.current_time()
            self.max_late = max(self.max_late, woke - deadline)
            await self.sio.emit("tick", n, PAYLOAD)
            self.max_emit = max(self.max_emit, trio.current_time() - woke)
            self.ticks = n

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(self.sio.serve, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            print(port, flush=True)
            nursery.start_soon(self.tick_loop)
            nursery.start_soon(self.lag_monitor)

    async def lag_monitor(self) -> None:
        """How long the event loop was kept from running a ready task (the process was not
        scheduled, or a task did not yield)."""
        while True:
            before = trio.current_time()
            await trio.sleep(LAG_PERIOD)
            lag = trio.current_time() - before - LAG_PERIOD
            if lag > self.max_lag:
                self.max_lag, self.max_lag_at = lag, time.monotonic()


async def main() -> None:
    await StallServer().serve()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(relativeCreated)8.0f ms %(name)s: %(message)s",
    )
    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass
