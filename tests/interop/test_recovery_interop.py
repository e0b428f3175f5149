"""Connection state recovery across implementations, over real loopback TCP: the official
``socket.io-client`` against our server, and our client against the official ``socket.io``
server (both pinned in package.json, 4.8.3).

The client reaches the server through a :class:`~tcp_proxy.TcpProxy`, which cuts the
connection with a TCP reset (no goodbye of any protocol) and keeps the client out while the
server broadcasts. Then the client comes back: it must get its socket (same id, rooms, data)
and the events it missed, once each, in order, before the new ones. A session kept longer
than the server's ``maxDisconnectionDuration`` is not recovered, nor is one the client left
cleanly; both end in a plain new connection.

Both servers run the same small app (``csr_trio_server.py``, ``csr_node_server.mjs``) driven
by JSON commands on stdin; the official client is ``csr_node_client.mjs``. Every wait is
bounded. Without node or node_modules the tests are skipped, except under CI.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from tcp_proxy import TcpProxy

import trio_sio

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WAIT = 10.0
PING_MS = 1000  # heartbeats: the server notices a dead polling client within 2 s
DURATION_MS = 6000  # maxDisconnectionDuration
SHORT_MS = 1500  # ... for the expiry tests
RECOVERABLE = {"transport close", "transport error", "ping timeout"}

TRANSPORTS = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "upgrade": ["polling", "websocket"],
}

Entry = dict[str, Any]


def _node() -> str:
    node = shutil.which("node")
    reason = None
    if node is None:
        reason = "node is not installed"
    elif not (HERE / "node_modules" / "socket.io").is_dir():
        reason = "tests/interop/node_modules is missing: run `npm ci` in tests/interop"
    if reason is not None:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"interop test cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    assert node is not None
    return node


def _env() -> dict[str, str]:
    """Test the working tree's trio_sio, whatever is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class Peer:
    """A script in a subprocess that writes JSON lines and takes commands on stdin."""

    def __init__(self, command: list[str], port_first: bool) -> None:
        self.name = Path(command[1]).name
        self.proc = subprocess.Popen(
            command,
            cwd=HERE,
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[Entry] = []  # read, not yet taken by a wait
        self._taken: list[Entry] = []
        self.stderr: list[str] = []
        threading.Thread(
            target=self._pump, args=(self.proc.stdout, self._lines), daemon=True
        ).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, None), daemon=True).start()
        self._ids = itertools.count(1)
        self.port = 0
        if port_first:
            line = self._next(WAIT)
            if line is None or not line.strip().isdigit():
                self.stop()
                raise RuntimeError(f"{self.name} did not print its port (got {line!r})")
            self.port = int(line)

    def _pump(self, stream: Any, lines: queue.Queue[str | None] | None) -> None:
        for line in stream:
            if lines is None:
                self.stderr.append(line.rstrip("\n"))
            else:
                lines.put(line.rstrip("\n"))
        if lines is not None:
            lines.put(None)

    def _next(self, timeout: float) -> str | None:
        try:
            return self._lines.get(timeout=max(timeout, 0))
        except queue.Empty:
            return None

    def poll(self) -> None:
        """Read the lines already there."""
        while (line := self._next(0)) is not None:
            self.seen.append(json.loads(line))

    def wait(self, match: Callable[[Entry], bool] | None = None, **fields: Any) -> Entry:
        """Take the first line (read or to come) that has ``fields`` (and ``match``); the
        lines before it are taken too and returned by :meth:`taken`."""
        deadline = time.monotonic() + WAIT
        while True:
            for index, entry in enumerate(self.seen):
                if all(entry.get(k) == v for k, v in fields.items()) and (
                    match is None or match(entry)
                ):
                    self._taken, self.seen = self.seen[:index], self.seen[index + 1 :]
                    return entry
            line = self._next(deadline - time.monotonic())
            if line is None:
                tail = "\n".join(self.stderr[-30:])
                raise AssertionError(f"{self.name}: no line {fields} in {WAIT} s\n{tail}")
            self.seen.append(json.loads(line))

    def taken(self) -> list[Entry]:
        """The lines skipped by the last :meth:`wait`."""
        return self._taken

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def command(self, op: str, event: str, *args: Any, to: tuple[str, ...] = ()) -> None:
        """Have the server emit; returns once it has."""
        command_id = next(self._ids)
        payload = {"id": command_id, "op": op, "to": list(to), "event": event, "args": args}
        self.send(json.dumps(payload))
        self.wait(ev="done", id=command_id)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start() -> Iterator[Callable[..., Peer]]:
    """``start(command, port_first)``: a :class:`Peer`, stopped after the test."""
    peers: list[Peer] = []

    def run(command: list[str], port_first: bool = False) -> Peer:
        peer = Peer(command, port_first)
        peers.append(peer)
        return peer

    yield run
    for peer in reversed(peers):
        peer.stop()
    errors = [line for peer in peers for line in peer.stderr if "Traceback" in line]
    assert not errors, "\n".join(line for peer in peers for line in peer.stderr)


