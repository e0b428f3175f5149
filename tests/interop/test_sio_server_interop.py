"""Our Socket.IO server against the official clients: socket.io-client (Node) and
python-socketio's ``AsyncClient``, over WebSocket, HTTP long-polling, and polling upgraded
to WebSocket.

Every process is real and talks over loopback: ``sio_trio_server.py`` (our server, one per
module) and, once per peer and transport, a client script (``sio_node_client.mjs`` or
``pysio_client.py``) that runs every scenario of the "emitting events" page in both
directions, checks what it can see, and prints its results as JSON. The tests below read
those results, one test per scenario, and check the server's side in the JSON lines the
server writes for what it received and sent.

Peers are pinned in ``package.json`` and ``requirements.txt`` here. Without them the tests
are skipped, except under CI. Every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
START_TIMEOUT = 15.0
CLIENT_TIMEOUT = 40.0  # the clients bound themselves at 25 s; this is the last resort
LOG_WAIT = 5.0

#: Our name for a transport setting → how each client script is told about it.
TRANSPORTS = {
    "websocket": {"node": '["websocket"]', "python": "websocket"},
    "polling": {"node": '["polling"]', "python": "polling"},
    "upgrade": {"node": '["polling","websocket"]', "python": "default"},
}
PEERS = ("node", "python")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"interop test cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _require(peer: str) -> list[str]:
    """The command that runs ``peer``'s client script; skip (fail under CI) without it."""
    if peer == "node":
        node = shutil.which("node")
        if node is None:
            _unavailable("node is not installed")
        if not (HERE / "node_modules" / "socket.io-client").is_dir():
            _unavailable("node_modules/socket.io-client is missing: run `npm ci` in tests/interop")
        assert node is not None
        return [node, "sio_node_client.mjs"]
    missing = [m for m in ("socketio", "aiohttp") if importlib.util.find_spec(m) is None]
    if missing:
        _unavailable(
            f"{', '.join(missing)} not installed: pip install -r tests/interop/requirements.txt"
        )
    return [sys.executable, "pysio_client.py"]


