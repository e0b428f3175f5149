"""The chat example's command line, without starting it: ``--help`` says where the Admin
UI's page is and what it loads from elsewhere, and the Admin UI guide names the CDNs the
installed page really loads (checked when ``npm ci`` has run in examples/chat)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "chat"
ADMIN_PAGE = CHAT / "node_modules" / "@socket.io" / "admin-ui" / "ui" / "dist" / "index.html"


def test_help_says_where_the_admin_ui_is() -> None:
    result = subprocess.run(
        [sys.executable, str(CHAT / "server.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )
    admin = " ".join(line.strip() for line in result.stdout.splitlines() if line)
    assert "--admin" in admin and "at /admin/" in admin
    assert "CDN" in admin


def test_the_admin_ui_guide_names_the_cdns_the_page_uses() -> None:
    if not ADMIN_PAGE.is_file():
        pytest.skip("examples/chat/node_modules has no @socket.io/admin-ui (npm ci there)")
    hosts = set(re.findall(r'https://([^/"\']+)/', ADMIN_PAGE.read_text(encoding="utf-8")))
    assert hosts, "the Admin UI's page loads nothing from elsewhere any more: update the docs"
    guide = (ROOT / "docs" / "admin-ui.rst").read_text(encoding="utf-8")
    assert all(host in guide for host in hosts), hosts
