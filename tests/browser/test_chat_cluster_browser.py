"""The chat example as two servers sharing a Redis: pages on different servers chat together.

This test owns a redis-server and two ``examples/chat/server.py --redis`` processes on free
ports; ``chat_cluster_e2e.mjs`` (Playwright) drives the pages: alice on server A, bob and
carol on server B, in one room. Their messages, typing notices, user list and room list
cross servers through Redis; a room's history is per server (as the example documents).

Needs redis-server, node, Chromium and ``npm ci`` in tests/browser and examples/chat
(``tests/setup-system.sh`` and ``setup.sh`` install them all). Without them the test is
skipped, except under CI (``CI`` set and not ``false``/``0``), where that is an error.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import in_ci, requirements, start_driver

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXAMPLE = ROOT / "examples" / "chat"
DEADLINE = 60.0  # seconds for the whole scenario
START_TIMEOUT = 15.0
LISTENING = re.compile(r"chat server on http://127\.0\.0\.1:(\d+)/")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if in_ci():
            pytest.fail(f"the browser test cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        _stop(proc)


def start_chat(redis_url: str, log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """One chat server on a free port, with the Redis adapter; returns it and its port."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, str(EXAMPLE / "server.py"), "--port", "0", "--redis", redis_url]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = LISTENING.search(log_path.read_text("utf-8", "replace"))
        if found:
            return proc, int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    _stop(proc)
    raise RuntimeError(f"the chat server did not start:\n{log_path.read_text('utf-8')}")


def test_pages_on_two_servers_chat_through_redis(tmp_path: Path, redis_url: str) -> None:
    node, chromium = requirements(EXAMPLE)
    started = time.monotonic()
    logs = {name: tmp_path / f"server-{name}.log" for name in ("a", "b")}
    servers: list[subprocess.Popen[bytes]] = []
    output: list[str] = []
    screenshots: list[str] = []
    passed = False
    try:
        ports = {}
        for name, log in logs.items():
            proc, ports[name] = start_chat(redis_url, log)
            servers.append(proc)
        env = dict(os.environ)
        env.update(
            CHAT_URL_A=f"http://127.0.0.1:{ports['a']}/",
            CHAT_URL_B=f"http://127.0.0.1:{ports['b']}/",
            SCREENSHOT_DIR=str(tmp_path),
            CHROMIUM=chromium,
        )
        driver, lines = start_driver(node, "chat_cluster_e2e.mjs", env)
        assert driver.stdin is not None
        try:
            while True:
                remaining = DEADLINE - (time.monotonic() - started)
                try:
                    line = lines.get(timeout=max(remaining, 0.01))
                except queue.Empty:
                    pytest.fail(f"the scenario took over {DEADLINE:.0f} s:\n" + "\n".join(output))
                if line is None:
                    break
                output.append(line)
                print(line)
                if line.startswith("screenshot "):
                    screenshots.append(line.removeprefix("screenshot "))
                passed = passed or line == "ok"
            status = driver.wait(timeout=10)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
            driver.stdin.close()
    finally:
        for proc in servers:
            _stop(proc)

    for path in screenshots:
        print("screenshot:", path)
    print(f"scenario: {time.monotonic() - started:.1f} s")
    server_logs = "".join(
        f"\n--- chat server {name} log ---\n" + log.read_text("utf-8", "replace")
        for name, log in logs.items()
    )
    report = "\n".join(output) + server_logs
    assert status == 0 and passed, "the browser scenario failed:\n" + report
    assert len(screenshots) == 2, report  # alice's and carol's (bob's page was closed)
    assert "Traceback" not in server_logs, report
