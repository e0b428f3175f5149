"""A real redis-server for the adapter tests, started on a free loopback port."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """A redis-server process that tests may stop and start again on the same port."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    #: more redis-server options (a password, TLS...)
    options: tuple[str, ...] = ()
    #: TLS on ``port`` (no plain-text port): ready once it accepts a connection
    tls: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            reason = "redis-server is needed (apt-get install redis-server)"
            if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
                pytest.fail(reason, pytrace=False)
            pytest.skip(reason)
        self.process = subprocess.Popen(
            [
                exe,
                *(("--port", "0", "--tls-port") if self.tls else ("--port",)),
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    if self.tls:
                        return
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                time.sleep(0.05)
        pytest.fail("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(_free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if redis_server.process is None:
        redis_server.start()
    return redis_server.url


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (10000 above) is free too."""
    for _ in range(1000):
        port = random.randrange(20000, 30000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    pytest.fail("no free port pair for a Redis Cluster node")


class RedisCluster:
    """A Redis Cluster of three masters (no replicas) on loopback, its slots split in three.

    It starts in about a second: the slots are assigned and the nodes introduced with
    ``CLUSTER ADDSLOTSRANGE`` and ``CLUSTER MEET`` directly (``redis-cli --cluster create``
    waits whole seconds between its steps).
    """

    def __init__(self, workdir: Path) -> None:
        self.nodes = [
            RedisServer(
                _free_cluster_port(),
                workdir / str(index),
                options=("--cluster-enabled", "yes", "--cluster-node-timeout", "5000"),
            )
            for index in range(3)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def _cli(self, port: int, *args: str) -> str:
        exe = shutil.which("redis-cli")
        if exe is None:
            pytest.fail("redis-cli is needed (apt-get install redis-tools)")
        done = subprocess.run(
            [exe, "-p", str(port), *args], capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout

    def start(self) -> None:
        for node in self.nodes:
            node.workdir.mkdir(parents=True, exist_ok=True)
            node.start()
        bounds = [0, 5461, 10923, 16384]
        for index, node in enumerate(self.nodes):
            self._cli(
                node.port,
                "cluster",
                "addslotsrange",
                str(bounds[index]),
                str(bounds[index + 1] - 1),
            )
        for node in self.nodes[1:]:
            self._cli(self.nodes[0].port, "cluster", "meet", "127.0.0.1", str(node.port))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ready = all(
                "cluster_state:ok" in self._cli(node.port, "cluster", "info")
                and self._cli(node.port, "cluster", "slots").count("127.0.0.1") == 3
                for node in self.nodes
            )
            if ready:
                return
            time.sleep(0.05)
        pytest.fail("the Redis Cluster did not form")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# -- Node peers (the mixed-cluster tests) ------------------------------------------------------

INTEROP = Path(__file__).resolve().parent.parent / "interop"
NODE_PACKAGES = (
    "socket.io",
    "socket.io-client",
    "@socket.io/redis-adapter",
    "@socket.io/redis-emitter",
    "@socket.io/redis-streams-adapter",
    "redis",
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def node() -> str:
    """The path of ``node``; skip (fail under CI) when it or a package is missing."""
    path = shutil.which("node")
    reason = None
    if path is None:
        reason = "node is not installed"
    else:
        for package in NODE_PACKAGES:
            if not (INTEROP / "node_modules" / package).is_dir():
                reason = f"node_modules/{package} is missing: run `npm ci` in tests/interop"
                break
    if reason is not None:
        if _in_ci():
            pytest.fail(f"mixed-cluster test cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    assert path is not None
    return path
