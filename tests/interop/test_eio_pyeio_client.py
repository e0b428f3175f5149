"""python-engineio's asyncio client against our Engine.IO server, on real loopback sockets.

Both peers run as subprocesses: ``eio_trio_server.py`` (our server, echo) and, once per
test, ``pyeio_client.py`` (``engineio.AsyncClient`` running one scenario and printing what
it saw as JSON). The server logs ``open``/``closed`` lines per session on stdout, which the
tests read to see the server's side. Every wait is bounded.

The peer versions are pinned in ``requirements.txt`` here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import pytest

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODES = ("polling", "websocket", "upgrade")
#: The transport a session of each mode starts on.
MODES_FIRST = {"polling": "polling", "websocket": "websocket", "upgrade": "polling"}
START_TIMEOUT = 15.0
CLIENT_TIMEOUT = 30.0  # the client bounds itself at 20 s; this is the last resort
LOG_WAIT = 5.0


def _require_peer() -> None:
    missing = [m for m in ("engineio", "aiohttp") if importlib.util.find_spec(m) is None]
    if missing:
        reason = (
            f"{', '.join(missing)} not installed: pip install -r tests/interop/requirements.txt"
        )
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"interop test cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)


def _env() -> dict[str, str]:
    """Test the working tree's trio_sio, whatever is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class TrioServer:
    """``eio_trio_server.py`` in a subprocess, with its log lines collected by a thread."""

    def __init__(self, ping_interval: float, ping_timeout: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "eio_trio_server.py", str(ping_interval), str(ping_timeout)],
            cwd=HERE,
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        try:
            first = self._lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            first = None
        if first is None or not first.strip().isdigit():
            self.stop()
            raise RuntimeError(f"eio_trio_server.py did not print its port (got {first!r})")
        self.url = f"http://127.0.0.1:{int(first)}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_line(self, prefix: str, timeout: float = LOG_WAIT) -> str:
        """The first log line starting with ``prefix``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log:
                if line.startswith(prefix):
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no server log line {prefix!r} in {timeout} s: {self.log}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the server exited; no log line {prefix!r}: {self.log}")
            self.log.append(line)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the server shuts down when its stdin closes
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[TrioServer]:
    """Our echo server with the default heartbeat (25 s / 20 s)."""
    _require_peer()
    srv = TrioServer(25.0, 20.0)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def fast_server() -> Iterator[TrioServer]:
    """Our echo server pinging every 0.2 s, expecting the pong within 0.2 s."""
    _require_peer()
    srv = TrioServer(0.2, 0.2)
    yield srv
    srv.stop()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run_client(url: str, mode: str, scenario: str, **opts: float) -> list[dict[str, Any]]:
    """Run ``pyeio_client.py`` once; its rounds, each checked to have no error."""
    args = [f"{name}={value}" for name, value in opts.items()]
    proc = subprocess.run(
        [sys.executable, "pyeio_client.py", url, mode, scenario, *args],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
    )
    log = "\n".join(proc.stderr.splitlines()[-60:])  # PYEIO_LOG=1 puts the client's log there
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, f"client failed:\n{proc.stdout}\n{log}"
    output = json.loads(lines[-1])
    assert "error" not in output, f"{output}\n{log}"
    rounds: list[dict[str, Any]] = output["rounds"]
    for result in rounds:
        assert "error" not in result, f"{result}\n{log}"
    return rounds


def expected_transport(mode: str) -> str:
    # python-engineio upgrades inside connect(), before it returns.
    return "polling" if mode == "polling" else "websocket"


def test_pyeio_connect(server: TrioServer, mode: str) -> None:
    [result] = run_client(server.url, mode, "connect")
    assert result["transport"] == expected_transport(mode)
    assert result["upgrades"] == ([] if mode == "websocket" else ["websocket"])
    assert result["ping_interval"] == 25.0
    assert result["state"] == "connected"
    assert result["disconnects"] == []
    sid = result["sid"]
    # The server saw the session start on the first transport of the mode.
    assert server.wait_line(f"open {sid} ") == f"open {sid} {MODES_FIRST[mode]}"


def test_pyeio_text_echo(server: TrioServer, mode: str) -> None:
    [result] = run_client(server.url, mode, "text")
    assert result["transport"] == expected_transport(mode)
    assert result["got"] == result["sent"]
    assert len(result["got"]) == 5


def test_pyeio_binary_echo(server: TrioServer, mode: str) -> None:
    [result] = run_client(server.url, mode, "binary")
    assert result["got"] == result["sent"]
    assert all("b" in m for m in result["got"])  # binary stays binary


def test_pyeio_burst_in_order(server: TrioServer, mode: str) -> None:
    """20 messages sent back-to-back all come back, in order."""
    [result] = run_client(server.url, mode, "burst")
    assert result["got"] == result["sent"]
    assert result["disconnects"] == []


def test_pyeio_server_burst(server: TrioServer, mode: str) -> None:
    """20 messages the server queues at once arrive in order.

    python-engineio refuses polling payloads of more than 16 packets
    (``Payload.max_decode_packets``), so the server must spread them over several polls.
    """
    [result] = run_client(server.url, mode, "server_burst")
    assert result["got"] == [{"t": f"burst {i}"} for i in range(20)]
    assert result["disconnects"] == []


def test_pyeio_200kb_round_trip(server: TrioServer, mode: str) -> None:
    [result] = run_client(server.url, mode, "large")
    assert result["got"] == result["sent"]
    assert [m["size"] for m in result["got"]] == [200_000, 204_800]


def test_pyeio_server_close(server: TrioServer, mode: str) -> None:
    """The server closes the session: python-engineio reports a server disconnect.

    That needs the CLOSE packet before the WebSocket closes (the Node reference server skips
    it on WebSocket, and python-engineio then reports "transport error"). Several rounds:
    the write of that last packet used to race with the close.
    """
    rounds = run_client(server.url, mode, "server_close", rounds=10)
    for result in rounds:
        sid = result["sid"]
        assert server.wait_line(f"closed {sid} ") == f"closed {sid} forced close"
    assert [r["got"] for r in rounds] == [[{"t": "before"}]] * 10
    assert [r["disconnects"] for r in rounds] == [["server disconnect"]] * 10


def test_pyeio_client_disconnect(server: TrioServer, mode: str) -> None:
    [result] = run_client(server.url, mode, "client_disconnect")
    assert result["got"] == [{"t": "hi"}]
    assert result["disconnects"] == ["client disconnect"]
    assert result["state"] == "disconnected"
    sid = result["sid"]
    assert server.wait_line(f"closed {sid} ") == f"closed {sid} transport close"


def test_pyeio_heartbeat_keeps_session(fast_server: TrioServer, mode: str) -> None:
    """Pings every 0.2 s, pong due within 0.2 s: 1.5 s without traffic keeps the session."""
    [result] = run_client(fast_server.url, mode, "heartbeat", idle=1.5)
    assert result["disconnects_during_idle"] == []
    assert result["state_after_idle"] == "connected"
    assert result["got"] == [
        {"t": "before idle"},
        {"t": "after idle"},
        {"t": f"transport:{expected_transport(mode)}"},
    ]
    sid = result["sid"]
    # The session was open throughout: its only close is the client's disconnect at the end.
    assert fast_server.wait_line(f"closed {sid} ") == f"closed {sid} transport close"


def _exchange(sock: socket.socket, conn: h11.Connection, request: h11.Request, body: bytes) -> Any:
    """Send one request on ``sock``; the response and its body, or None if the peer closed."""
    data = conn.send(request) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    try:
        sock.sendall(data)
    except OSError:
        return None
    response, chunks = None, []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = sock.recv(65536)
            except OSError:
                return None
            if not data:
                return None  # closed before the response was complete
            conn.receive_data(data)
        elif isinstance(event, h11.ConnectionClosed):
            return None
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            chunks.append(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return response, b"".join(chunks)


def test_pyeio_keepalive_after_get(server: TrioServer) -> None:
    """A connection that answered a GET without ``Connection: close`` takes the next request.

    aiohttp (python-engineio's HTTP client) keeps a pool of keep-alive connections and sends
    the next polling request on the one a GET just returned; this does the same by hand.
    """
    host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
    headers = [("Host", f"{host}:{port}")]
    with socket.create_connection((host, port), timeout=LOG_WAIT) as sock:
        conn = h11.Connection(h11.CLIENT)
        target = "/engine.io/?EIO=4&transport=polling"
        answer = _exchange(
            sock, conn, h11.Request(method="GET", target=target, headers=headers), b""
        )
        assert answer is not None
        response, body = answer
        assert response.status_code == 200
        sid = json.loads(body[1:])["sid"]
        if any(
            name == b"connection" and b"close" in value.lower() for name, value in response.headers
        ):
            return  # announced: a client opens a new connection
        conn.start_next_cycle()
        post = h11.Request(
            method="POST",
            target=f"{target}&sid={sid}",
            headers=[*headers, ("Content-Type", "text/plain"), ("Content-Length", "6")],
        )
        answer = _exchange(sock, conn, post, b"4hello")
        assert answer is not None, "the server closed the kept-alive connection"
        assert (answer[0].status_code, answer[1]) == (200, b"ok")
