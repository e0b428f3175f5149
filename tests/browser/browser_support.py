"""What the browser tests share: finding node and Chromium, skipping (or failing under CI)."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import pytest

HERE = Path(__file__).resolve().parent


def in_ci() -> bool:
    """Whether the CI environment variable says we run under CI."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chromium() -> str | None:
    """The Chromium to drive: ``$CHROMIUM`` if set, else one on the PATH."""
    named = os.environ.get("CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def requirements(example: Path) -> tuple[str, str]:
    """``node`` and Chromium for a test of ``example``; skip (fail under CI) when anything
    the test needs is missing."""
    node = shutil.which("node")
    browser = chromium()
    missing = []
    if node is None:
        missing.append("node is not installed")
    if browser is None:
        missing.append("Chromium is not installed (or CHROMIUM names no file)")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        missing.append("tests/browser/node_modules is missing")
    if not (example / "node_modules" / "socket.io-client" / "dist").is_dir():
        missing.append(f"examples/{example.name}/node_modules is missing")
    if missing:
        reason = "; ".join(missing) + " (run tests/setup-system.sh, then tests/browser/setup.sh)"
        if in_ci():
            pytest.fail(f"the browser test cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    assert node is not None and browser is not None
    return node, browser


def _read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def start_driver(
    node: str, script: str, env: Mapping[str, str]
) -> tuple[subprocess.Popen[str], queue.Queue[str | None]]:
    """Start a Node e2e script of this folder; its output lines arrive on the queue (then
    None at the end), and the test answers it on its stdin."""
    driver = subprocess.Popen(
        [node, script],
        cwd=HERE,
        env=dict(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        bufsize=1,
    )
    assert driver.stdin is not None and driver.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(driver.stdout, lines), daemon=True).start()
    return driver, lines
