"""What the ASGI tests share: Hypercorn run as a user runs it (a process), or embedded."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
START_TIMEOUT = 20.0
RUNNING = re.compile(r"Running on (https?)://127\.0\.0\.1:(\d+)")

INTEROP = ROOT / "tests" / "interop"
TRANSPORTS = {
    "websocket": '["websocket"]',
    "polling": '["polling"]',
    "upgrade": '["polling","websocket"]',
}
CLIENT_TIMEOUT = 40.0


def node() -> str:
    """``node``, with socket.io-client installed; skip (fail under CI) otherwise."""
    found = shutil.which("node")
    reason = None
    if found is None:
        reason = "node is not installed"
    elif not (INTEROP / "node_modules" / "socket.io-client").is_dir():
        reason = "tests/interop/node_modules is missing: run `npm ci` in tests/interop"
    if reason is not None:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    assert found is not None
    return found


def check(output: dict[str, Any], transport: str) -> None:
    """Every scenario passed (or does not apply to this transport)."""
    assert output.get("returncode") == 0 and "error" not in output, output
    assert output["transports"] == json.loads(TRANSPORTS[transport])
    failed = {
        name: result
        for name, result in output["results"].items()
        if not result.get("ok") and "skipped" not in result
    }
    assert not failed, failed
    assert len(output["results"]) >= 20, output["results"].keys()


def parse(proc: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    lines = proc.stdout.decode().strip().splitlines()
    output: dict[str, Any] = json.loads(lines[-1]) if lines else {"error": "no output"}
    output["returncode"] = proc.returncode
    output["stderr"] = proc.stderr.decode()[-3000:]
    return output


def hypercorn_command() -> list[str]:
    """``hypercorn``, the console script installed beside this Python (else ``-m``)."""
    script = shutil.which("hypercorn", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "hypercorn"]


def env_with_root() -> dict[str, str]:
    """The environment, with the working tree's trio_sio first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class HypercornProcess:
    """``hypercorn --worker-class trio <app>`` in a process group of its own, from ``cwd``.

    Its stdout lines (the apps' JSON logs) are collected; ``url`` is where it listens.
    """

    def __init__(
        self, app: str, *args: str, cwd: Path = HERE, env: dict[str, str] | None = None
    ) -> None:
        command = [
            *hypercorn_command(),
            "--worker-class",
            "trio",
            "--bind",
            "127.0.0.1:0",
            *args,
            app,
        ]
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env or env_with_root(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self._started = threading.Event()
        self.url = ""
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if not self._started.wait(START_TIMEOUT) or not self.url:
            self.kill()
            raise RuntimeError("hypercorn did not start:\n" + "\n".join(self.stderr))

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))
            found = RUNNING.search(line)
            if found and not self.url:
                self.url = f"{found.group(1)}://127.0.0.1:{found.group(2)}"
                self._started.set()
        self._started.set()

    def log(self, timeout: float = 0.0) -> list[dict[str, Any]]:
        """The JSON lines written so far (waiting up to ``timeout`` for the first)."""
        entries = []
        try:
            line = self.lines.get(timeout=timeout) if timeout else self.lines.get_nowait()
            while line is not None:
                if line.startswith("{"):
                    entries.append(json.loads(line))
                line = self.lines.get_nowait()
        except queue.Empty:
            pass
        return entries

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, as a process manager stops it; returns the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        """Kill the whole process group (Hypercorn runs its worker in a child process)."""
        if self.proc.poll() is None or self._group_alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def errors(self) -> list[str]:
        return [line for line in self.stderr if "Traceback" in line or "ERROR" in line]


def hypercorn_config(*, binds: Sequence[str] = ("127.0.0.1:0",), **options: Any) -> Config:
    config = Config()
    config.bind = list(binds)
    config.graceful_timeout = options.pop("graceful_timeout", 1.0)
    for name, value in options.items():
        setattr(config, name, value)
    return config


async def start_embedded(
    nursery: trio.Nursery, app: Any, config: Config | None = None, **serve_options: Any
) -> str:
    """``hypercorn.trio.serve(app, config)`` in ``nursery``; returns its URL."""
    config = config or hypercorn_config()

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(app, config, task_status=task_status, **serve_options)

    binds: list[str] = await nursery.start(run)
    return binds[0]


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
