"""The server's cost of one echo with 1 in flight, counted rather than timed.

    python bench/echo_cost.py [--tree DIR] [--echoes 1000,3000] [--conns 1] [--mode MODE]

One WebSocket connection (or ``--conns``, in rounds: each sends one, then each reads its
ack; a plain blocking client in this process: raw Engine.IO v4 / Socket.IO v5 frames)
sends ``42<id>["echo",{...}]`` and waits for ``43<id>[...]`` before the next, ``N`` times,
for each ``N`` of ``--echoes``. Each count gets a fresh server process (the
benchmark app of ``servers/trio_sio_server.py``, with the ``trio_sio`` found in ``--tree``:
a checkout, or a directory where ``git archive REV trio_sio | tar -x -C DIR`` put an older
one). The figure per echo is the difference between two counts divided by the difference in
echoes, so that start-up, imports and the connect cancel out.

Modes (what is counted in the server process):

- ``trio``: Trio scheduler passes (``before_io_wait`` calls: times the run loop went round
  and asked epoll), ``task_scheduled`` wake-ups and task steps (``before_task_step``), read
  from a Trio Instrument the server installs.
- ``strace``: system calls by name (``strace -c -f``; the server is started under strace).
- ``loadgen``: the same counters, and the server's CPU time, per echo, while
  ``loadgen.mjs`` drives ``--conns`` connections with ``--depth`` in flight (1: as
  bench/run.py's echo1; 8: its echo8)
  for ``--echoes`` milliseconds, server on core 0 and generator on core 1; prints its rate.
- ``callgrind``: CPU instructions (``valgrind --tool=callgrind``); with ``--keep DIR`` the
  output files are kept for ``callgrind_annotate``.

Each run takes a few seconds (callgrind: ~30 s). Apart from ``loadgen`` nothing is timed, so
a busy machine does not change the figures.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SERVER = r"""
import gc, os, sys, json
sys.path.insert(0, {servers!r})
import trio
from trio_sio_server import make_server

counts = {{"io_waits": 0, "scheduled": 0, "steps": 0, "echoes": 0}}

class Counter(trio.abc.Instrument):
    def before_io_wait(self, timeout):
        counts["io_waits"] += 1
    def task_scheduled(self, task):
        counts["scheduled"] += 1
    def before_task_step(self, task):
        counts["steps"] += 1

async def main():
    sio = make_server()
    if {instrument!r}:
        trio.lowlevel.add_instrument(Counter())

        @sio.on("counts")
        async def _counts(socket, _):
            t = os.times()
            gcs = sum(g["collections"] for g in gc.get_stats())
            return dict(counts, user_us=t.user * 1e6, sys_us=t.system * 1e6, gc_runs=gcs)

        @sio.on("echo")
        async def echo(socket, data):
            counts["echoes"] += 1
            return data

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        sys.stdout.write(f"{{listeners[0].socket.getsockname()[1]}}\n")
        sys.stdout.flush()
        stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        async with stream:
            while await stream.receive_some():
                pass
        nursery.cancel_scope.cancel()

