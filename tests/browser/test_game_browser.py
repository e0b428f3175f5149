"""The game example (examples/game) in a real browser: two headless Chromium pages and bots.

The pages are driven by ``game_e2e.mjs`` (Playwright); this test owns the game server and,
when the script asks, runs ``bots.py`` against it.

Needs node, Chromium and ``npm ci`` in tests/browser and examples/game. Without them the test
is skipped, except under CI (``CI`` set and not ``false``/``0``), where that is an error.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser_support import requirements, start_driver

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXAMPLE = ROOT / "examples" / "game"
DEADLINE = 40.0  # seconds for the whole scenario
START_TIMEOUT = 15.0
LISTENING = re.compile(r"game server on http://127\.0\.0\.1:(\d+)/")
BOTS_ARGS = ["--count", "3", "--duration", "3", "--seed", "1"]
BOT_LINE = re.compile(r"^(bot-\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(\d+)$", re.MULTILINE)


def _requirements() -> tuple[str, str]:
    return requirements(EXAMPLE)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _start_server(log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``examples/game/server.py`` on a free port; returns it and the port once it listens."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLE / "server.py"), "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(),
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = LISTENING.search(log_path.read_text("utf-8", "replace"))
        if found:
            return proc, int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    _kill(proc)
    raise RuntimeError("the game server did not start:\n" + log_path.read_text("utf-8", "replace"))


def _kill(proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def test_two_pages_and_three_bots_play(tmp_path: Path) -> None:
    node, chromium = _requirements()
    started = time.monotonic()
    server_log = tmp_path / "server.log"
    bots_log = tmp_path / "bots.log"
    server, port = _start_server(server_log)
    url = f"http://127.0.0.1:{port}/"
    env = _env()
    env.update(GAME_URL=url, SCREENSHOT_DIR=str(tmp_path), CHROMIUM=chromium)
    driver, lines = start_driver(node, "game_e2e.mjs", env)
    assert driver.stdin is not None

    bots: subprocess.Popen[bytes] | None = None
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
            if line == "run-bots":
                with bots_log.open("wb") as log:
                    bots = subprocess.Popen(
                        [sys.executable, str(EXAMPLE / "bots.py"), "--url", url, *BOTS_ARGS],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=_env(),
                    )
                driver.stdin.write("started\n")
                driver.stdin.flush()
            elif line.startswith("screenshot "):
                screenshots.append(line.removeprefix("screenshot "))
            else:
                passed = passed or line == "ok"
        status = driver.wait(timeout=10)
        bots_status = bots.wait(timeout=10) if bots is not None else None
    finally:
        _kill(driver)
        driver.stdin.close()
        _kill(bots)
        _kill(server)

    print("\n".join(output))
    for path in screenshots:
        print("screenshot:", path)
    print(f"scenario: {time.monotonic() - started:.1f} s")
    bots_output = bots_log.read_text("utf-8", "replace") if bots_log.exists() else "(none)"
    report = (
        "\n".join(output)
        + "\n--- bots ---\n"
        + bots_output
        + "\n--- game server log ---\n"
        + server_log.read_text("utf-8", "replace")
    )
    assert status == 0 and passed, "the browser scenario failed:\n" + report
    assert len(screenshots) == 1, report
    # Each bot joined and got worlds all along (30 a second on an idle machine; the exact
    # rate is checked in virtual time by tests/examples/test_game.py).
    assert bots_status == 0, report
    rows = BOT_LINE.findall(bots_output)
    assert [name for name, *_ in rows] == ["bot-1", "bot-2", "bot-3"], report
    for _name, _id, worlds, rate, _score in rows:
        assert int(worlds) >= 30 and float(rate) >= 15, report
