"""The client in real networks: behind a cookie-sticky load balancer (HAProxy, two server
processes), through an HTTP proxy (tinyproxy), and against a server that resets the
connection right after the WebSocket upgrade request.

Real processes on free loopback ports, Trio's real clock; every wait is bounded. HAProxy and
tinyproxy come from Debian (``apt-get install haproxy tinyproxy``, which
``tests/setup-system.sh`` does); without them these tests are skipped, except under CI.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_sio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
START_TIMEOUT = 15.0
LIMIT = 10.0  # per test
LISTENING = re.compile(rb"listening on (\d+)")

#: Our name for a transport setting → the client's ``transports``.
TRANSPORTS = {
    "polling": ("polling",),
    "websocket": ("websocket",),
    "upgrade": ("polling", "websocket"),
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _require(program: str) -> str:
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if found is None:
        reason = f"{program} is needed (apt-get install {program})"
        if _in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    text = log.read_text("utf-8", "replace") if log.exists() else ""
    raise RuntimeError(f"{what} did not start on port {port}:\n{text}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """Two trio_sio server processes: name → port."""
    workdir = tmp_path_factory.mktemp("nodes")
    procs: list[subprocess.Popen[bytes]] = []
    ports: dict[str, int] = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(key, None)
    try:
        for name in ("a", "b"):
            log = workdir / f"{name}.log"
            proc = subprocess.Popen(
                [sys.executable, str(HERE / "net_node.py"), "--name", name],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log.open("wb"),
                env=env,
            )
            procs.append(proc)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = LISTENING.search(line)
            if match is None:
                raise RuntimeError(f"node {name} did not start: {log.read_text()}")
            ports[name] = int(match.group(1))
        yield ports
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
            _stop(proc)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture(scope="module")
def haproxy(nodes: dict[str, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """HAProxy balancing round-robin over both nodes, sticky by an inserted cookie; its URL."""
    exe = _require("haproxy")
    workdir = tmp_path_factory.mktemp("haproxy")
    port = _free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(
        f"""global
    maxconn 256
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout tunnel 60s
frontend front
    bind 127.0.0.1:{port}
    default_backend nodes
backend nodes
    balance roundrobin
    cookie SERVERID insert indirect nocache
    server a 127.0.0.1:{nodes["a"]} cookie a
    server b 127.0.0.1:{nodes["b"]} cookie b
"""
    )
    log = workdir / "haproxy.log"
    proc = subprocess.Popen(
        [exe, "-db", "-f", str(config)], stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        _wait_listening(port, proc, "haproxy", log)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


class Tinyproxy:
    """tinyproxy with Basic authentication, logging every request."""

    def __init__(self, exe: str, workdir: Path) -> None:
        self.port = _free_port()
        self.log = workdir / "tinyproxy.log"
        self.log.touch()
        config = workdir / "tinyproxy.conf"
        config.write_text(
            f"""Port {self.port}
