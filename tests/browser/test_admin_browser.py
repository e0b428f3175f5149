"""The Socket.IO Admin UI's own page (``@socket.io/admin-ui`` 0.5.1, its built ``ui/dist``)
in a headless Chromium, against an instrumented trio_sio server.

``tests/admin/admin_app.py`` serves the page on one port and the instrumented server, with
two connected clients, on another (a cross-origin UI, as https://admin.socket.io is).
``admin_e2e.mjs`` (Playwright) drives the page: a wrong password is refused; the right one
logs in; the page shows the server, both clients' sockets and their rooms; the UI makes a
socket join a room, emits to one client and disconnects the other; a reload logs in again
with the session id. This test owns the server and checks what the clients received.

Needs node, Chromium and ``npm ci`` in tests/browser and tests/admin (``setup.sh`` the
packages, ``tests/setup-system.sh`` Chromium). Without them the test is skipped, except under
CI, where that is an error.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest
from browser_support import chromium, in_ci, start_driver

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ADMIN = ROOT / "tests" / "admin"
DEADLINE = 60.0  # seconds for the whole scenario
PASSWORD = "correct horse battery staple"


def _requirements() -> tuple[str, str]:
    node, browser = shutil.which("node"), chromium()
    missing = []
    if node is None:
        missing.append("node is not installed")
    if browser is None:
        missing.append("Chromium is not installed (or CHROMIUM names no file)")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        missing.append("tests/browser/node_modules is missing")
    if not (ADMIN / "node_modules" / "@socket.io" / "admin-ui" / "ui" / "dist").is_dir():
        missing.append("tests/admin/node_modules is missing")
    if missing:
        reason = "; ".join(missing) + " (run tests/setup-system.sh, then tests/browser/setup.sh)"
        if in_ci():
            pytest.fail(f"the browser test cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    assert node is not None and browser is not None
    return node, browser


def _lines(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))
    into.put(None)


class AdminApp:
    """``tests/admin/admin_app.py`` as a subprocess: its stdout lines, and its log."""

    def __init__(self, log_path: Path) -> None:
        env = dict(os.environ, ADMIN_PASSWORD=PASSWORD)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(ADMIN / "admin_app.py")],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                encoding="utf-8",
            )
        assert self.proc.stdout is not None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=_lines, args=(self.proc.stdout, self.lines), daemon=True).start()

    def wait_for(self, prefix: str, deadline: float) -> str:
        """The first (next) stdout line starting with ``prefix``."""
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"the app never printed {prefix!r}:\n{self.log()}") from None
            if line is None:
                raise AssertionError(f"the app ended before {prefix!r}:\n{self.log()}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return (
            "\n".join(self.seen) + "\n--- log ---\n" + self.log_path.read_text("utf-8", "replace")
        )


def test_the_admin_ui_page_logs_in_shows_and_commands(tmp_path: Path) -> None:
    node, browser = _requirements()
    deadline = time.monotonic() + DEADLINE
    app = AdminApp(tmp_path / "admin_app.log")
    try:
        ui_url = app.wait_for("admin ui on ", deadline).removeprefix("admin ui on ")
        server_url = app.wait_for("server on ", deadline).removeprefix("server on ")
        alice = app.wait_for("client alice ", deadline).split()[-1]
        bob = app.wait_for("client bob ", deadline).split()[-1]
        env = dict(
            os.environ,
            ADMIN_UI_URL=ui_url,
            SERVER_URL=server_url.rstrip("/"),
            ADMIN_USERNAME="admin",
            ADMIN_PASSWORD=PASSWORD,
            SERVER_ID="trio-sio-test",
            ALICE_ID=alice,
            BOB_ID=bob,
            SCREENSHOT_DIR=str(tmp_path),
            CHROMIUM=browser,
        )
        driver, lines = start_driver(node, "admin_e2e.mjs", env)
        assert driver.stdin is not None
        output: list[str] = []
        screenshots: list[str] = []
        try:
            while True:
                try:
                    line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
                except queue.Empty:
                    pytest.fail(f"the scenario took over {DEADLINE:.0f} s:\n" + "\n".join(output))
                if line is None:
                    break
                output.append(line)
                print(line)
                if line.startswith("expect "):
                    _, name, what = line.split(" ", 2)
                    app.wait_for(f"client {name} {what}", deadline)
                    driver.stdin.write("seen\n")
                    driver.stdin.flush()
                elif line.startswith("screenshot "):
                    screenshots.append(line.removeprefix("screenshot "))
            status = driver.wait(timeout=10)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
            driver.stdin.close()
    finally:
        app.stop()

    for path in screenshots:
        print("screenshot:", path)
    report = "\n".join(output) + "\n--- admin app ---\n" + app.log()
    assert status == 0 and "ok" in output, "the browser scenario failed:\n" + report
    assert len(screenshots) == 5, report
    received = [line for line in app.seen if " got " in line]
    assert received == ['client alice got hello-from-ui [{"n": 1}]'], report
    assert "Traceback" not in app.log(), report
