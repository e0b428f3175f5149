"""Real processes for the deploy tests: a redis-server, trio_sio nodes, and nginx in front.

Everything listens on free loopback ports and writes its files under the test's tmp dir;
nginx runs in the foreground (``daemon off``) with its own configuration, never as the
system's service.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
START_TIMEOUT = 15.0
LISTENING = re.compile(r"listening on (\d+)")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(program: str, package: str) -> str:
    """The path of ``program``; skips the test without it (fails under CI)."""
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if found is None:
        reason = f"{program} is needed (apt-get install {package})"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    text = log.read_text("utf-8", "replace") if log.exists() else ""
    raise RuntimeError(f"{what} did not start on port {port}:\n{text}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- Redis ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = require("redis-server", "redis-server")
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    log = workdir / "redis.log"
    command = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(workdir), "--logfile", str(log)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc, "redis-server", log)
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop(proc)


# -- trio_sio nodes -------------------------------------------------------------------------
@dataclass
class Node:
    """``cluster_app.py`` as a subprocess."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")


def start_node(name: str, redis_url: str, workdir: Path) -> Node:
    log_path = workdir / f"node-{name}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, str(HERE / "cluster_app.py"), "--redis", redis_url]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*command, "--name", name], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = LISTENING.search(log_path.read_text("utf-8", "replace"))
        if found:
            return Node(name, int(found.group(1)), proc, log_path)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"node {name} did not start:\n{log_path.read_text('utf-8', 'replace')}")


@pytest.fixture(scope="module")
def nodes(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    """Two trio_sio nodes, ``a`` and ``b``, sharing the Redis of ``redis_url``."""
    workdir = tmp_path_factory.mktemp("nodes")
    started: dict[str, Node] = {}
    try:
        for name in ("a", "b"):
            started[name] = start_node(name, redis_url, workdir)
        yield started
    finally:
        for node in started.values():
            stop(node.proc)
        for node in started.values():
            assert "Traceback" not in node.log(), node.log()


# -- nginx ----------------------------------------------------------------------------------
NGINX_CONF = """\
# Written by tests/deploy/conftest.py; every path is under this folder.
{user}worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    upstream trio_sio_nodes {{
{balance}{servers}
    }}

    # "Connection: upgrade" for a WebSocket handshake, "close" otherwise
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    server {{
        listen 127.0.0.1:{port};

        location /socket.io/ {{
            proxy_pass http://trio_sio_nodes;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 120s;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        parts = []
        for name in ("error.log", "access.log"):
            path = self.workdir / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text("utf-8", "replace"))
        return "\n".join(parts)


def nginx_conf(port: int, backends: list[int], workdir: Path, *, ip_hash: bool) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in backends)
    return NGINX_CONF.format(
        # Run as root (in a container, in CI), nginx's workers would otherwise become
        # "nobody", who may not enter the test's private tmp dir.
        user="user root;\n" if os.geteuid() == 0 else "",
        dir=workdir,
        port=port,
        balance="        ip_hash;\n" if ip_hash else "",
        servers=servers,
    )


def start_nginx(backends: list[int], workdir: Path, *, ip_hash: bool) -> Nginx:
    exe = require("nginx", "nginx")
    workdir.mkdir(parents=True, exist_ok=True)
    nginx = Nginx(free_port(), workdir)
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_conf(nginx.port, backends, workdir, ip_hash=ip_hash))
    command = [exe, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf)]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"nginx rejects its configuration:\n{check.stderr}")
    nginx.proc = subprocess.Popen(
        [*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_listening(nginx.port, nginx.proc, "nginx", workdir / "error.log")
    return nginx


@pytest.fixture(scope="module")
def sticky_nginx(
    nodes: dict[str, Node], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nginx]:
    """nginx with ``ip_hash`` in front of both nodes."""
    workdir = tmp_path_factory.mktemp("nginx-ip-hash")
    nginx = start_nginx([node.port for node in nodes.values()], workdir, ip_hash=True)
    try:
        yield nginx
    finally:
        assert nginx.proc is not None
        stop(nginx.proc)


@pytest.fixture(scope="module")
def round_robin_nginx(
    nodes: dict[str, Node], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nginx]:
    """nginx balancing request by request (its default): no sticky sessions."""
    workdir = tmp_path_factory.mktemp("nginx-round-robin")
    nginx = start_nginx([node.port for node in nodes.values()], workdir, ip_hash=False)
    try:
        yield nginx
    finally:
        assert nginx.proc is not None
        stop(nginx.proc)