def _env() -> dict[str, str]:
    """Test the working tree's trio_sio, whatever is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class SioServer:
    """``sio_trio_server.py`` in a subprocess; its JSON log lines collected by a thread."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "sio_trio_server.py"],
            cwd=HERE,
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        try:
            first = self._lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            first = None
        if first is None or not first.strip().isdigit():
            self.stop()
            raise RuntimeError(f"sio_trio_server.py did not print its port (got {first!r})")
        self.url = f"http://127.0.0.1:{int(first)}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def _drain(self, timeout: float) -> bool:
        """Move waiting lines to ``log``; False once the server has exited."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return True
        while line is not None:
            self.log.append(json.loads(line))
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return True
        return False

    def entries(self, **match: Any) -> list[dict[str, Any]]:
        """The log entries seen so far whose fields equal ``match``."""
        self._drain(0)
        return [e for e in self.log if all(e.get(k) == v for k, v in match.items())]

    def wait_entry(self, timeout: float = LOG_WAIT, **match: Any) -> dict[str, Any]:
        """The first log entry matching, waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.entries(**match)
            if found:
                return found[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no server log entry {match} in {timeout} s")
            if not self._drain(remaining):
                raise AssertionError(f"the server exited; no log entry {match}")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the server shuts down when its stdin closes
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[SioServer]:
    srv = SioServer()
    yield srv
    srv.stop()
    # Handler failures are logged, never raised: make them visible here.
    errors = [line for line in srv.stderr if "Traceback" in line or "ERROR" in line]
    assert not errors, "\n".join(srv.stderr[-60:])


Run = dict[str, Any]


@pytest.fixture(scope="module")
def client_runs(server: SioServer) -> Callable[[str, str], Run]:
    """``run(peer, transport)``: the client script's output, run once per pair and kept."""
    cache: dict[tuple[str, str], Run] = {}

    def run(peer: str, transport: str) -> Run:
        key = (peer, transport)
        if key not in cache:
            command = _require(peer)
            try:
                proc = subprocess.run(
                    [*command, server.url, TRANSPORTS[transport][peer]],
                    cwd=HERE,
                    env=_env(),
                    capture_output=True,
                    text=True,
                    timeout=CLIENT_TIMEOUT,
                )
                lines = proc.stdout.strip().splitlines()
                output = json.loads(lines[-1]) if lines else {"error": "no output"}
                output["returncode"] = proc.returncode
                output["stderr"] = proc.stderr[-3000:]
            except subprocess.TimeoutExpired:
                output = {"error": f"the client ran longer than {CLIENT_TIMEOUT} s"}
            cache[key] = output
        return cache[key]

    return run


@pytest.fixture(params=PEERS)
def peer(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=list(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def run(client_runs: Callable[[str, str], Run], peer: str, transport: str) -> Run:
    output = client_runs(peer, transport)
    assert "error" not in output, f"{peer} client run failed: {output}"
    return output


def scenario(run: Run, name: str) -> Any:
    """The data of a scenario the client reported as passed (skip if not applicable)."""
    result = run["results"].get(name)
    assert result is not None, f"scenario {name} did not run: {run.get('stderr')}"
    if "skipped" in result:
        pytest.skip(result["skipped"])
    assert result["ok"], (
        f"{name} ({result.get('ms')} ms): {result.get('error')} {result.get('details', '')}\n"
        f"the client's stderr (end):\n{run.get('stderr', '')[-2000:]}"
    )
    return result.get("data")


def bytes_of(hex_text: str) -> dict[str, str]:
    """How the server log writes bytes."""
    return {"$bytes": hex_text}


def received(server: SioServer, sid: str, event: str) -> list[list[Any]]:
    """The args of every ``event`` the server received from ``sid``, as logged."""
    server.wait_entry(ev="event", sid=sid, event=event)
    return [e["args"] for e in server.entries(ev="event", sid=sid, event=event)]


# -- connecting ---------------------------------------------------------------------------


def test_connect(server: SioServer, run: Run, peer: str, transport: str) -> None:
    scenario(run, "connect")
    entry = server.wait_entry(ev="connection", nsp="/", sid=run["sids"]["a"])
    expected_auth = (
        {"token": "t-main", "user": "node-a"}
        if peer == "node"
        else {"token": "secret", "user": "py-a"}
    )
    assert entry["auth"] == expected_auth
    assert entry["query"]["q"] == "1"
    # The session started on polling unless only WebSocket was allowed (the handshake
    # request's query says so); python-engineio upgrades before connecting the namespace.
    first = "websocket" if transport == "websocket" else "polling"
    assert entry["query"]["transport"] == first
    if transport != "upgrade":
        assert entry["transport"] == first


def test_transport(run: Run, transport: str) -> None:
    """After the upgrade both sides agree that the session runs on WebSocket."""
    data = scenario(run, "transport")
    expected = "polling" if transport == "polling" else "websocket"
    assert data == {"client": expected, "server": expected}


# -- server → client ----------------------------------------------------------------------


def test_server_emit_basic(run: Run) -> None:
    assert scenario(run, "server_emit_basic") == ["world"]


def test_server_emit_multi_args_and_binary(run: Run, peer: str) -> None:
    """``emit("hello", 1, "2", {3: "4", 5: b"\\x06"})``: int keys become strings, bytes
    arrive as binary (a Buffer in Node)."""
    args = scenario(run, "server_emit_multi")
    binary = {"$bytes": "06", "type": "Buffer"} if peer == "node" else bytes_of("06")
    assert args == [1, "2", {"3": "4", "5": binary}]


def test_server_emit_datetime(run: Run) -> None:
    assert scenario(run, "server_emit_date") == [
        "1970-01-01T00:00:00.000Z",
        "2024-05-06T07:08:09.123Z",
    ]


def test_server_emit_sio_json_hook(run: Run) -> None:
    assert scenario(run, "server_emit_hook") == [{"hp": 42}]


def test_server_emit_dataclass(run: Run) -> None:
    assert scenario(run, "server_emit_dataclass") == [{"x": 1, "y": 2, "label": "p"}]


def test_server_emit_set_is_refused(server: SioServer, run: Run) -> None:
    data = scenario(run, "server_set_typeerror")
    assert data["error"] == "TypeError"
    assert "set" in data["message"]
    assert server.entries(ev="sent", event="set-event") == []


# -- client → server ----------------------------------------------------------------------


def test_client_emit_basic(server: SioServer, run: Run) -> None:
    scenario(run, "client_emit_basic")
    assert received(server, run["sids"]["a"], "hello") == [["world"]]


def test_client_emit_multi_args_and_binary(server: SioServer, run: Run, peer: str) -> None:
    scenario(run, "client_emit_multi")
    sid = run["sids"]["a"]
    assert received(server, sid, "hello-multi") == [[1, "2", {"3": "4", "5": bytes_of("06")}]]
    [types] = received(server, sid, "types")
    if peer == "node":
        # Date → its ISO string, toJSON() used, Map/Set serialized by hand, Uint8Array and
        # ArrayBuffer → bytes.
        assert types == [
            "1970-01-01T00:00:00.000Z",
            {"hp": 42},
            [["k", 1]],
            ["s"],
            bytes_of("010203"),
            bytes_of("0405"),
            {"nested": [bytes_of("07")]},
        ]
    else:
        assert types == [{"nested": [bytes_of("07")]}, bytes_of("010203"), [["k", 1]], ["s"]]


def test_echo_ack_with_several_args(server: SioServer, run: Run) -> None:
    """A handler returning a tuple acks with several args; binary goes both ways."""
    data = scenario(run, "echo")
    assert len(data["ack"]) == len(data["echoed"]) == 4
    assert received(server, run["sids"]["a"], "echo") == [
        [1, "2", {"3": "4", "5": bytes_of("06")}, [bytes_of(""), None, True]]
    ]


# -- acknowledgements ---------------------------------------------------------------------


def test_ack_client_to_server(server: SioServer, run: Run, peer: str) -> None:
    scenario(run, "ack_client_to_server")
    calls = received(server, run["sids"]["a"], "update item")
    assert calls == [["1", {"name": "updated"}]] * (3 if peer == "node" else 2)


def test_ack_client_side_timeout(server: SioServer, run: Run) -> None:
    """``socket.timeout(500).emit(...)`` to an event the server never acknowledges."""
    data = scenario(run, "ack_client_timeout")
    assert data.get("err", data.get("error")) in ("operation has timed out", "TimeoutError")
    # The server did receive the event: the client timed out on the missing ack.
    assert received(server, run["sids"]["a"], "no-answer")


def test_ack_server_to_client(run: Run) -> None:
    """``emit_with_ack``, without and with a timeout: one ack arg → the value, several →
    a tuple."""
    data = scenario(run, "ack_server_to_client")
    assert data["single"] == {"reply": ["only"]}
    assert data["multi"]["reply"][:2] == ["answer", "q1"]
    assert data["within"] == {"reply": ["answer", "w1"]}


def test_ack_server_side_timeout(run: Run) -> None:
    """``emit_with_ack(timeout=0.3)`` to a client that does not answer in time."""
    assert scenario(run, "ack_server_timeout") == {
        "error": "AckTimeoutError",
        "message": "operation has timed out",
    }


def test_ack_server_callbacks(run: Run) -> None:
    """``timeout(t).emit(callback=cb)``: cb(None, *args) or cb(AckTimeoutError); and
    ``emit(callback=cb)`` without a timeout: cb(*args)."""
    assert scenario(run, "ack_server_callback") == {
        "ok": {"err": None, "args": ["answer", "cb1"]},
        "late": {"err": "AckTimeoutError", "args": []},
        "plain": {"args": ["answer", "p1"]},
    }


# -- volatile -----------------------------------------------------------------------------


def test_volatile_from_server(server: SioServer, run: Run) -> None:
    data = scenario(run, "volatile_server")
    sid = run["sids"]["a"]
    server.wait_entry(ev="sent", sid=sid, event="volatile-done")
    assert len(server.entries(ev="sent", sid=sid, event="position")) == 5
    assert 1 <= data["received"] <= 5


def test_volatile_from_client(server: SioServer, run: Run) -> None:
    data = scenario(run, "volatile_client")
    got = [args[0] for args in received(server, run["sids"]["a"], "vping")]
    assert got == data["values"]


def _raw_polling_session(url: str) -> Callable[[str | None], str]:
    """A bare Engine.IO polling session: ``exchange(None)`` GETs, ``exchange(body)`` POSTs."""
    base = f"{url}/socket.io/?EIO=4&transport=polling"

    def request(target: str, body: str | None) -> str:
        data = None if body is None else body.encode()
        req = urllib.request.Request(target, data=data, method="GET" if body is None else "POST")
        req.add_header("Content-Type", "text/plain;charset=UTF-8")
        with urllib.request.urlopen(req, timeout=LOG_WAIT) as response:
            return str(response.read().decode())

    sid = json.loads(request(base, None)[1:])["sid"]
    return lambda body: request(f"{base}&sid={sid}", body)


def test_volatile_dropped_without_pending_poll(server: SioServer) -> None:
    """Like the JS server (``!transport.writable`` → discard), a volatile emit to a polling
    client that has no GET pending is dropped; the regular emit after it is delivered.

    No official client leaves that window open long enough (they poll again at once), so
    this test plays the client with bare HTTP requests.
    """
    exchange = _raw_polling_session(server.url)
    assert exchange("40") == "ok"
    polled = ""
    deadline = time.monotonic() + LOG_WAIT
    while '"point"' not in polled:  # the events emitted on connection
        assert time.monotonic() < deadline, polled
        polled += exchange(None)
    assert exchange('42["volatile-burst",3]') == "ok"
    # The server emits position 0..2 (20 ms apart) and then volatile-done, with no GET
    # pending all along.
    time.sleep(0.3)
    polled = ""
    while '"volatile-done"' not in polled:
        assert time.monotonic() < deadline, polled
        polled += exchange(None)
    assert exchange("41") == "ok"
    assert '"position"' not in polled, polled


# -- rooms and broadcasts -----------------------------------------------------------------


def test_rooms_and_broadcasts(server: SioServer, run: Run) -> None:
    """``socket.to(room)``, ``sio.to(room).except_(muted)``, ``socket.broadcast`` between
    two clients; each receives exactly what it should."""
    data = scenario(run, "rooms")
    assert received(server, run["sids"]["a"], "join") == [[data["room"]]]
    assert received(server, run["sids"]["b"], "join") == [[data["room"]], [data["muted"]]]
    assert received(server, run["sids"]["b"], "leave") == [[data["muted"]]]


def test_broadcast_emit_with_ack(run: Run) -> None:
    """``sio.to(room).timeout(t).emit_with_ack(...)``: all replies, or AckTimeoutError
    with the replies that came; ``[]`` at once for an empty room."""
    assert scenario(run, "broadcast_ack") == {
        "all": {"replies": ["A", "B"]},
        "some": {"error": "AckTimeoutError", "replies": ["A"]},
        "none": {"replies": []},
    }


# -- namespaces ---------------------------------------------------------------------------


def test_namespace_multiplexed(server: SioServer, run: Run) -> None:
    scenario(run, "namespace_admin")
    entry = server.wait_entry(ev="connection", nsp="/admin", sid=run["sids"]["admin"])
    assert entry["auth"]["token"] == "secret"


def test_namespace_middleware_refusal(server: SioServer, run: Run) -> None:
    """A middleware raising ``ConnectionRefused("not authorized", data)``: the client gets
    ``connect_error`` with that message and data."""
    data = scenario(run, "namespace_refused")
    assert data["message"] == "not authorized"
    assert data["data"] == {"code": 403, "reason": "bad token"}
    assert server.wait_entry(ev="refused", nsp="/admin")["auth"] == {"token": "bad"}


def test_disconnect(server: SioServer, run: Run, peer: str) -> None:
    scenario(run, "disconnect")
    sids = run["sids"]
    for sid in (sids["a"], sids["b"]):
        reason = server.wait_entry(ev="disconnect", nsp="/", sid=sid)["reason"]
        if peer == "node":
            assert reason == "client namespace disconnect"
        else:
            # python-socketio queues its DISCONNECT packets and then closes the transport
            # before they are written, so the Node reference server reports "transport
            # close" as well (and would report the other reason if they got through).
            assert reason in ("client namespace disconnect", "transport close")
    reason = server.wait_entry(ev="disconnect", nsp="/admin", sid=sids["admin"])["reason"]
    if peer == "node":
        assert reason == "client namespace disconnect"
