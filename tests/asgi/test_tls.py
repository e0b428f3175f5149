"""TLS: the standalone server's ``ssl_context`` and Hypercorn's ``certfile``/``keyfile``,
with a certificate authority made for the test (trustme). Our client (``ssl_context=``) and
the official Node client (``NODE_EXTRA_CA_CERTS``) over https:// and wss://; a certificate
the client does not trust, or one for another host, is refused with a clear error.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trustme
from asgi_support import INTEROP, TRANSPORTS, check, hypercorn_config, node, parse, start_embedded
from hypercorn_apps import echo_app, echo_server, scenario_app

import trio_sio

HOST = "127.0.0.1"
CLIENT_TRANSPORTS = {
    "polling": ("polling",),
    "websocket": ("websocket",),
    "upgrade": ("polling", "websocket"),
}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert(HOST, "localhost")


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def standalone(nursery: trio.Nursery, sio: trio_sio.Server, cert: trustme.LeafCert) -> str:
    async def serve(*, task_status: trio.TaskStatus[list[trio.SocketListener]]) -> None:
        await sio.serve(HOST, 0, ssl_context=server_context(cert), task_status=task_status)

    listeners = await nursery.start(serve)
    return f"https://{HOST}:{listeners[0].socket.getsockname()[1]}"


async def hypercorn(
    nursery: trio.Nursery, app: trio_sio.ASGIApp, cert: trustme.LeafCert, folder: Path
) -> str:
    cert.cert_chain_pems[0].write_to_path(folder / "cert.pem")
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(folder / "cert.pem", append=True)
    cert.private_key_pem.write_to_path(folder / "key.pem")
    config = hypercorn_config(certfile=str(folder / "cert.pem"), keyfile=str(folder / "key.pem"))
    url = await start_embedded(nursery, app, config)
    assert url.startswith("https://"), url
    return url


@pytest.fixture(params=["standalone", "hypercorn"])
async def url(
    request: pytest.FixtureRequest,
    nursery: trio.Nursery,
    server_cert: trustme.LeafCert,
    tmp_path: Path,
) -> AsyncIterator[str]:
    if request.param == "standalone":
        yield await standalone(nursery, echo_server(), server_cert)
    else:
        yield await hypercorn(nursery, echo_app(), server_cert, tmp_path)


@pytest.mark.parametrize("transport", list(CLIENT_TRANSPORTS))
async def test_our_client_over_tls(url: str, ca: trustme.CA, transport: str) -> None:
    transports = CLIENT_TRANSPORTS[transport]
    client = trio_sio.Client(
        url, transports=transports, ssl_context=client_context(ca), reconnection=False
    )
    with trio.fail_after(15):
        async with client:
            assert await client.emit_with_ack("echo", "x", b"\x01", timeout=5) == ("x", b"\x01")
            if transport == "upgrade":
                while client.transport != "websocket":
                    await trio.sleep(0.01)
            assert await client.emit_with_ack("transport", timeout=5) == transports[-1]


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_untrusted_certificate_is_refused(url: str, transport: str) -> None:
    """The default context trusts the system's authorities only, not the test's."""
    client = trio_sio.Client(url, transports=CLIENT_TRANSPORTS[transport], reconnection=False)
    with trio.fail_after(10), pytest.raises(trio_sio.ConnectError) as info:
        async with client:
            pass
    assert "TLS handshake" in str(info.value)
    assert "certificate verify failed" in str(info.value)


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_certificate_for_another_host_is_refused(
    nursery: trio.Nursery, ca: trustme.CA, transport: str
) -> None:
    url = await standalone(nursery, echo_server(), ca.issue_cert("other.example"))
    client = trio_sio.Client(
        url,
        transports=CLIENT_TRANSPORTS[transport],
        ssl_context=client_context(ca),
        reconnection=False,
    )
    with trio.fail_after(10), pytest.raises(trio_sio.ConnectError) as info:
        async with client:
            pass
    assert "certificate verify failed" in str(info.value)
    assert "mismatch" in str(info.value)


def test_ssl_context_is_refused_for_plain_http() -> None:
    with pytest.raises(ValueError):
        trio_sio.engineio.client.Endpoint.from_url(
            "http://127.0.0.1:1", "/socket.io/", None, None, ssl.create_default_context()
        )


@pytest.mark.interop
@pytest.mark.parametrize("front_end", ["standalone", "hypercorn"])
@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_official_client_over_tls(
    nursery: trio.Nursery,
    ca: trustme.CA,
    server_cert: trustme.LeafCert,
    tmp_path: Path,
    front_end: str,
    transport: str,
) -> None:
    command = [node(), "sio_node_client.mjs"]
    if front_end == "standalone":
        app = scenario_app()
        assert isinstance(app.server, trio_sio.Server)
        url = await standalone(nursery, app.server, server_cert)
    else:
        url = await hypercorn(nursery, scenario_app(), server_cert, tmp_path)
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=str(tmp_path / "ca.pem"))
    with trio.fail_after(40):
        proc = await trio.run_process(
            [*command, url, TRANSPORTS[transport]],
            cwd=INTEROP,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    check(parse(proc), transport)
