"""Compression in Chromium: the browser's WebSocket negotiates permessage-deflate with our
server and exchanges large messages both ways (text and binary), and its polling requests
get gzip-compressed responses.

``compression_e2e.mjs`` (Playwright) loads ``compression_page.html`` from the server, which
runs in this test's Trio loop with spies on what it compresses and inflates. Needs node,
Chromium and ``npm ci`` in tests/browser and examples/chat (``setup.sh``); skipped without
them, except under CI.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from browser_support import requirements

import trio_sio
import trio_sio.engineio.server as engine_server
import trio_sio.engineio.transports as engine_transports
from trio_sio.protocol.deflate import Inflater

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLIENT = ROOT / "examples" / "chat" / "node_modules" / "socket.io-client" / "dist"


def base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = digits[n % 36]
    while n >= 36:
        n //= 36
        out = digits[n % 36] + out
    return out


TEXT = ",".join(base36(i) for i in range(20000))  # what the page sends (its TEXT, BINARY)
BINARY = TEXT[:50000].encode()


class Spy:
    def __init__(self) -> None:
        self.deflated: list[bytes] = []
        self.inflated = 0
        self.polls: list[tuple[str | None, str | None]] = []


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spy]:
    seen = Spy()
    deflate = engine_transports.deflate_message
    inflate = Inflater.inflate
    compress = engine_server.compress_poll_response

    def spy_deflate(data: bytes, level: int = 6, window_bits: int = 15) -> bytes:
        seen.deflated.append(data[:16])
        return deflate(data, level, window_bits)

    def spy_inflate(self: Inflater, data: bytes | bytearray, max_size: int) -> bytes:
        seen.inflated += 1
        return inflate(self, data, max_size)

    async def spy_compress(response: Any, head: Any, packets: Any, settings: Any) -> Any:
        response = await compress(response, head, packets, settings)
        if len(response.body) > 1000 or "Content-Encoding" in dict(response.headers):
            coding = dict(response.headers).get("Content-Encoding")
            seen.polls.append((head.headers.get("accept-encoding"), coding))
        return response

    monkeypatch.setattr(engine_transports, "deflate_message", spy_deflate)
    monkeypatch.setattr(Inflater, "inflate", spy_inflate)
    monkeypatch.setattr(engine_server, "compress_poll_response", spy_compress)
    yield seen


async def test_chromium_negotiates_deflate_and_gets_gzip(spy: Spy) -> None:
    node, chromium = requirements(ROOT / "examples" / "chat")
    static = {"/": HERE / "compression_page.html", "/socket.io.min.js": CLIENT / "socket.io.min.js"}
    sio = trio_sio.Server(per_message_deflate=True, static_files=static, close_timeout=0.2)

    @sio.on("echo")
    async def echo(socket: trio_sio.Socket, text: str, binary: bytes) -> list[Any]:
        return [text, binary]

    @sio.on("push")
    async def push(socket: trio_sio.Socket) -> None:
        await socket.emit("pushed", TEXT, BINARY)

    @sio.on("push-plain")
    async def push_plain(socket: trio_sio.Socket) -> None:
        # a response of its own: mixed with packets that may be compressed, a polling
        # response is compressed (as by the JS server)
        await socket.compress(False).emit("plain", TEXT, BINARY)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        env = dict(os.environ, COMPRESSION_URL=f"http://127.0.0.1:{port}/", CHROMIUM=chromium)
        with trio.fail_after(60):
            done = await trio.run_process(
                [node, "compression_e2e.mjs"],
                cwd=HERE,
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        nursery.cancel_scope.cancel()
    report = done.stdout.decode() + done.stderr.decode()
    print(report, spy.inflated, spy.deflated, spy.polls, file=sys.stderr)
    assert done.returncode == 0, report
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    page = result["page"]
    for transport in ("websocket", "polling"):
        assert page[transport] == {
            "transport": transport,
            "echo": True,
            "pushed": True,
            "plain": True,
        }, report
    # the 101 response the browser got, and what it then sent and received compressed
    (handshake,) = result["handshakes"]
    extensions = {k.lower(): v for k, v in handshake.items()}["sec-websocket-extensions"]
    assert extensions.startswith("permessage-deflate; server_no_context_takeover"), extensions
    assert spy.inflated >= 2  # Chromium compresses every message once it is agreed
    assert any(s.startswith(b"461-0[") for s in spy.deflated), spy.deflated
    assert any(s.startswith(b'451-["pushed"') for s in spy.deflated), spy.deflated
    assert not any(s.startswith(b'451-["plain"') for s in spy.deflated), spy.deflated
    # polling: Chromium accepts gzip; the "plain" response went uncompressed
    assert "gzip" in result["encodings"], result
    assert ("gzip" in (spy.polls[0][0] or "")) and ("gzip" in [p[1] for p in spy.polls])
    assert None in [p[1] for p in spy.polls], spy.polls
