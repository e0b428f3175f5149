"""Compression against the official Node client (socket.io-client 4.8.3, ``ws`` under it):
permessage-deflate negotiated and used both ways (from the start, and after the upgrade
from polling), ``compress(false)`` honoured, and polling responses gzip-compressed for a
client that asks (Node's fetch) and left alone for one that does not (the default XHR
transport, which sends no ``Accept-Encoding``).

Our server runs in the test's own Trio loop, so that spies can see what it compressed and
inflated; ``compression_node_client.mjs`` runs as a subprocess over loopback.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_sio
import trio_sio.engineio.server as engine_server
import trio_sio.engineio.transports as engine_transports
from trio_sio.protocol.deflate import Inflater

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
SCRIPT = "compression_node_client.mjs"


def payload() -> tuple[str, bytes]:
    """What the Node script sends (its TEXT and BINARY)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"

    def base36(n: int) -> str:
        out = ""
        while True:
            n, r = divmod(n, 36)
            out = digits[r] + out
            if not n:
                return out

    text = ",".join(base36(i) for i in range(20000))
    return text, text[:50000].encode("latin-1")


TEXT, BINARY = payload()


@dataclass
class Spy:
    deflated: list[bytes] = field(default_factory=list)  # the start of each compressed message
    inflated: int = 0
    polls: list[tuple[str | None, str | None]] = field(default_factory=list)


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
        coding = dict(response.headers).get("Content-Encoding")
        if len(response.body) > 1000 or coding:
            seen.polls.append((head.headers.get("accept-encoding"), coding))
        return response

    monkeypatch.setattr(engine_transports, "deflate_message", spy_deflate)
    monkeypatch.setattr(Inflater, "inflate", spy_inflate)
    monkeypatch.setattr(engine_server, "compress_poll_response", spy_compress)
    yield seen


def node() -> str:
    found = shutil.which("node")
    if found is None or not (HERE / "node_modules" / "socket.io-client").is_dir():
        pytest.skip("node or tests/interop/node_modules missing (npm ci in tests/interop)")
    return found


async def run_client(mode: str, spy: Spy) -> dict[str, Any]:
    sio = trio_sio.Server(per_message_deflate=True, close_timeout=0.2)

    @sio.on("echo")
    async def echo(socket: trio_sio.Socket, text: str, binary: bytes) -> list[Any]:
        assert (text, binary) == (TEXT, BINARY)
        return [text, binary]  # one ack argument: emitWithAck resolves with the first

    @sio.on("push")
    async def push(socket: trio_sio.Socket) -> None:
        await socket.emit("pushed", TEXT, BINARY)

    @sio.on("push-plain")
    async def push_plain(socket: trio_sio.Socket) -> None:
        # a response of its own: mixed with packets that may be compressed, a polling
        # response is compressed (as by the JS server)
        await socket.compress(False).emit("plain", TEXT, BINARY)

    command = [node(), SCRIPT]
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        with trio.fail_after(30):
            done = await trio.run_process(
                [*command, url, mode], cwd=HERE, capture_stdout=True, check=False
            )
        nursery.cancel_scope.cancel()
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert done.returncode == 0, result
    assert all(r["ok"] for r in result["results"].values()), result
    assert set(result["results"]) == {"echo", "pushed", "plain"}
    return result


@pytest.mark.parametrize("mode", ["websocket", "upgrade"])
async def test_websocket_permessage_deflate(spy: Spy, mode: str) -> None:
    result = await run_client(mode, spy)
    assert result["transport"] == "websocket"
    assert result["extensions"] == {
        "server_no_context_takeover": True,
        "client_no_context_takeover": True,
    }
    # the client compressed its large messages (the event and its attachment)
    assert spy.inflated >= 2
    # we compressed the ack and "pushed" (text and attachment each), never "plain"
    # (Engine.IO "4", then Socket.IO binary ack "6" / binary event "5", one attachment)
    starts = spy.deflated
    assert any(s.startswith(b"461-0[") for s in starts), starts
    assert any(s.startswith(b'451-["pushed"') for s in starts), starts
    assert not any(s.startswith(b'451-["plain"') for s in starts), starts
    assert sum(1 for s in starts if s == BINARY[:16]) == 2  # two attachments, not three
    assert not spy.polls  # nothing large went over polling, even when upgrading


async def test_fetch_polling_gets_gzip(spy: Spy) -> None:
    result = await run_client("fetch", spy)
    assert result["transport"] == "polling"
    compressed = [p for p in spy.polls if p[1] is not None]
    assert compressed and all(p[1] == "gzip" for p in compressed), spy.polls
    assert "gzip" in (compressed[0][0] or "")
    # "plain" travelled in a response of its own, uncompressed
    assert any(p[1] is None for p in spy.polls), spy.polls


async def test_xhr_polling_asks_for_no_compression(spy: Spy) -> None:
    result = await run_client("xhr", spy)
    assert result["transport"] == "polling"
    assert spy.polls and all(p == (None, None) for p in spy.polls), spy.polls