Listen 127.0.0.1
Timeout 600
LogFile "{self.log}"
LogLevel Info
MaxClients 64
Allow 127.0.0.1
BasicAuth user s3cret
"""
        )
        self.proc = subprocess.Popen(
            [exe, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_listening(self.port, self.proc, "tinyproxy", self.log)
        self.url = f"http://user:s3cret@127.0.0.1:{self.port}"

    def tunnels(self, port: int) -> int:
        """How many CONNECT tunnels to ``port`` the proxy opened so far."""
        text = self.log.read_text("utf-8", "replace")
        return len(re.findall(rf"CONNECT 127\.0\.0\.1:{port} ", text))


@pytest.fixture(scope="module")
def tinyproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tinyproxy]:
    proxy = Tinyproxy(_require("tinyproxy"), tmp_path_factory.mktemp("tinyproxy"))
    try:
        yield proxy
    finally:
        _stop(proxy.proc)


@pytest.fixture(params=list(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(key, raising=False)


async def _check_session(client: trio_sio.Client, transport: str) -> set[str]:
    """Several round trips (and the upgrade, if any); the nodes that answered."""
    if transport == "upgrade":
        while client.transport != "websocket":
            await trio.sleep(0.01)
    seen = set()
    for _ in range(6):
        who: dict[str, Any] = await client.emit_with_ack("whoami", timeout=5)
        assert who["transport"] == client.transport
        seen.add(who["node"])
        await trio.sleep(0.05)
    return seen


# -- sticky load balancer ---------------------------------------------------------------------


async def test_sticky_cookie_keeps_the_session_on_one_node(haproxy: str, transport: str) -> None:
    with trio.fail_after(LIMIT):
        for _ in range(2):  # round-robin: the second client lands on the other node
            async with trio_sio.open_client(
                haproxy, transports=TRANSPORTS[transport], reconnection=False
            ) as client:
                assert client.cookies is not None and "SERVERID" in client.cookies
                assert len(await _check_session(client, transport)) == 1


async def test_without_cookies_polling_breaks_behind_the_sticky_proxy(haproxy: str) -> None:
    """The counter-test: the same balancer without the jar sends the session's requests to
    both nodes, and one of them does not know the session."""
    with trio.fail_after(LIMIT):
        with pytest.raises(trio_sio.ConnectError):
            async with trio_sio.open_client(
                haproxy, transports=["polling"], cookies=False, reconnection=False
            ) as client:
                await _check_session(client, "polling")


# -- HTTP proxy -------------------------------------------------------------------------------


async def test_explicit_proxy(tinyproxy: Tinyproxy, nodes: dict[str, int], transport: str) -> None:
    port = nodes["a"]
    before = tinyproxy.tunnels(port)
    with trio.fail_after(LIMIT):
        async with trio_sio.open_client(
            f"http://127.0.0.1:{port}",
            transports=TRANSPORTS[transport],
            proxy=tinyproxy.url,
            reconnection=False,
        ) as client:
            assert await _check_session(client, transport) == {"a"}
    # polling: the GET and the POST connections; websocket: one; upgrade: three
    expected = {"polling": 2, "websocket": 1, "upgrade": 3}[transport]
    assert tinyproxy.tunnels(port) - before >= expected


async def test_proxy_from_the_environment(
    tinyproxy: Tinyproxy, nodes: dict[str, int], transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = nodes["b"]
    monkeypatch.setenv("HTTP_PROXY", tinyproxy.url)
    monkeypatch.setenv("NO_PROXY", "example.org")
    before = tinyproxy.tunnels(port)
    with trio.fail_after(LIMIT):
        async with trio_sio.open_client(
            f"http://127.0.0.1:{port}", transports=TRANSPORTS[transport], reconnection=False
        ) as client:
            assert await _check_session(client, transport) == {"b"}
    assert tinyproxy.tunnels(port) > before


async def test_no_proxy_and_proxy_false_bypass_it(
    nodes: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    url = f"http://127.0.0.1:{nodes['a']}"
    monkeypatch.setenv("HTTP_PROXY", dead)
    with trio.fail_after(LIMIT):
        with pytest.raises(trio_sio.ConnectError):
            async with trio_sio.open_client(url, reconnection=False):
                pass
        async with trio_sio.open_client(url, reconnection=False, proxy=False) as client:
            assert await _check_session(client, "upgrade") == {"a"}
        monkeypatch.setenv("NO_PROXY", "localhost, 127.0.0.1")
        async with trio_sio.open_client(url, reconnection=False) as client:
            assert await _check_session(client, "upgrade") == {"a"}


async def test_proxy_refusal_is_a_clear_connect_error(
    tinyproxy: Tinyproxy, nodes: dict[str, int]
) -> None:
    wrong = f"http://user:wrong@127.0.0.1:{tinyproxy.port}"
    for transports in (["polling"], ["websocket"]):
        with trio.fail_after(LIMIT):
            with pytest.raises(trio_sio.ConnectError) as info:
                async with trio_sio.open_client(
                    f"http://127.0.0.1:{nodes['a']}",
                    transports=transports,
                    proxy=wrong,
                    reconnection=False,
                ):
                    pass
        # tinyproxy answers 401 (RFC 9110 says 407): either way, the status is in the error
        assert re.search(r"refused CONNECT .*HTTP 40[17]", str(info.value)), info.value


# -- a reset after the upgrade request ----------------------------------------------------------


async def test_reset_after_the_websocket_request_fails_at_once(nursery: trio.Nursery) -> None:
    """The server reads the upgrade request, then resets the connection: the attempt fails
    at once, not after ``connect_timeout``."""

    async def reset_after_request(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
        # SO_LINGER with a zero timeout: close() sends RST.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await trio.aclose_forcefully(stream)

    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, reset_after_request, 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    start = trio.current_time()
    with trio.fail_after(5):
        with pytest.raises(trio_sio.ConnectError):
            async with trio_sio.open_client(
                f"http://127.0.0.1:{port}",
                transports=["websocket"],
                connect_timeout=20,
                reconnection=False,
            ):
                pass
    assert trio.current_time() - start < 2
