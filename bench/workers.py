"""Echo and broadcast with 1, 2 and 4 workers of ``python -m trio_sio serve`` on one port.

    python bench/workers.py [--workers 1,2,4] [--seconds 4]

Each row: a fresh redis-server and a fresh launcher (``--workers N --redis URL``, the
``bench/servers/trio_sio_server.py`` app), then ``loadgen.mjs`` (``npm ci --prefix bench``):
``echo`` (50 connections, 8 acked events in flight each) and ``broadcast`` (400 connections,
one of them triggers 50 broadcasts to all, which cross workers through Redis). Nothing is
pinned: the workers, Redis and the load generator share the machine's cores, so on a machine
with fewer cores than workers + 1 the figures show the contention, not the scaling.
Writes a table on stdout; runs about 15 s per row.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def loadgen(config: dict[str, object]) -> dict[str, object]:
    done = subprocess.run(
        ["node", str(HERE / "loadgen.mjs"), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"loadgen failed: {done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(lines[-1])
    return result


def measure(workers: int, seconds: float) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    redis_port, port = free_port(), free_port()
    redis_command = [shutil.which("redis-server") or "redis-server", "--port", str(redis_port)]
    redis_command += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    redis = subprocess.Popen([*redis_command, "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE / "servers")])
    log = (workdir / "launcher.log").open("wb")
    command = [sys.executable, "-m", "trio_sio", "serve", "trio_sio_server:make_server"]
    command += ["--workers", str(workers), "--port", str(port), "--log-level", "warning"]
    launcher = subprocess.Popen(
        [*command, "--redis", f"redis://127.0.0.1:{redis_port}"],
        stdout=log,
        stderr=log,
        env=env,
    )
    try:
        wait_port(redis_port)
        deadline = time.monotonic() + 30
        while len(re.findall(r"listening on", (workdir / "launcher.log").read_text())) < workers:
            if time.monotonic() > deadline or launcher.poll() is not None:
                raise RuntimeError((workdir / "launcher.log").read_text())
            time.sleep(0.05)
        pids = children(launcher.pid) if workers > 1 else [launcher.pid]
        base = {"port": port, "serverPids": pids, "clkTck": os.sysconf("SC_CLK_TCK")}
        echo = loadgen(
            {**base, "scenario": "echo", "conns": 50, "depth": 8}
            | {"warmupMs": 1000, "durationMs": int(seconds * 1000)}
        )
        broadcast = loadgen(
            {**base, "scenario": "broadcast", "conns": 400, "count": 50, "warmups": 3}
            | {"timeoutMs": 30000}
        )
        return {"workers": workers, "echo": echo, "broadcast": broadcast}
    finally:
        launcher.terminate()
        try:
            launcher.wait(15)
        except subprocess.TimeoutExpired:
            launcher.kill()
        redis.terminate()
        redis.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}")
    print("| workers | echo acks/s | echo p99 ms | server CPU | broadcast deliveries/s | lost |")
    print("|---|---|---|---|---|---|")
    for workers in (int(n) for n in args.workers.split(",")):
        row = measure(workers, args.seconds)
        echo, cast = row["echo"], row["broadcast"]
        assert isinstance(echo, dict) and isinstance(cast, dict)
        print(
            f"| {workers} | {echo.get('rate', 0):,.0f} | {echo.get('p99_ms', 0):.1f} "
            f"| {echo.get('server_cpu', 0):.2f} | {cast.get('rate', 0):,.0f} "
            f"| {cast.get('lost')} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
