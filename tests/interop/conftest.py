"""Fixtures that run the official Node peers as subprocesses.

The Node dependencies come from ``package.json`` here (``npm ci`` in this directory).
Without ``node`` or ``node_modules`` the interop tests are skipped, except under CI
(``CI`` set and not ``false``/``0``), where that is an error.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_START_TIMEOUT = 15.0


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _require_node(package: str) -> str:
    """The path of ``node``; skip (fail under CI) when it or ``package`` is missing."""
    node = shutil.which("node")
    reason = None
    if node is None:
        reason = "node is not installed"
    elif not (HERE / "node_modules" / package).is_dir():
        reason = f"node_modules/{package} is missing: run `npm ci` in tests/interop"
    if reason is not None:
        if _in_ci():
            pytest.fail(f"interop test cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    assert node is not None
    return node


def _read_port(proc: subprocess.Popen[str], script: str) -> int:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], _START_TIMEOUT)
    line = proc.stdout.readline() if ready else ""
    if not line.strip().isdigit():
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{script} did not print its port (got {line!r})")
    return int(line)


EioServerFactory = Callable[..., int]


@pytest.fixture(scope="session")
def eio_node_server_factory() -> Iterator[EioServerFactory]:
    """Start ``eio_node_server.mjs`` echo servers; returns ``start(ping_interval, ping_timeout)``.

    ``start`` returns the port; one server runs per distinct setting for the session.
    """
    servers: dict[tuple[int, int], tuple[subprocess.Popen[str], int]] = {}

    def start(ping_interval: int = 25000, ping_timeout: int = 20000) -> int:
        key = (ping_interval, ping_timeout)
        if key not in servers:
            node = _require_node("engine.io")
            proc = subprocess.Popen(
                [node, "eio_node_server.mjs", "0", str(ping_interval), str(ping_timeout)],
                cwd=HERE,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            servers[key] = (proc, _read_port(proc, "eio_node_server.mjs"))
        return servers[key][1]

    try:
        yield start
    finally:
        for proc, _ in servers.values():
            assert proc.stdin is not None
            proc.stdin.close()  # the server exits when its stdin closes
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def eio_node_server(eio_node_server_factory: EioServerFactory) -> str:
    """The base URL of a Node engine.io echo server with the default heartbeat."""
    return f"http://127.0.0.1:{eio_node_server_factory()}"


@pytest.fixture
def node_sio_client() -> str:
    """``node``, with socket.io-client 4 installed (skip, or fail under CI, without)."""
    return _require_node("socket.io-client")


@pytest.fixture
def node_sio_client_v2() -> str:
    """``node``, with socket.io-client 2 installed as ``socket.io-client-v2``."""
    return _require_node("socket.io-client-v2")
