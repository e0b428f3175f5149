"""socket.io-client 2.x in Chromium against a server with ``allow_eio3=True``: the browser's
polling uses the Engine.IO v3 binary body form (``application/octet-stream``), which the Node
client never does, and its WebSocket the v3 binary frames.

``eio3_e2e.mjs`` (Playwright) loads ``eio3_page.html`` from the server, which serves the
client's browser build from tests/interop's ``socket.io-client-v2`` package. Needs node,
Chromium and ``npm ci`` in tests/browser and tests/interop; skipped without them, except
under CI.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio
from browser_support import chromium, in_ci

import trio_sio

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
CLIENT = HERE.parent / "interop" / "node_modules" / "socket.io-client-v2" / "dist"
TEXT = "héllo wörld 😀 ∑"
BYTES = bytes([0, 1, 2, 127, 128, 254, 255])


def needs() -> tuple[str, str]:
    node, browser = shutil.which("node"), chromium()
    missing = []
    if node is None:
        missing.append("node is not installed")
    if browser is None:
        missing.append("Chromium is not installed (or CHROMIUM names no file)")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        missing.append("tests/browser/node_modules is missing (tests/browser/setup.sh)")
    if not (CLIENT / "socket.io.js").is_file():
        missing.append("tests/interop/node_modules is missing (npm ci there)")
    if missing:
        if in_ci():
            pytest.fail(f"the browser test cannot run under CI: {'; '.join(missing)}")
        pytest.skip("; ".join(missing))
    assert node is not None and browser is not None
    return node, browser


async def test_socket_io_client_v2_in_chromium() -> None:
    node, browser = needs()
    static = {"/": HERE / "eio3_page.html", "/socket.io-v2.js": CLIENT / "socket.io.js"}
    sio = trio_sio.Server(allow_eio3=True, static_files=static, close_timeout=0.2)
    seen: list[Any] = []

    @sio.on("echo")
    def echo(socket: trio_sio.Socket, text: str, data: bytes) -> tuple[str, bytes]:
        seen.append((text, data))
        return text, data

    @sio.on("push")
    async def push(socket: trio_sio.Socket) -> None:
        await socket.emit("pushed", TEXT, BYTES)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        env = dict(os.environ, EIO3_URL=f"http://127.0.0.1:{port}/", CHROMIUM=browser)
        with trio.fail_after(60):
            done = await trio.run_process(
                [node, "eio3_e2e.mjs"],
                cwd=HERE,
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        nursery.cancel_scope.cancel()
    report = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, report
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert result["page"] == {
        "polling": {"transport": "polling", "echo": True, "pushed": True},
        "websocket": {"transport": "websocket", "echo": True, "pushed": True},
    }, report
    assert seen == [(TEXT, BYTES), (TEXT, BYTES)]
    polls = result["polling"]
    assert all("EIO=3" in p["url"] and "b64" not in p["url"] for p in polls), polls
    assert all(p["status"] == 200 for p in polls), polls
    # The pushed binary event came back in a binary body, and the echo went in one.
    assert any(p["type"] == "application/octet-stream" for p in polls), polls
    assert "application/octet-stream" in result["posts"], result["posts"]
