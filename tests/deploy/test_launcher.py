"""``python -m trio_sio serve module:app --workers N --redis URL``: several processes on one
host, each a node of the cluster through the Redis adapter.

- Sharing one port (``SO_REUSEPORT``), WebSocket-only clients are spread over the workers by
  the kernel and every broadcast reaches all of them.
- Long-polling needs a sticky proxy: with ``--port-per-worker`` and nginx's ``ip_hash`` in
  front, polling clients work (and share broadcasts with the WebSocket clients of every
  worker).
- SIGTERM to the launcher stops every worker.

Needs redis-server (and nginx for the polling test); skipped without them, except under CI.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

from .conftest import ROOT, START_TIMEOUT, free_port, start_nginx, stop
from .test_nginx import WAIT, Peer, connected

LISTENING = re.compile(r"listening on (\d+)")


@contextmanager
def launcher(log_path: Path, *options: str, workers: int = 2) -> Iterator[subprocess.Popen[bytes]]:
    """The launcher serving ``launcher_app``, once every worker listens."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "trio_sio", "serve", "tests.deploy.launcher_app:sio"]
    command += ["--workers", str(workers), *options]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=log, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + START_TIMEOUT * 2
        while len(LISTENING.findall(log_path.read_text("utf-8", "replace"))) < workers:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the workers did not start:\n" + log_path.read_text())
            time.sleep(0.05)
        yield proc
    finally:
        stop(proc)


async def whoami(peer: Peer) -> dict[str, Any]:
    with trio.fail_after(WAIT):
        answer: dict[str, Any] = await peer.client.emit_with_ack("whoami")
    return answer


async def test_websocket_clients_share_one_port_and_every_broadcast(
    redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    with launcher(tmp_path / "launcher.log", "--redis", redis_url, "--port", str(port)) as proc:
        url = f"http://127.0.0.1:{port}"
        peers = [Peer(f"ws{i}", url, ["websocket"]) for i in range(12)]
        async with connected(*peers):
            answers = [await whoami(peer) for peer in peers]
            pids = {answer["pid"] for answer in answers}
            # the kernel spreads new connections: with 12 of them, both workers (2^-11 that
            # one gets all of them by chance)
            assert len(pids) == 2, answers
            assert all(answer["nodes"] == 2 for answer in answers)
            with trio.fail_after(WAIT):
                shouter = await peers[0].client.emit_with_ack("shout", "hello")
            for peer in peers:
                await peer.wait_news(1)
                assert peer.news == [("hello", shouter)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    log = (tmp_path / "launcher.log").read_text()
    assert log.count("stopping: closing the connections") == 2, log
    assert "Traceback" not in log, log


async def test_polling_through_a_sticky_proxy_with_a_port_per_worker(
    redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    while True:  # two free ports in a row
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port + 1))
            break
        except OSError:
            port = free_port()
    options = ("--redis", redis_url, "--port", str(port), "--port-per-worker")
    with launcher(tmp_path / "launcher.log", *options):
        nginx = start_nginx([port, port + 1], tmp_path / "nginx", ip_hash=True)
        try:
            polling = Peer("polling", nginx.url, ["polling"])
            direct = [Peer(f"ws{i}", f"http://127.0.0.1:{port + i}", ["websocket"]) for i in (0, 1)]
            async with connected(polling, *direct):
                assert (await whoami(polling))["transport"] == "polling"
                pids = {(await whoami(peer))["pid"] for peer in direct}
                assert len(pids) == 2  # one worker per port
                with trio.fail_after(WAIT):
                    shouter = await polling.client.emit_with_ack("shout", "via nginx")
                for peer in (polling, *direct):
                    await peer.wait_news(1)
                    assert peer.news == [("via nginx", shouter)]
        finally:
            assert nginx.proc is not None
            stop(nginx.proc)
