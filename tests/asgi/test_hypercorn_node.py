"""The official Node client (socket.io-client, pinned in tests/interop) against
trio_sio.ASGIApp under Hypercorn's trio worker, over each transport: every scenario of the
interop suite (``tests/interop/sio_node_client.mjs`` against the app of
``tests/interop/sio_trio_server.py``), with Hypercorn as a process and embedded.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import trio
from asgi_support import (
    CLIENT_TIMEOUT,
    INTEROP,
    TRANSPORTS,
    HypercornProcess,
    check,
    env_with_root,
    node,
    parse,
    start_embedded,
)
from hypercorn_apps import scenario_app

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def scenario_process() -> Iterator[HypercornProcess]:
    server = HypercornProcess("hypercorn_apps:scenario_app()")
    yield server
    server.kill()
    assert not server.errors(), "\n".join(server.stderr)


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_official_client_hypercorn_process(
    scenario_process: HypercornProcess, transport: str
) -> None:
    proc = subprocess.run(
        [node(), "sio_node_client.mjs", scenario_process.url, TRANSPORTS[transport]],
        cwd=INTEROP,
        capture_output=True,
        timeout=CLIENT_TIMEOUT,
        env=env_with_root(),
        check=False,
    )
    check(parse(proc), transport)


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_official_client_hypercorn_embedded(nursery: trio.Nursery, transport: str) -> None:
    command = [node(), "sio_node_client.mjs"]
    url = await start_embedded(nursery, scenario_app())
    with trio.fail_after(CLIENT_TIMEOUT):
        proc = await trio.run_process(
            [*command, url, TRANSPORTS[transport]],
            cwd=INTEROP,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    check(parse(proc), transport)
