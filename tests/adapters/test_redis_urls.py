"""The ways to name a Redis: a URL with a password, ``rediss://`` (TLS), a ready client."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import coredis
import pytest
import trio
import trustme
from coredis.connection import TCPLocation

import trio_sio
from trio_sio.adapters.redis import RedisAdapterFactory, RedisUnavailable, create_adapter
from trio_sio.testing import open_raw_client

from .conftest import RedisServer, _free_port

PASSWORD = "s3cret-" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def redis_with_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(
        _free_port(), tmp_path_factory.mktemp("redis-auth"), options=("--requirepass", PASSWORD)
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Path]]:
    workdir = tmp_path_factory.mktemp("redis-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = workdir / "ca.pem", workdir / "cert.pem", workdir / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    server = RedisServer(
        _free_port(),
        workdir,
        tls=True,
        options=(
            "--tls-cert-file",
            str(cert_file),
            "--tls-key-file",
            str(key_file),
            "--tls-ca-cert-file",
            str(ca_file),
            "--tls-auth-clients",
            "no",
        ),
    )
    server.start()
    try:
        yield server, ca_file
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sentinel(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Redis Sentinel watching ``redis_server`` as primary ``mymaster``: its port."""
    workdir = tmp_path_factory.mktemp("sentinel")
    port = _free_port()
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor mymaster 127.0.0.1 {redis_server.port} 1\n"
    )
    if redis_server.process is None:
        redis_server.start()
    exe = shutil.which("redis-server")
    assert exe is not None
    process = subprocess.Popen(
        [exe, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"SENTINEL get-master-addr-by-name mymaster\r\n")
                    if str(redis_server.port).encode() in sock.recv(256):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("redis-sentinel did not start")
            time.sleep(0.05)
        yield port
    finally:
        process.kill()
        process.wait()


@asynccontextmanager
async def two_nodes(
    first: str | coredis.Redis[bytes], second: str | coredis.Redis[bytes]
) -> AsyncIterator[tuple[trio_sio.Server, trio_sio.Server]]:
    key = "t" + secrets.token_hex(4)
    a = trio_sio.Server(adapter=create_adapter(first, key=key))
    b = trio_sio.Server(adapter=create_adapter(second, key=key))
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        yield a, b
        nursery.cancel_scope.cancel()


async def broadcasts_cross(a: trio_sio.Server, b: trio_sio.Server) -> None:
    async with open_raw_client(a) as on_a, open_raw_client(b) as on_b:
        await on_a.connect()
        await on_b.connect()
        await a.emit("from a")
        await b.emit("from b")
        with trio.fail_after(5):
            for raw in (on_a, on_b):
                seen = {await raw.receive(), await raw.receive()}
                assert seen == {'42["from a"]', '42["from b"]'}


async def test_a_password_in_the_url_and_a_ready_client(redis_with_password: RedisServer) -> None:
    port = redis_with_password.port
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    client: coredis.Redis[bytes] = coredis.Redis(
        host="127.0.0.1", port=port, password=PASSWORD, decode_responses=False
    )
    async with two_nodes(url, client) as (a, b):
        await broadcasts_cross(a, b)
        assert await a.server_count() == 2
        factory = b.adapter_factory
        assert isinstance(factory, RedisAdapterFactory)
        assert factory.statistics().subscribed


async def test_a_wrong_password_is_a_clear_error(redis_with_password: RedisServer) -> None:
    url = f"redis://:wrong@127.0.0.1:{redis_with_password.port}"
    sio = trio_sio.Server(adapter=create_adapter(url, connect_timeout=2))
    with trio.fail_after(10), pytest.raises(RedisUnavailable, match="unreachable"):
        await sio.serve("127.0.0.1", 0)


async def test_a_client_of_a_sentinel(sentinel: int) -> None:
    nodes = [TCPLocation("127.0.0.1", sentinel)]
    async with coredis.Sentinel(nodes) as watcher:
        first, second = watcher.primary_for("mymaster"), watcher.primary_for("mymaster")
        async with two_nodes(first, second) as (a, b):
            await broadcasts_cross(a, b)


def test_a_client_that_decodes_responses_is_refused() -> None:
    client = coredis.Redis(decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses=False"):
        create_adapter(client)  # type: ignore[arg-type]


async def test_rediss_url(tls_redis: tuple[RedisServer, Path]) -> None:
    server, ca_file = tls_redis
    url = f"rediss://127.0.0.1:{server.port}?ssl_ca_certs={ca_file}"
    async with two_nodes(url, url) as (a, b):
        await broadcasts_cross(a, b)


async def test_rediss_checks_the_certificate(tls_redis: tuple[RedisServer, Path]) -> None:
    server, _ = tls_redis
    sio = trio_sio.Server(
        adapter=create_adapter(f"rediss://127.0.0.1:{server.port}", connect_timeout=2)
    )
    with trio.fail_after(10), pytest.raises(RedisUnavailable):
        await sio.serve("127.0.0.1", 0)
