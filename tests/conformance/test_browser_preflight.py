"""CORS preflight as a browser running the public protocol test suites sees it.

The suites' "should fail with an invalid request method" sends a PUT from the page: a browser
first asks (OPTIONS) whether PUT may be sent, and only a yes lets the request reach the server
and the page read the 400 the test expects; a no is a network error ("Failed to fetch").
"""

from __future__ import annotations

import eio_server
import pytest
import sio_server
import trio
import trio.testing

from trio_sio.engineio import EngineServer
from trio_sio.engineio.memory import http_request


async def engine(nursery: trio.Nursery, which: str) -> tuple[EngineServer, str]:
    if which == "socket.io":
        sio = sio_server.build()
        await nursery.start(sio.run)
        return sio.engine, "/socket.io/?EIO=4&transport=polling"
    eio = eio_server.build()
    await nursery.start(eio.run)
    return eio, "/engine.io/?EIO=4&transport=polling"


@pytest.mark.parametrize("which", ["socket.io", "engine.io"])
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_a_wrong_method_reaches_the_server_and_gets_its_400(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, which: str, method: str
) -> None:
    srv, url = await engine(nursery, which)
    origin = {"Origin": "http://localhost:8080"}
    preflight = await http_request(
        srv, "OPTIONS", url, headers={**origin, "Access-Control-Request-Method": method}
    )
    assert preflight.status == 204
    assert ("Access-Control-Allow-Origin", "*") in preflight.headers
    allowed = dict(preflight.headers)["Access-Control-Allow-Methods"]
    assert method in [name.strip() for name in allowed.split(",")]
    for needed in ("GET", "POST"):
        assert needed in [name.strip() for name in allowed.split(",")]
    refused = await http_request(srv, method, url, headers=origin)
    assert refused.status == 400
    assert ("Access-Control-Allow-Origin", "*") in refused.headers
