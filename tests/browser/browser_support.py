"""What the browser tests share: finding node and Chromium, skipping (or failing under CI)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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
        reason = "; ".join(missing) + " (run tests/browser/setup.sh)"
        if in_ci():
            pytest.fail(f"the browser test cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    assert node is not None and browser is not None
    return node, browser
