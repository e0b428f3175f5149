"""Our client's manager events against socket.io-client's, both talking to the official Node
server (``sio_node_server.mjs``) through the same story: connect, a few pings, the server
killed, failed reconnection attempts, the server started again on the same port, reconnected.

socket.io-client (``manager_events_node_client.mjs``) and our client run side by side with
the same reconnection delay; each writes the events it sees, and the two sequences must have
the same names in the same order (the number of failed attempts depends on timing, so a run
of failed attempts is compared as one). Real processes and Trio's real clock; every wait is
bounded.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_sio

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
START_TIMEOUT = 15.0
LIMIT = 20.0
WAIT = 5.0

TRANSPORTS = {"websocket": ["websocket"], "polling": ["polling"]}


def _require_node() -> str:
    node = shutil.which("node")
    reason = None
    if node is None:
        reason = "node is not installed"
    elif not (HERE / "node_modules" / "socket.io-client").is_dir():
        reason = "node_modules/socket.io-client is missing: run `npm ci` in tests/interop"
    if reason is not None:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"interop test cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    assert node is not None
    return node


class Process:
    """A Node script; a thread collects its JSON lines (the first is the port, for the
    server). It exits when its stdin closes."""

    def __init__(self, node: str, *args: str, port_line: bool = False) -> None:
        self.proc = subprocess.Popen(
            [node, *args],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.port = 0
        if port_line:
            assert self.proc.stdout is not None
            ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
            line = self.proc.stdout.readline() if ready else ""
            if not line.strip().isdigit():
                self.stop()
                raise RuntimeError(f"{args[0]} did not print its port (got {line!r})")
            self.port = int(line)
        self.lines: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()


@pytest.fixture
def node() -> Iterator[str]:
    yield _require_node()


def _story(events: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The events without packets, a run of failed attempts folded into one, and the
    error messages left out (they are worded differently)."""
    out: list[tuple[str, Any]] = []
    for name, arg in events:
        if name in ("packet", "ping"):
            continue
        item = (name, arg if name in ("close", "socket:disconnect") else None)
        out.append(item)
    attempt = [("reconnect_attempt", None), ("error", None), ("reconnect_error", None)]
    folded: list[tuple[str, Any]] = []
    i = 0
    while i < len(out):
        if out[i : i + 3] == attempt and folded[-3:] == attempt:
            i += 3
            continue
        if out[i] == ("socket:connect_error", None) and folded[-1:] == [out[i]]:
            i += 1
            continue
        folded.append(out[i])
        i += 1
    return folded


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_manager_events_match_socket_io_client(node: str, transport: str) -> None:
    server = await trio.to_thread.run_sync(
        lambda: Process(node, "sio_node_server.mjs", "0", "300", "1000", port_line=True)
    )
    url = f"http://127.0.0.1:{server.port}"
    second: Process | None = None
    js = await trio.to_thread.run_sync(
        lambda: Process(
            node, "manager_events_node_client.mjs", url, json.dumps(TRANSPORTS[transport])
        )
    )
    ours: list[tuple[str, Any]] = []
    client = trio_sio.Client(
        url,
        transports=TRANSPORTS[transport],
        reconnection_delay=0.2,
        reconnection_delay_max=0.2,
        randomization_factor=0,
    )
    for name in ("open", "ping", "reconnect_attempt", "reconnect", "reconnect_failed"):
        client.io.on(name, lambda arg=None, name=name: ours.append((name, arg)))
    client.io.on("close", lambda reason: ours.append(("close", reason)))
    client.io.on("error", lambda exc: ours.append(("error", str(exc))))
    client.io.on("reconnect_error", lambda exc: ours.append(("reconnect_error", str(exc))))
    client.io.on("packet", lambda packet: ours.append(("packet", int(packet.type))))
    client.on("connect", lambda: ours.append(("socket:connect", None)))
    client.on("disconnect", lambda reason: ours.append(("socket:disconnect", reason)))
    client.on("connect_error", lambda err: ours.append(("socket:connect_error", str(err))))

    def theirs() -> list[tuple[str, Any]]:
        return [(e["ev"], e.get("arg", e.get("type"))) for e in list(js.lines)]

    async def both(predicate: Any) -> None:
        with trio.fail_after(WAIT):
            while not (predicate(ours) and predicate(theirs())):
                await trio.sleep(0.01)

    def count(name: str) -> Any:
        return lambda events: sum(1 for e in events if e[0] == name)

    try:
        with trio.fail_after(LIMIT):
            async with client:
                await both(lambda ev: count("ping")(ev) >= 2)
                await trio.to_thread.run_sync(server.kill)
                await both(lambda ev: count("reconnect_error")(ev) >= 2)
                second = await trio.to_thread.run_sync(
                    lambda: Process(
                        node,
                        "sio_node_server.mjs",
                        str(server.port),
                        "300",
                        "1000",
                        port_line=True,
                    )
                )
                await both(lambda ev: count("socket:connect")(ev) >= 2)
                await both(lambda ev: count("ping")(ev) >= 3)
    finally:
        js.stop()
        server.stop()
        if second is not None:
            second.stop()

    # Both saw the packets (CONNECT among them) and the pings.
    assert ("packet", 0) in ours and ("packet", 0) in theirs()
    # Manager events run in the manager's task and socket events in the socket's handler
    # tasks: each stream is in socket.io-client's order (between the two, only "open"
    # before "connect" and "reconnect" before the next "connect" are promised).
    for stream in (lambda e: not e[0].startswith("socket:"), lambda e: e[0].startswith("socket:")):
        mine = _story([e for e in ours if stream(e)])
        reference = _story([e for e in theirs() if stream(e)])
        # Ours closes at the end of the block ("close"/"disconnect" with "io client
        # disconnect"); socket.io-client was stopped by closing its process instead.
        assert mine[: len(reference)] == reference, (mine, reference)
        assert len(mine) - len(reference) <= 1
    story = _story(ours)
    assert story.index(("open", None)) < story.index(("socket:connect", None))
    assert story.index(("reconnect", None)) < len(story) - 1 - story[::-1].index(
        ("socket:connect", None)
    )