def strip_offsets(events: list[Entry]) -> list[list[Any]]:
    """``[event, *args]`` of each event line, without the offset the official client leaves
    as the last argument (checked to be a string, and distinct)."""
    offsets = [e["args"][-1] for e in events]
    assert all(isinstance(o, str) for o in offsets), events
    assert len(set(offsets)) == len(offsets), offsets
    return [[e["event"], *e["args"][:-1]] for e in events]


def broadcast_while_down(server: Peer, sid: str) -> None:
    server.command("emit", "tick", 1, to=("r1",))
    server.command("emit", "tick", 2, {"deep": [1, "x"]})
    server.command("emit", "other", 3, to=("r2",))  # not for it
    server.command("emit", "mine", 4, to=(sid,))
    server.command("volatile", "lost", 5)  # volatile: never kept


MISSED = [["tick", 1], ["tick", 2, {"deep": [1, "x"]}], ["mine", 4]]


# -- the official client against our server -------------------------------------------------
def our_server(start: Callable[..., Peer], duration_ms: int) -> Peer:
    _node()  # the client needs it; skip before starting anything
    return start([sys.executable, "csr_trio_server.py", str(duration_ms), str(PING_MS)], True)


def node_client(start: Callable[..., Peer], port: int, transport: str) -> Peer:
    url = f"http://127.0.0.1:{port}"
    return start([_node(), "csr_node_client.mjs", url, json.dumps(TRANSPORTS[transport])])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_official_client_recovers_from_our_server(
    start: Callable[..., Peer], transport: str
) -> None:
    server = our_server(start, DURATION_MS)
    with TcpProxy(server.port) as proxy:
        client = node_client(start, proxy.port, transport)
        sid = client.wait(ev="connect", recovered=False)["id"]
        seen = server.wait(ev="connection", sid=sid)
        assert (seen["recovered"], seen["rooms"], seen["data"]) == (False, ["r1"], {"name": "node"})
        if transport == "upgrade":
            time.sleep(0.5)  # cut after the upgrade to WebSocket
        server.command("emit", "tick", 0, to=("r1",))
        assert strip_offsets([client.wait(ev="event")]) == [["tick", 0]]

        proxy.down()
        reason = server.wait(ev="disconnect", sid=sid)["reason"]
        assert reason in RECOVERABLE
        assert client.wait(ev="disconnect")["reason"] in RECOVERABLE
        broadcast_while_down(server, sid)
        proxy.up()

        back = client.wait(ev="connect")
        assert back == {"ev": "connect", "id": sid, "recovered": True}
        # the missed events are handled before the "connect" event, as with a JS server
        assert strip_offsets(client.taken()) == MISSED
        seen = server.wait(ev="connection", sid=sid)
        assert (seen["recovered"], seen["rooms"], seen["data"]) == (True, ["r1"], {"name": "node"})
        server.command("emit", "tick", 6, to=("r1",))
        assert strip_offsets([client.wait(ev="event")]) == [["tick", 6]]

        # a clean disconnect is not recovered
        client.send("disconnect")
        reason = server.wait(ev="disconnect", sid=sid)["reason"]
        assert reason == "client namespace disconnect"
        server.command("emit", "tick", 7, to=("r1",))
        client.send("connect")
        again = client.wait(ev="connect")
        assert again["recovered"] is False and again["id"] != sid
        server.wait(ev="connection", sid=again["id"])  # it has joined "r1" (auth.rooms)
        server.command("emit", "tick", 8, to=("r1",))
        assert strip_offsets([client.wait(ev="event")]) == [["tick", 8]]
        assert client.taken() == []


