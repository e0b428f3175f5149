"""Client benchmark: trio_sio's client against python-socketio's ``AsyncClient`` (on uvloop)
and socket.io-client (Node), all talking to the same server in the same run.

    python bench/client_bench.py [--events 20000] [--seconds 3] [--rounds 3] [--json out.json]

The server is the official Node socket.io 4.8 server (``client_bench_server.mjs``), pinned to
one core; each client runs in its own process pinned to the other core, over WebSocket. For
each client, in turn, round after round:

- **receive**: the server emits ``--events`` events (``tick(i, "hello")``) back to back; the
  client's handler counts them: events/s from the request to the last one handled;
- **echo**: ``emit_with_ack("echo", {...})`` one at a time for ``--seconds``: acks/s (a
  round trip each: the server's turn and two wake-ups are in every figure);
- **echo, 32 in flight**: the same from 32 tasks at once: acks/s, where the client's own
  cost per message shows.

A last row, **bare Trio**, is the ceiling of any Trio client here: one task writing a
prebuilt WebSocket frame on a raw socket and reading the reply, with no protocol work at
all (it counts acks only). The table shows medians and the ratio to python-socketio. Needs
``npm ci --prefix bench`` and ``pip install -r bench/requirements.txt`` (uvloop).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLIENTS = ("trio_sio", "python-socketio", "socket.io-client", "bare Trio")
DEPTH = 32
KEYS = ("receive", "echo", "echo32")


# -- the Python clients (run as `client_bench.py --client NAME URL EVENTS SECONDS`) ----------


def run_trio_sio(url: str, events: int, seconds: float) -> dict[str, float]:
    import trio  # noqa: PLC0415

    import trio_sio  # noqa: PLC0415

    result: dict[str, float] = {}

    async def main() -> None:
        got = 0
        done = trio.Event()

        def tick(i: int, text: str) -> None:
            nonlocal got
            got += 1
            if got == events:
                done.set()

        async with trio_sio.open_client(
            url, transports=["websocket"], handlers={"tick": tick}
        ) as client:
            start = time.perf_counter()
            await client.emit("burst", events)
            await done.wait()
            result["receive"] = events / (time.perf_counter() - start)

            async def echo_rate(depth: int) -> float:
                """Acks/s of ``depth`` loops of ``emit_with_ack`` at once, for ``seconds``."""
                acks = 0
                start = time.perf_counter()
                until = start + seconds

                async def echoes() -> None:
                    nonlocal acks
                    while time.perf_counter() < until:
                        await client.emit_with_ack("echo", {"n": acks, "text": "hello"})
                        acks += 1

                if depth == 1:
                    await echoes()
                else:
                    async with trio.open_nursery() as nursery:
                        for _ in range(depth):
                            nursery.start_soon(echoes)
                return acks / (time.perf_counter() - start)

            result["echo"] = await echo_rate(1)
            result["echo32"] = await echo_rate(DEPTH)

    trio.run(main)
    return result


def run_python_socketio(url: str, events: int, seconds: float) -> dict[str, float]:
    import asyncio  # noqa: PLC0415

    import socketio  # noqa: PLC0415
    import uvloop  # noqa: PLC0415

    result: dict[str, float] = {}

    async def main() -> None:
        sio = socketio.AsyncClient()
        got = 0
        done = asyncio.Event()

        @sio.on("tick")
        async def tick(i: int, text: str) -> None:
            nonlocal got
            got += 1
            if got == events:
                done.set()

        await sio.connect(url, transports=["websocket"])
        start = time.perf_counter()
        await sio.emit("burst", events)
        await done.wait()
        result["receive"] = events / (time.perf_counter() - start)

        async def echo_rate(depth: int) -> float:
            """Acks/s of ``depth`` loops of ``call`` at once, for ``seconds``."""
            acks = 0
            start = time.perf_counter()
            until = start + seconds

            async def echoes() -> None:
                nonlocal acks
                while time.perf_counter() < until:
                    await sio.call("echo", {"n": acks, "text": "hello"}, timeout=10)
                    acks += 1

            if depth == 1:
                await echoes()
            else:
                await asyncio.gather(*(echoes() for _ in range(depth)))
            return acks / (time.perf_counter() - start)

        result["echo"] = await echo_rate(1)
        result["echo32"] = await echo_rate(DEPTH)
        await sio.disconnect()

    uvloop.run(main())
    return result


def run_bare_trio(url: str, events: int, seconds: float) -> dict[str, float]:
    """The ceiling: one Trio task, a raw socket, the same echo bytes each time (masked with
    a zero key), no parsing beyond finding the ack's prefix."""
    import trio  # noqa: PLC0415

    host, _, port = url.removeprefix("http://").partition(":")
    result: dict[str, float] = {}

    def frame(text: str) -> bytes:
        data = text.encode()
        assert len(data) < 126
        return bytes((0x81, 0x80 | len(data))) + bytes(4) + data

    async def main() -> None:
        sock = trio.socket.socket()
        await sock.connect((host, int(port)))
        await sock.send(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        data = b""
        while b'0{"sid"' not in data:  # the HTTP answer, then OPEN
            data += await sock.recv(65536)
        await sock.send(frame("40"))
        while b"40{" not in data:  # the namespace's CONNECT
            data += await sock.recv(65536)
        echo = frame('421["echo",{"n":0,"text":"hello"}]')
        acks = 0
        start = time.perf_counter()
        until = start + seconds
        while time.perf_counter() < until:
            await sock.send(echo)
            while b"431[" not in await sock.recv(65536):
                pass
            acks += 1
        result["echo"] = acks / (time.perf_counter() - start)
        sock.close()

    trio.run(main)
    return result


# -- the driver -----------------------------------------------------------------------------


def _pin(pid: int, core: int) -> None:
    """Pin process ``pid`` to ``core`` when the machine has it."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > core:
        os.sched_setaffinity(pid, {core})


def _run_client(name: str, url: str, events: int, seconds: float) -> dict[str, float]:
    if name == "socket.io-client":
        node = shutil.which("node") or "node"
        cmd = [node, str(HERE / "client_bench_node.mjs"), url, str(events), str(seconds)]
    else:
        cmd = [
            sys.executable,
            str(Path(__file__)),
            "--client",
            name,
            url,
            str(events),
            str(seconds),
        ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _pin(proc.pid, 1)  # before it connects: Python and Node take longer than this to start
    stdout, stderr = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed: {stderr[-2000:]}")
    result: dict[str, float] = json.loads(stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(CLIENTS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.client:
        url, events, seconds = args.rest
        run = {
            "trio_sio": run_trio_sio,
            "python-socketio": run_python_socketio,
            "bare Trio": run_bare_trio,
        }[args.client]
        print(json.dumps(run(url, int(events), float(seconds))))
        return

    node = shutil.which("node") or "node"
    server = subprocess.Popen(
        [node, str(HERE / "client_bench_server.mjs")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    _pin(server.pid, 0)
    assert server.stdout is not None and server.stdin is not None
    url = f"http://127.0.0.1:{int(server.stdout.readline())}"
    clients = [c for c in CLIENTS if c in args.only.split(",")]
    results: dict[str, list[dict[str, float]]] = {c: [] for c in clients}
    try:
        for round_no in range(args.rounds):
            for name in clients:
                results[name].append(_run_client(name, url, args.events, args.seconds))
                print(f"round {round_no + 1} {name}: {results[name][-1]}", file=sys.stderr)
    finally:
        server.stdin.close()
        server.wait(10)
    medians = {
        name: {k: statistics.median(r[k] for r in runs) for k in KEYS if k in runs[0]}
        for name, runs in results.items()
    }
    base = medians.get("python-socketio")
    print(
        f"\nclient benchmark: {args.events} events received, echo for {args.seconds} s, "
        f"median of {args.rounds} rounds (Node socket.io 4.8 server, WebSocket)\n"
    )
    print(
        "| client | events/s received | vs python-socketio | echo acks/s | vs python-socketio "
        f"| echo, {DEPTH} in flight, acks/s | vs python-socketio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, m in medians.items():
        cells = []
        for key in KEYS:
            if key not in m:
                cells += ["-", "-"]
                continue
            ratio = f"{m[key] / base[key]:.2f}x" if base else "-"
            cells += [f"{m[key]:,.0f}", ratio]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
