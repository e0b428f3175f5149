"""The example servers as a user runs them: started with their README's command, stopped
with Ctrl+C (SIGINT, as a terminal sends it) or SIGTERM, they exit with 0 and print no
traceback. The chat under Hypercorn logs its lines too.

Needs the examples' browser client bundle (``npm ci`` in examples/chat and examples/game);
the ``example_dir`` fixture runs ``npm ci`` when it is missing, and skips (fails under CI)
without npm.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sio_support import in_ci

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
LISTENING = re.compile(r"server on (http://\S+/)")


def readme_command(example: str, script: str) -> list[str]:
    """The command of the example's README that runs ``script``, as an argv (``python3``
    replaced by this interpreter). The README's block must install trio_sio first."""
    text = (EXAMPLES / example / "README.md").read_text(encoding="utf-8")
    lines = [line.split("#")[0].split() for line in text.splitlines()]
    runs = [i for i, words in enumerate(lines) if words[1:2] == [f"examples/{example}/{script}"]]
    assert runs, f"examples/{example}/README.md has no command running {script}"
    setup = [" ".join(words) for words in lines[: runs[0]]]
    assert "python3 -m pip install -e ." in setup, "the README should install trio_sio first"
    assert f"npm ci --prefix examples/{example}" in setup
    return [sys.executable, *lines[runs[0]][1:]]


@pytest.fixture(params=["chat", "game"])
def example_dir(request: pytest.FixtureRequest) -> Path:
    folder = EXAMPLES / request.param
    if not (folder / "node_modules" / "socket.io-client" / "dist").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            reason = f"npm is needed for examples/{request.param}'s browser client bundle"
            if in_ci():
                pytest.fail(reason, pytrace=False)
            pytest.skip(reason)
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=folder, check=True)
    return folder


class Process:
    """A process whose stderr is collected by a thread, so that it never blocks on a full
    pipe; ``wait_for(pattern)`` waits for a line that matches."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._new_line = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        with self._new_line:
            while True:
                for line in self.lines:
                    found = re.search(pattern, line)
                    if found:
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    pytest.fail(f"no line matches {pattern!r}; the output:\n{self.output}")
                self._new_line.wait(min(left, 0.2))

    def stop(self, signum: int) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(20)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


def environment() -> dict[str, str]:
    """This environment, with this checkout's trio_sio first (as ``pip install -e .``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("CHAT_ADMIN_PASSWORD", None)
    return env


def get(url: str) -> tuple[int, bytes, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read(), response.headers.get("Content-Type", "")


def polling_handshake(url: str) -> None:
    """Open an Engine.IO session (long-polling), left open while the server stops."""
    status, body, _ = get(url + "socket.io/?EIO=4&transport=polling")
    assert status == 200 and body.startswith(b'0{"sid":')


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_server_quietly(
    example_dir: Path, signum: int, start: list[Process]
) -> None:
    argv = readme_command(example_dir.name, "server.py")
    start.append(server := Process([*argv, "--port", "0"], environment()))
    url = server.wait_for(LISTENING)[1]
    status, page, kind = get(url)
    assert status == 200 and kind.startswith("text/html") and b"socket.io.min.js" in page
    polling_handshake(url)
    assert server.stop(signum) == 0, server.output
    assert "Traceback" not in server.output
    assert "KeyboardInterrupt" not in server.output
    assert "ERROR" not in server.output
    assert server.output.rstrip().endswith("stopped")


def test_the_game_serves_its_icon(start: list[Process]) -> None:
    if not (EXAMPLES / "game" / "node_modules" / "socket.io-client").is_dir():
        pytest.skip("examples/game/node_modules is missing (npm ci --prefix examples/game)")
    argv = readme_command("game", "server.py")
    start.append(server := Process([*argv, "--port", "0"], environment()))
    url = server.wait_for(LISTENING)[1]
    for path in ("favicon.ico", "favicon.svg"):
        status, icon, kind = get(url + path)
        assert status == 200 and kind == "image/svg+xml" and icon.startswith(b"<svg")
    assert b'rel="icon" href="/favicon.svg"' in get(url)[1]
    assert server.stop(signal.SIGINT) == 0, server.output


def test_the_chat_logs_under_hypercorn(start: list[Process]) -> None:
    """Hypercorn configures only its own loggers: the chat's ASGI app sets up logging, so
    that its lines (a connection here) show."""
    pytest.importorskip("hypercorn")
    hypercorn = [sys.executable, "-m", "hypercorn", "--worker-class", "trio"]
    argv = [*hypercorn, "--bind", "127.0.0.1:0", "examples.chat.server:app"]
    start.append(server := Process(argv, environment()))
    url = server.wait_for(r"Running on (http://\S+)")[1].rstrip("/") + "/"
    status, body, _ = get(url + "socket.io/?EIO=4&transport=polling")
    sid = re.search(rb'"sid":"([^"]+)"', body)
    assert status == 200 and sid is not None
    request = urllib.request.Request(
        url + "socket.io/?EIO=4&transport=polling&sid=" + sid[1].decode(),
        data=b'40{"nickname":"ada"}',
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    server.wait_for(r"INFO +chat: ada connected")
    assert server.stop(signal.SIGINT) == 0, server.output
    assert "Traceback" not in server.output
