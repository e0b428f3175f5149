"""What one idle WebSocket connection holds in a trio_sio server, broken down.

    python bench/memory_breakdown.py                # 2,000 connections
    python bench/memory_breakdown.py -n 5000 --top 40 --depth 32

The server (trio_sio's standalone front end, default settings, ``"/"`` with no handlers)
runs in this process on 127.0.0.1, on a free port. The clients run in a separate process
(this script with ``--client``: asyncio and raw sockets, no dependency) and each does the
WebSocket handshake, reads the Engine.IO OPEN packet, connects to ``"/"``, then stays idle,
answering pings. Everything is divided by the number of connections:

1. without tracemalloc: the RSS growth (``/proc/self/statm``) and the objects tracked by the
   garbage collector, counted by type (with their ``sys.getsizeof``), after ``gc.collect()``;
2. the clients close, and the same number connect again with tracemalloc on: the bytes
   allocated meanwhile and still held, by allocation site (file:line of the innermost frame),
   by file, and by the innermost frame inside trio_sio (the line of ours that caused them,
   and its function).

A few connections are opened and closed first, so that first-use costs (imports, caches,
code objects) are not counted. Linux only (``/proc``). Timing plays no part: it can run on
a busy machine.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import base64
import collections
import gc
import os
import struct
import subprocess
import sys
import time
import tracemalloc
import types
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") / 1024
WARM_UP = 50
#: seconds to wait once every connection is open, so that every task is parked.
SETTLE = 0.5
#: seconds a step may take before the run gives up.
STEP_TIMEOUT = 120.0


# -- the clients (a separate process) -------------------------------------------------------
async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    opcode, size = head[0] & 0x0F, head[1] & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return opcode, await reader.readexactly(size)


def _text_frame(text: str) -> bytes:
    data = text.encode()
    assert len(data) < 126
    return bytes((0x81, 0x80 | len(data))) + b"\0\0\0\0" + data  # a zero mask: data as is


class _Clients:
    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.path = path
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def open_one(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {self.path}?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"handshake refused: {head[:40]!r}")
        _, opening = await _read_frame(reader)
        if not opening.startswith(b"0{"):
            raise RuntimeError(f"expected OPEN, got {opening[:40]!r}")
        writer.write(_text_frame("40"))
        _, connected = await _read_frame(reader)
        if not connected.startswith(b"40{"):
            raise RuntimeError(f"expected CONNECT, got {connected[:40]!r}")
        self.writers.append(writer)
        task = asyncio.create_task(self._idle(reader, writer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _idle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                opcode, data = await _read_frame(reader)
                if opcode == 0x8:
                    return
                if data == b"2":
                    writer.write(_text_frame("3"))
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    async def open_many(self, n: int, concurrency: int) -> None:
        limit = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with limit:
                await self.open_one()

        await asyncio.gather(*(one() for _ in range(n)))

    async def close_all(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers = []
        for task in list(self.tasks):
            task.cancel()
        await asyncio.sleep(0)


async def _client_main(port: int, path: str, concurrency: int) -> None:
    clients = _Clients(port, path)
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    while line := (await commands.readline()).decode().split():
        if line[0] == "open":
            await clients.open_many(int(line[1]), concurrency)
        elif line[0] == "close":
            await clients.close_all()
        print("done", flush=True)


# -- the server side: measuring -------------------------------------------------------------
def rss_kib() -> float:
    """This process's resident set, in KiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_KIB


def _type_name(obj: object) -> str:
    """The type's name; for code (coroutines, functions, ...), which code too."""
    kind = type(obj)
    module = kind.__module__
    name = kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
    code: types.CodeType | None = None
    if isinstance(obj, types.CoroutineType):
        code = obj.cr_code
    elif isinstance(obj, types.GeneratorType):
        code = obj.gi_code
    elif isinstance(obj, types.AsyncGeneratorType):
        code = obj.ag_code
    elif isinstance(obj, (types.FunctionType, types.MethodType)):
        code = obj.__code__
    return name if code is None else f"{name} {code.co_qualname}"


def object_census() -> tuple[collections.Counter[str], collections.Counter[str]]:
    """The objects the garbage collector tracks: count and ``sys.getsizeof`` bytes by type."""
    counts: collections.Counter[str] = collections.Counter()
    sizes: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        name = _type_name(obj)
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
    return counts, sizes