def test_official_client_after_expiry_is_a_new_connection(start: Callable[..., Peer]) -> None:
    server = our_server(start, SHORT_MS)
    with TcpProxy(server.port) as proxy:
        client = node_client(start, proxy.port, "websocket")
        sid = client.wait(ev="connect", recovered=False)["id"]
        server.command("emit", "tick", 0, to=("r1",))
        client.wait(ev="event")
        proxy.down()
        server.wait(ev="disconnect", sid=sid)
        server.command("emit", "tick", 1, to=("r1",))
        time.sleep(SHORT_MS / 1000 + 1)
        proxy.up()
        again = client.wait(ev="connect")
        assert again["recovered"] is False and again["id"] != sid
        assert client.taken() == [{"ev": "disconnect", "reason": "transport close"}]
        seen = server.wait(ev="connection", sid=again["id"])
        assert (seen["recovered"], seen["rooms"]) == (False, ["r1"])  # from auth again
        server.command("emit", "tick", 2, to=("r1",))
        assert strip_offsets([client.wait(ev="event")]) == [["tick", 2]]


def test_official_client_back_before_our_server_noticed(start: Callable[..., Peer]) -> None:
    """Over polling, a client that lost its connection is back long before the heartbeat
    would say so: the server noticed at once that its parked GET's connection closed (as
    the JS server does), so the session was kept and is recovered."""
    _node()
    server = start([sys.executable, "csr_trio_server.py", str(DURATION_MS), "25000"], True)
    with TcpProxy(server.port) as proxy:
        client = node_client(start, proxy.port, "polling")
        sid = client.wait(ev="connect", recovered=False)["id"]
        server.command("emit", "tick", 0, to=("r1",))
        client.wait(ev="event")
        # The GET that brought the event is answered; let the client's next one reach the
        # server and park there: the cut is then what the server notices at once. (Cut
        # while no GET is parked, the server could only notice at the next heartbeat, and
        # the pid of a socket it still believes connected gets a new socket.)
        time.sleep(0.5)
        proxy.down()
        assert client.wait(ev="disconnect")["reason"] in RECOVERABLE
        # Noticed at once, long before the heartbeat (25 s) would have said so.
        assert server.wait(ev="disconnect", sid=sid)["reason"] == "transport close"
        server.command("emit", "tick", 1, to=("r1",))  # missed: kept for the session
        proxy.up()
        assert client.wait(ev="connect") == {"ev": "connect", "id": sid, "recovered": True}
        assert strip_offsets(client.taken()) == [["tick", 1]]
        assert server.wait(ev="connection", sid=sid)["recovered"] is True


# -- our client against the official server --------------------------------------------------
async def wait_until(condition: Callable[[], object]) -> None:
    with trio.fail_after(WAIT):
        while not condition():
            await trio.sleep(0.01)


async def server_wait(server: Peer, **fields: Any) -> Entry:
    """:meth:`Peer.wait` without blocking Trio."""
    return await trio.to_thread.run_sync(lambda: server.wait(**fields))


async def server_command(
    server: Peer, op: str, event: str, *args: Any, to: tuple[str, ...] = ()
) -> None:
    await trio.to_thread.run_sync(lambda: server.command(op, event, *args, to=to))


