"""The chat example (examples/chat) in a real browser: two headless Chromium pages.

The pages are driven by ``chat_e2e.mjs`` (Playwright); this test owns the chat server, which
the script asks it to kill and restart on the same port to check reconnection.

Needs node, Chromium and ``npm ci`` in tests/browser and examples/chat (``setup.sh`` the
packages, ``tests/setup-system.sh`` Chromium). Without them the test is skipped, except
under CI (``CI`` set and not ``false``/``0``), where that is an error.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser_support import requirements, start_driver

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXAMPLE = ROOT / "examples" / "chat"
DEADLINE = 60.0  # seconds for the whole scenario
START_TIMEOUT = 15.0
LISTENING = re.compile(r"chat server on http://127\.0\.0\.1:(\d+)/")
#: Hypercorn's line once it listens.
HYPERCORN_LISTENING = re.compile(r"Running on http://127\.0\.0\.1:(\d+) ")


def _requirements() -> tuple[str, str]:
    return requirements(EXAMPLE)


class ChatServer:
    """``examples/chat/server.py`` as a subprocess; its log goes to ``log_path``.

    ``front_end`` ``"hypercorn"`` runs its ASGI app as a user would:
    ``hypercorn --worker-class trio --bind 127.0.0.1:<port> examples.chat.server:app`` from
    the repository's root, in a process group of its own (Hypercorn's worker is a child).
    """

    def __init__(self, log_path: Path, front_end: str = "standalone") -> None:
        self.log_path = log_path
        self.front_end = front_end
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, port: int = 0) -> int:
        """Start the server (``port`` 0: a free one) and return its port once it listens."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, str(EXAMPLE / "server.py"), "--port", str(port)]
        listening = LISTENING
        if self.front_end == "hypercorn":
            hypercorn = shutil.which("hypercorn", path=str(Path(sys.executable).parent))
            command = [
                *([hypercorn] if hypercorn else [sys.executable, "-m", "hypercorn"]),
                *("--worker-class", "trio", "--bind", f"127.0.0.1:{port}"),
                "examples.chat.server:app",
            ]
            listening = HYPERCORN_LISTENING
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                found = listening.search(log.read().decode("utf-8", "replace"))
            if found:
                return int(found.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the chat server did not start:\n{self.log()}")

    def kill(self) -> None:
        """Kill the server (its whole process group) at once, as a crash would."""
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""


@pytest.mark.parametrize("front_end", ["standalone", "hypercorn"])
def test_two_users_chat_and_survive_a_server_restart(tmp_path: Path, front_end: str) -> None:
    node, chromium = _requirements()
    started = time.monotonic()
    server = ChatServer(tmp_path / "server.log", front_end)
    port = server.start()
    env = dict(os.environ)
    env.update(
        CHAT_URL=f"http://127.0.0.1:{port}/",
        SCREENSHOT_DIR=str(tmp_path),
        CHROMIUM=chromium,
    )
    driver, lines = start_driver(node, "chat_e2e.mjs", env)
    assert driver.stdin is not None

    output: list[str] = []
    screenshots: list[str] = []
    passed = False
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
            if line == "stop-server":
                server.kill()
                answer = "stopped"
            elif line == "start-server":
                server.start(port)
                answer = "started"
            else:
                if line.startswith("screenshot "):
                    screenshots.append(line.removeprefix("screenshot "))
                passed = passed or line == "ok"
                continue
            driver.stdin.write(answer + "\n")
            driver.stdin.flush()
        status = driver.wait(timeout=10)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        driver.stdin.close()
        server.kill()

    for path in screenshots:
        print("screenshot:", path)
    print(f"scenario: {time.monotonic() - started:.1f} s")
    report = "\n".join(output) + "\n--- chat server log ---\n" + server.log()
    assert status == 0 and passed, "the browser scenario failed:\n" + report
    assert len(screenshots) == 2, report
    assert "Traceback" not in server.log(), report
