"""Drive python-engineio's asyncio client through one scenario; print the outcome as JSON.

    python pyeio_client.py <url> <mode> <scenario> [name=value ...]

``mode`` is ``polling``, ``websocket`` or ``upgrade`` (polling first; python-engineio
upgrades during ``connect()``). The server is expected to behave as ``eio_trio_server.py``:
echo every message, close the session on "close-me", answer "transport" with
"transport:<name>" and "burst:<n>" with n messages at once.

Options:
    rounds=<n>               run the scenario n times, each on a new session (default 1).
    idle=<seconds>           the quiet time of the heartbeat scenario (default 1.5).

The one line printed on stdout is a JSON object ``{"rounds": [...]}``, one entry per round:
what the client saw (``sid``, ``transport`` after connecting, messages ``got``, the
``disconnects`` reasons, ``state``), with ``error`` when the round failed or timed out.
Messages are written as ``{"t": text}`` or ``{"b": hex}``, large ones by length and SHA-256.

Every wait is bounded; the whole run is bounded by ``RUN_LIMIT``. Set ``PYEIO_LOG=1`` to get
python-engineio's log on stderr.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import engineio

MODES = {
    "polling": ["polling"],
    "websocket": ["websocket"],
    "upgrade": ["polling", "websocket"],
}
WAIT = 5.0
RUN_LIMIT = 20.0

Message = str | bytes


def describe(message: Message) -> dict[str, str]:
    return {"t": message} if isinstance(message, str) else {"b": message.hex()}


def digest(message: Message) -> dict[str, Any]:
    data = message.encode() if isinstance(message, str) else message
    return {
        "kind": "text" if isinstance(message, str) else "binary",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


class Session:
    """An ``engineio.AsyncClient`` with its events recorded."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.client = engineio.AsyncClient(
            http_session=http, handle_sigint=False, logger=bool(os.environ.get("PYEIO_LOG"))
        )
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.disconnects: list[str] = []
        self.disconnected = asyncio.Event()
        # A plain function: python-engineio runs message handlers as tasks, started in order.
        self.client.on("message", self.messages.put_nowait)
        self.client.on("disconnect", self._on_disconnect)

    def _on_disconnect(self, reason: str = "") -> None:
        self.disconnects.append(str(reason))
        self.disconnected.set()

    async def receive(self) -> Message:
        return await asyncio.wait_for(self.messages.get(), WAIT)

    async def echo(self, message: Message) -> Message:
        await self.client.send(message)
        return await self.receive()


Scenario = Callable[[Session, dict[str, float]], Awaitable[dict[str, Any]]]


async def scenario_connect(s: Session, opts: dict[str, float]) -> dict[str, Any]:
    return {"upgrades": s.client.upgrades, "ping_interval": s.client.ping_interval}


async def scenario_text(s: Session, opts: dict[str, float]) -> dict[str, Any]:
    sent = ["hello", "ünïcödé €", "", "4", "b"]
    return {"sent": [describe(m) for m in sent], "got": [describe(await s.echo(m)) for m in sent]}


async def scenario_binary(s: Session, opts: dict[str, float]) -> dict[str, Any]:
    sent = [b"\x00\x01\xfe\xff", bytes(range(256)), b"b", b""]
    return {"sent": [describe(m) for m in sent], "got": [describe(await s.echo(m)) for m in sent]}


async def scenario_burst(s: Session, opts: dict[str, float]) -> dict[str, Any]:
    """20 messages sent back-to-back, before any echo is read."""
    sent: list[Message] = [f"text {i}" if i % 2 else bytes([i]) * (i + 1) for i in range(20)]
    for message in sent:
        await s.client.send(message)
    got = [await s.receive() for _ in sent]
    return {"sent": [describe(m) for m in sent], "got": [describe(m) for m in got]}


async def scenario_server_burst(s: Session, opts: dict[str, float]) -> dict[str, Any]:
    """The server queues 20 messages at once (a single polling payload)."""
    await s.client.send("burst:20")
    got = [describe(await s.receive()) for _ in range(20)]
    return {"got": got}


async def scenario_large(s: Session, opts: dict[str, float]) -> dict[str, Any]:
    sent: list[Message] = ["x€" * 50_000, bytes(range(256)) * 800]  # 200 KB and 204.8 KB
    for message in sent:
        await s.client.send(message)
    got = [await s.receive() for _ in sent]
    return {"sent": [digest(m) for m in sent], "got": [digest(m) for m in got]}


async def scenario_server_close(s: Session, opts: dict[str, float]) -> dict[str, Any]:
    await s.client.send("before")
    await s.client.send("close-me")
    got = [describe(await s.receive())]
    await asyncio.wait_for(s.disconnected.wait(), WAIT)
    # Not waiting for the read loop to end: after a CLOSE packet python-engineio's write loop
    # may take its WebSocket close timeout (5 s) to give up.
    return {"got": got}


async def scenario_client_disconnect(s: Session, opts: dict[str, float]) -> dict[str, Any]:
    got = [describe(await s.echo("hi"))]
    await asyncio.wait_for(s.client.disconnect(), WAIT)
    return {"got": got}


async def scenario_heartbeat(s: Session, opts: dict[str, float]) -> dict[str, Any]:
    got = [describe(await s.echo("before idle"))]
    await asyncio.sleep(opts.get("idle", 1.5))  # no traffic but the heartbeat
    during_idle = list(s.disconnects)
    state_after_idle = s.client.state
    got.append(describe(await s.echo("after idle")))
    got.append(describe(await s.echo("transport")))
    return {
        "got": got,
        "disconnects_during_idle": during_idle,
        "state_after_idle": state_after_idle,
    }


SCENARIOS: dict[str, Scenario] = {
    "connect": scenario_connect,
    "text": scenario_text,
    "binary": scenario_binary,
    "burst": scenario_burst,
    "server_burst": scenario_server_burst,
    "large": scenario_large,
    "server_close": scenario_server_close,
    "client_disconnect": scenario_client_disconnect,
    "heartbeat": scenario_heartbeat,
}


async def run_round(url: str, mode: str, scenario: Scenario, opts: dict[str, float]) -> Any:
    # aiohttp's defaults, as python-engineio uses them: pooled keep-alive connections.
    async with aiohttp.ClientSession() as http:
        s = Session(http)
        result: dict[str, Any] = {}
        try:
            await asyncio.wait_for(s.client.connect(url, transports=MODES[mode]), WAIT)
            result["sid"] = s.client.sid
            result["transport"] = s.client.transport()
            result.update(await scenario(s, opts))
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
        result["disconnects"] = list(s.disconnects)
        result["state"] = s.client.state
        if s.client.state == "connected":
            try:
                await asyncio.wait_for(s.client.disconnect(), WAIT)
            except Exception as exc:
                result.setdefault("error", f"disconnect: {type(exc).__name__}: {exc}")
        return result


async def run(url: str, mode: str, scenario: str, opts: dict[str, float]) -> list[Any]:
    return [
        await run_round(url, mode, SCENARIOS[scenario], opts)
        for _ in range(int(opts.get("rounds", 1)))
    ]


def main() -> None:
    url, mode, scenario, *rest = sys.argv[1:]
    opts = {name: float(value) for name, _, value in (arg.partition("=") for arg in rest)}
    output: dict[str, Any]
    try:
        rounds = asyncio.run(asyncio.wait_for(run(url, mode, scenario, opts), RUN_LIMIT))
        output = {"rounds": rounds}
    except TimeoutError:
        output = {"error": f"scenario {scenario} took over {RUN_LIMIT} s"}
    print(json.dumps(output), flush=True)


if __name__ == "__main__":
    main()