trio.run(main)
"""


class Client:
    """A blocking WebSocket Socket.IO client, just enough for the echo loop."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(head.decode("latin-1"))
        opened = self.recv()
        assert opened.startswith("0"), opened
        self.send("40")
        while not self.recv().startswith("40"):
            pass

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def send(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        if n < 126:
            head = bytes((0x81, 0x80 | n))
        elif n < 65536:
            head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
        self.sock.sendall(head + b"\0\0\0\0" + payload)  # a zero mask leaves the payload

    def recv(self) -> str:
        while True:
            while len(self.buf) < 2:
                self._fill()
            n = self.buf[1] & 0x7F
            start = 2
            if n == 126:
                while len(self.buf) < 4:
                    self._fill()
                n, start = int.from_bytes(self.buf[2:4], "big"), 4
            elif n == 127:
                while len(self.buf) < 10:
                    self._fill()
                n, start = int.from_bytes(self.buf[2:10], "big"), 10
            while len(self.buf) < start + n:
                self._fill()
            text = self.buf[start : start + n].decode()
            self.buf = self.buf[start + n :]
            if text == "2":  # a ping
                self.send("3")
                continue
            return text

    def echo(self, i: int) -> None:
        self.send(f'42{i}["echo",{{"n":{i},"msg":"hello"}}]')
        prefix = f"43{i}["
        while not self.recv().startswith(prefix):
            pass

    def counts(self) -> dict[str, int]:
        self.send('429999999["counts",0]')
        while not (msg := self.recv()).startswith("439999999["):
            pass
        result: dict[str, int] = json.loads(msg[len("439999999") :])[0]
        return result


def run_once(
    tree: Path, echoes: int, mode: str, out: Path, conns: int, *, depth: int = 1
) -> dict[str, float]:
    code = SERVER.format(servers=str(HERE / "servers"), instrument=mode in ("trio", "loadgen"))
    script = out / "server.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
    cmd = [sys.executable, str(script)]
    if mode == "strace":
        cmd = ["strace", "-f", "-c", "-o", str(out / f"strace-{echoes}.txt"), *cmd]
    elif mode == "callgrind":
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}/callgrind-{echoes}.out",
            *cmd,
        ]
    if mode == "loadgen":
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        port = int(proc.stdout.readline())
        if mode == "loadgen":
            return drive_loadgen(port, conns, echoes, depth)
        clients = [Client(port) for _ in range(conns)]
        client = clients[0]
        client.echo(0)  # warm
        before = client.counts() if mode == "trio" else {}
        # Rounds: every connection sends one, then each reads its ack (1 in flight each).
        for i in range(1, echoes // conns + 1):
            for c in clients:
                c.send(f'42{i}["echo",{{"n":{i},"msg":"hello"}}]')
            for c in clients:
                while not c.recv().startswith(f"43{i}["):
                    pass
        after = client.counts() if mode == "trio" else {}
        for c in clients:
            c.sock.close()
    finally:
        proc.stdin.close()
        proc.wait(timeout=300)
    if mode == "trio":
        return {k: after[k] - before[k] for k in after}
    if mode == "strace":
        return parse_strace(out / f"strace-{echoes}.txt")
    return {"instructions": parse_callgrind(out / f"callgrind-{echoes}.out")}


def drive_loadgen(port: int, conns: int, ms: int, depth: int) -> dict[str, float]:
    """Counts per echo while ``loadgen.mjs`` (pinned to core 1; the server is on core 0)
    drives ``conns`` connections, ``depth`` in flight each, for ``ms`` milliseconds."""
    client = Client(port)
    before = client.counts()
    config = {
        "scenario": "echo",
        "port": port,
        "conns": conns,
        "depth": depth,
        "warmupMs": 200,
        "durationMs": ms,
        "hardTimeoutMs": ms + 30000,
    }
    out = subprocess.run(
        ["taskset", "-c", "1", "node", str(HERE / "loadgen.mjs"), json.dumps(config)],
        capture_output=True,
        check=True,
        timeout=ms / 1000 + 40,
    ).stdout.decode()
    after = client.counts()
    client.sock.close()
    result = json.loads(out.strip().splitlines()[-1])
    n = after["echoes"] - before["echoes"]
    per = {k: (after[k] - before[k]) / n for k in after if k != "echoes"}
    per["rate"] = result["rate"]
    return per


def parse_strace(path: Path) -> dict[str, float]:
    calls: dict[str, float] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(parts) >= 5 and re.match(r"^[\d.]+$", parts[0]) and parts[-1] != "total":
            calls[parts[-1]] = float(parts[3])
    return calls


def parse_callgrind(path: Path) -> float:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            return float(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="where trio_sio is imported from")
    parser.add_argument("--echoes", default="1000,3000", help="two counts of echoes")
    parser.add_argument(
        "--mode", choices=("trio", "strace", "callgrind", "loadgen"), default="trio"
    )
    parser.add_argument("--conns", type=int, default=1, help="connections, 1 in flight each")
    parser.add_argument("--depth", type=int, default=1, help="in flight per connection (loadgen)")
    parser.add_argument("--keep", type=Path, help="keep the output files (callgrind) here")
    args = parser.parse_args()
    if args.mode == "loadgen":  # --echoes is the duration in ms
        with tempfile.TemporaryDirectory() as tmp:
            res = run_once(
                args.tree.resolve(),
                int(args.echoes),
                args.mode,
                Path(tmp),
                args.conns,
                depth=args.depth,
            )
        for k, v in res.items():
            print(f"{k:>20} {v:12.2f}" + ("" if k == "rate" else " per echo"))
        return
    lo, hi = (int(n) for n in args.echoes.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        a = run_once(args.tree.resolve(), lo, args.mode, out, args.conns)
        b = run_once(args.tree.resolve(), hi, args.mode, out, args.conns)
    per = {k: (b.get(k, 0) - a.get(k, 0)) / (hi - lo) for k in set(a) | set(b)}
    for k, v in sorted(per.items(), key=lambda kv: -kv[1]):
        if abs(v) >= 0.005:
            print(f"{k:>20} {v:12.2f} per echo")


if __name__ == "__main__":
    main()
