"""permessage-deflate between our client and the official Node server (``socket.io`` with
``perMessageDeflate``, ``ws`` under it): agreed, and used both ways with messages that need
the compression context kept from one to the next."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import trio_sio

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def node_url() -> Iterator[str]:
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "socket.io").is_dir():
        reason = "node and node_modules/socket.io are needed (npm ci in tests/interop)"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    proc = subprocess.Popen(
        [node, "deflate_node_server.mjs"],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    line = proc.stdout.readline() if ready else ""
    try:
        assert line.strip().isdigit(), f"deflate_node_server.mjs did not start: {line!r}"
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"]])
@pytest.mark.parametrize("offer", [True, False])
async def test_deflate_with_the_node_server(
    node_url: str, transports: list[str], offer: bool
) -> None:
    big = "a compressible sentence, " * 4000
    with trio.fail_after(10):
        async with trio_sio.open_client(
            node_url, transports=transports, per_message_deflate=offer, reconnection=False
        ) as client:
            while client.transport != "websocket":
                await trio.sleep(0.01)
            info = await client.emit_with_ack("extensions", timeout=5)
            assert info["transport"] == "websocket"
            assert ("permessage-deflate" in (info["extensions"] or "")) is offer
            assert client.compressed is offer
            for i in range(3):
                reply = await client.emit_with_ack("echo", big, i, b"\x01" * 50_000, timeout=5)
                assert reply == (big, i, b"\x01" * 50_000)