def _short(filename: str) -> str:
    """A file name without the machine's directories."""
    if filename.startswith(str(ROOT)):
        return os.path.relpath(filename, ROOT)
    if "/site-packages/" in filename:
        return filename.split("/site-packages/", 1)[1]
    if "/lib/python3" in filename:  # the standard library: drop "/.../lib/python3.x/"
        return "stdlib/" + filename.split("/lib/python3", 1)[1].split("/", 1)[1]
    return filename


def _table(title: str, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    line = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(line.format(*header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))


def _package_dir() -> str:
    """Where the trio_sio being measured lives (this checkout, or another on PYTHONPATH)."""
    import trio_sio  # noqa: PLC0415 - the server side only

    return str(Path(trio_sio.__file__).parent)


def _ours(traceback: tracemalloc.Traceback, package: str) -> tuple[str, str]:
    """The innermost frame inside trio_sio (the line of ours an allocation came from), as
    ``file:line`` and as ``file:function``."""
    for frame in reversed(traceback):  # most recent last
        if frame.filename.startswith(package):
            short = os.path.relpath(frame.filename, Path(package).parent)
            return (
                f"{short}:{frame.lineno}",
                f"{short}:{_function_at(frame.filename, frame.lineno)}",
            )
    return "(no trio_sio frame)", "(no trio_sio frame)"


@cache
def _functions(filename: str) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every function in a source file."""
    found: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    found.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, f"{name}.")

    visit(ast.parse(Path(filename).read_text()), "")
    return found


def _function_at(filename: str, lineno: int) -> str:
    """The innermost function around a line (the module level if none)."""
    inside = [f for f in _functions(filename) if f[0] <= lineno <= f[1]]
    return min(inside, key=lambda f: f[1] - f[0])[2] if inside else "<module>"


def report_tracemalloc(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int, top: int
) -> None:
    """Print the allocations held after minus before, per connection, three ways."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    before, after = before.filter_traces(ignore), after.filter_traces(ignore)
    diffs = after.compare_to(before, "traceback")
    total = sum(d.size_diff for d in diffs)
    blocks = sum(d.count_diff for d in diffs)
    print(f"\ntracemalloc: {total / n / 1024:.2f} KiB in {blocks / n:.1f} blocks per connection")

    by_line: collections.Counter[str] = collections.Counter()
    by_line_count: collections.Counter[str] = collections.Counter()
    by_file: collections.Counter[str] = collections.Counter()
    by_file_count: collections.Counter[str] = collections.Counter()
    by_ours: collections.Counter[str] = collections.Counter()
    by_ours_count: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    by_function_count: collections.Counter[str] = collections.Counter()
    package = _package_dir()
    for diff in diffs:
        frame = diff.traceback[-1]  # the innermost frame
        site = f"{_short(frame.filename)}:{frame.lineno}"
        by_line[site] += diff.size_diff
        by_line_count[site] += diff.count_diff
        by_file[_short(frame.filename)] += diff.size_diff
        by_file_count[_short(frame.filename)] += diff.count_diff
        ours, function = _ours(diff.traceback, package)
        by_ours[ours] += diff.size_diff
        by_ours_count[ours] += diff.count_diff
        by_function[function] += diff.size_diff
        by_function_count[function] += diff.count_diff

    def rows(
        sizes: collections.Counter[str], counts: collections.Counter[str]
    ) -> list[tuple[Any, ...]]:
        return [
            (key, f"{size / n:.0f}", f"{counts[key] / n:.2f}")
            for key, size in sizes.most_common(top)
            if abs(size / n) >= 1
        ]

    columns = ("B/conn", "blocks/conn")
    title = f"by allocation site (innermost frame), top {top}"
    _table(title, ("site", *columns), rows(by_line, by_line_count))
    title = f"by file (innermost frame), top {top}"
    _table(title, ("file", *columns), rows(by_file, by_file_count))
    title = f"by the innermost trio_sio frame, top {top}"
    _table(title, ("trio_sio line", *columns), rows(by_ours, by_ours_count))
    title = f"by the innermost trio_sio function, top {top}"
    _table(title, ("trio_sio function", *columns), rows(by_function, by_function_count))


def report_census(
    before: tuple[collections.Counter[str], collections.Counter[str]],
    after: tuple[collections.Counter[str], collections.Counter[str]],
    n: int,
    top: int,
) -> None:
    """Print the growth in gc-tracked objects by type, per connection."""
    counts = after[0] - before[0]
    sizes = after[1] - before[1]
    print(
        f"\ngc-tracked objects: {counts.total() / n:.1f} per connection "
        f"({sizes.total() / n / 1024:.2f} KiB by sys.getsizeof, not counting what they hold)"
    )
    rows = [
        (name, f"{count / n:.2f}", f"{sizes[name] / n:.0f}")
        for name, count in counts.most_common(top)
        if count / n >= 0.05
    ]
    _table(f"objects by type, top {top}", ("type", "per conn", "B/conn"), rows)


# -- the server side: running ---------------------------------------------------------------
def run(n: int, top: int, depth: int, concurrency: int) -> None:
    """Start the server here and the clients in a subprocess; print the measurements."""
    # Imported here: the client process needs neither.
    import trio  # noqa: PLC0415

    import trio_sio  # noqa: PLC0415

    sio = trio_sio.Server()
    path = sio.engine.config.path

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            client = await trio.lowlevel.open_process(
                [sys.executable, __file__, "--client", str(port), path, str(concurrency)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            try:
                await measure(client)
            finally:
                client.kill()
                await client.wait()
                nursery.cancel_scope.cancel()

    async def command(client: trio.Process, text: str) -> None:
        """Send a command line to the clients; wait for their ``done``."""
        stdin, stdout = client.stdin, client.stdout
        assert stdin is not None and stdout is not None
        await stdin.send_all(text.encode() + b"\n")
        answer = b""
        with trio.fail_after(STEP_TIMEOUT):
            while not answer.endswith(b"\n"):
                chunk = await stdout.receive_some()
                if not chunk:
                    break
                answer += chunk
        if answer.strip() != b"done":
            raise RuntimeError(f"the client process failed ({text!r})")

    async def wait_for(check: Callable[[], bool]) -> None:
        # The server has no event for "N sockets connected": look every 50 ms.
        with trio.fail_after(STEP_TIMEOUT):
            while not check():  # noqa: ASYNC110
                await trio.sleep(0.05)
        await trio.sleep(SETTLE)

    def connected() -> int:
        return len(sio.main.sockets)

    async def open_idle(client: trio.Process, count: int) -> None:
        await command(client, f"open {count}")
        await wait_for(lambda: connected() == count)

    async def close_all(client: trio.Process) -> None:
        await command(client, "close")
        await wait_for(lambda: not sio.engine.sessions and not connected())

    async def measure(client: trio.Process) -> None:
        await open_idle(client, WARM_UP)
        await close_all(client)

        gc.collect()
        rss_before = rss_kib()
        census_before = object_census()
        del census_before  # the census itself allocates: count again once it is freed
        gc.collect()
        census_before = object_census()
        await open_idle(client, n)
        gc.collect()
        rss_after = rss_kib()
        census_after = object_census()
        print(f"{n} idle WebSocket connections, each connected to '/'")
        print(
            f"\nRSS: {rss_before:.0f} KiB -> {rss_after:.0f} KiB: "
            f"{(rss_after - rss_before) / n:.1f} KiB per connection"
        )
        report_census(census_before, census_after, n, top)
        del census_before, census_after
        await close_all(client)

        gc.collect()
        tracemalloc.start(depth)
        first = tracemalloc.take_snapshot()
        await open_idle(client, n)
        gc.collect()
        second = tracemalloc.take_snapshot()
        tracemalloc.stop()
        report_tracemalloc(first, second, n, top)
        await close_all(client)

    trio.run(main)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--connections", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    parser.add_argument("--depth", type=int, default=24, help="tracemalloc frames kept")
    parser.add_argument("--concurrency", type=int, default=100, help="handshakes at once")
    parser.add_argument("--client", nargs=3, metavar=("PORT", "PATH", "CONCURRENCY"))
    args = parser.parse_args(argv)
    if args.client:
        port, path, concurrency = args.client
        asyncio.run(_client_main(int(port), path, int(concurrency)))
        return
    started = time.monotonic()
    run(args.connections, args.top, args.depth, args.concurrency)
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