def our_client(port: int, transport: str) -> tuple[trio_sio.Client, list[tuple[Any, ...]]]:
    client = trio_sio.Client(
        f"http://127.0.0.1:{port}",
        transports=TRANSPORTS[transport],
        auth={"name": "py", "rooms": ["r1"]},
        reconnection_delay=0.1,
        reconnection_delay_max=0.1,
        randomization_factor=0,
        # a reset that comes right after the WebSocket upgrade request leaves that attempt
        # hanging until this timeout (trio-websocket waits for a handshake that never comes)
        connect_timeout=2,
    )
    got: list[tuple[Any, ...]] = []
    client.on("connect", lambda: got.append(("connect", client.id, client.recovered)))
    client.on_any(lambda event, *args: got.append((event, *args)))
    return client, got


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_our_client_recovers_from_the_node_server(
    start: Callable[..., Peer], transport: str
) -> None:
    server = start([_node(), "csr_node_server.mjs", str(DURATION_MS), str(PING_MS)], True)
    with TcpProxy(server.port) as proxy:
        client, got = our_client(proxy.port, transport)
        async with client:
            sid = client.id
            assert sid is not None and client.recovered is False
            seen = await server_wait(server, ev="connection", sid=sid)
            assert (seen["recovered"], seen["rooms"], seen["data"]) == (
                False,
                ["r1"],
                {"name": "py"},
            )
            if transport == "upgrade":
                await wait_until(lambda: client.transport == "websocket")
            await server_command(server, "emit", "tick", 0, to=("r1",))
            await wait_until(lambda: ("tick", 0) in got)

            proxy.down()
            reason = (await server_wait(server, ev="disconnect", sid=sid))["reason"]
            assert reason in RECOVERABLE
            await wait_until(lambda: not client.connected)
            for op, event, args, to in [
                ("emit", "tick", (1,), ("r1",)),
                ("emit", "tick", (2, {"deep": [1, "x"]}), ()),
                ("emit", "other", (3,), ("r2",)),
                ("emit", "mine", (4,), (sid,)),
                ("volatile", "lost", (5,), ()),
            ]:
                await server_command(server, op, event, *args, to=to)
            del got[:]
            proxy.up()

            await wait_until(lambda: len(got) == 4)
            assert client.recovered and client.id == sid
            # missed events first, offsets taken off, then the "connect" handler
            assert got == [*map(tuple, MISSED), ("connect", sid, True)]
            seen = await server_wait(server, ev="connection", sid=sid)
            assert (seen["recovered"], seen["rooms"], seen["data"]) == (
                True,
                ["r1"],
                {"name": "py"},
            )
            await server_command(server, "emit", "tick", 6, to=("r1",))
            await wait_until(lambda: len(got) == 5)
            assert got[-1] == ("tick", 6)

            # a clean disconnect is not recovered
            await client.main.disconnect()
            reason = (await server_wait(server, ev="disconnect", sid=sid))["reason"]
            assert reason == "client namespace disconnect"
            await server_command(server, "emit", "tick", 7, to=("r1",))
            await client.main.connect()
            assert client.recovered is False and client.id != sid
            await server_wait(server, ev="connection", sid=client.id)
            await server_command(server, "emit", "tick", 8, to=("r1",))
            await wait_until(lambda: got[-1] == ("tick", 8))
            assert got[5:] == [("connect", client.id, False), ("tick", 8)]


async def test_our_client_after_expiry_is_a_new_connection(start: Callable[..., Peer]) -> None:
    server = start([_node(), "csr_node_server.mjs", str(SHORT_MS), str(PING_MS)], True)
    with TcpProxy(server.port) as proxy:
        client, got = our_client(proxy.port, "websocket")
        async with client:
            sid = client.id
            await server_command(server, "emit", "tick", 0, to=("r1",))
            await wait_until(lambda: ("tick", 0) in got)
            proxy.down()
            await server_wait(server, ev="disconnect", sid=sid)
            await server_command(server, "emit", "tick", 1, to=("r1",))
            await trio.sleep(SHORT_MS / 1000 + 1)
            proxy.up()
            await wait_until(lambda: len(got) == 3)
            assert got[-1] == ("connect", client.id, False) and client.id != sid
            seen = await server_wait(server, ev="connection", sid=client.id)
            assert (seen["recovered"], seen["rooms"]) == (False, ["r1"])
            await server_command(server, "emit", "tick", 2, to=("r1",))
            await wait_until(lambda: len(got) == 4)
            assert got[-1] == ("tick", 2)
