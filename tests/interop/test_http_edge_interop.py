"""The HTTP edge on the wire, against the official Node peers.

* The same requests go to the Node ``engine.io`` server (6.6, whose ``cors`` option is the
  npm ``cors`` package and whose cookie is written by the ``cookie`` package) and to ours
  with the same settings: CORS preflights and answers, the cookie, and the JSON body of an
  ``allow_request`` refusal must match, header for header.
* The official Node client (socket.io-client 4.8) sees an ``allow_request`` reason in its
  ``connect_error``, keeps the cookie for the session's next requests (``withCredentials``),
  and its ``X-Forwarded-For`` is believed from a trusted proxy only.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_sio
from trio_sio.engineio import CookieOptions, EngineServer, EngineSocket, RequestHead
from trio_sio.frontends.standalone import serve

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
PAGE = "http://page.test"
Q = "/engine.io/?EIO=4&transport=polling"


def node() -> str:
    found = shutil.which("node")
    if found is None or not (HERE / "node_modules" / "engine.io").is_dir():
        reason = "node or tests/interop/node_modules missing (npm ci in tests/interop)"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return found


def allow(head: RequestHead) -> bool | str:
    token = head.query.get("token")
    if token is None:
        return False
    return token == "good" or "invalid token"


NODE_ALLOW = {"good": "good", "reason": "invalid token"}

# (Node options, our options) with the same meaning
SETTINGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "full": (
        {
            "cors": {
                "origin": [PAGE, "http://other.test"],
                "credentials": True,
                "allowedHeaders": ["x-token", "content-type"],
                "exposedHeaders": ["x-session", "x-other"],
                "maxAge": 600,
            },
            "cookie": {
                "name": "lb",
                "path": "/",
                "httpOnly": True,
                "sameSite": "strict",
                "secure": True,
                "domain": "page.test",
                "maxAge": 3600,
            },
            "allowRequest": NODE_ALLOW,
        },
        {
            "cors_allowed_origins": [PAGE, "http://other.test"],
            "cors_credentials": True,
            "cors_allowed_headers": ["x-token", "content-type"],
            "cors_exposed_headers": ["x-session", "x-other"],
            "cors_max_age": 600,
            "cookie": CookieOptions(
                name="lb", same_site="Strict", secure=True, domain="page.test", max_age=3600
            ),
            "allow_request": allow,
        },
    ),
    "any-origin": (
        {"cors": {"origin": "*"}, "cookie": True, "allowRequest": NODE_ALLOW},
        {"cors_allowed_origins": "*", "cookie": True, "allow_request": allow},
    ),
    "no-cookie-path": (
        {
            "cors": {"origin": [PAGE], "credentials": True},
            "cookie": {"name": "io", "path": False, "sameSite": "none", "secure": True},
            "allowRequest": NODE_ALLOW,
        },
        {
            "cors_allowed_origins": [PAGE],
            "cookie": CookieOptions(path=None, same_site="None", secure=True),
            "allow_request": allow,
        },
    ),
}

PREFLIGHT = {
    "Origin": PAGE,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "x-token, content-type",
}
REQUESTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "preflight": ("OPTIONS", Q, PREFLIGHT),
    "preflight-other-origin": ("OPTIONS", Q, dict(PREFLIGHT, Origin="http://evil.test")),
    "preflight-no-headers": ("OPTIONS", Q, {"Origin": PAGE}),
    "handshake": ("GET", Q + "&token=good", {"Origin": PAGE}),
    "refused-with-reason": ("GET", Q + "&token=bad", {"Origin": PAGE}),
    "refused": ("GET", Q, {"Origin": PAGE}),
    "unknown-sid": ("GET", Q + "&sid=nope", {"Origin": PAGE}),
}


def fetch(port: int, method: str, target: str, headers: dict[str, str]) -> dict[str, Any]:
    """One request; the parts of the answer the HTTP edge decides."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, target, headers=dict(headers, Connection="close"))
        response = conn.getresponse()
        body = response.read()
        kept = []
        sid = None
        if response.status == 200 and body.startswith(b"0{"):
            sid = json.loads(body[1:])["sid"]
        for raw_name, value in response.getheaders():
            name = raw_name.lower()
            if name.startswith("access-control-") or name in ("vary", "set-cookie"):
                kept.append((name, value.replace(sid, "<sid>") if sid else value))
        result: dict[str, Any] = {"status": response.status, "headers": sorted(kept)}
        if response.status >= 400:
            result["body"] = json.loads(body)
        return result
    finally:
        conn.close()


@pytest.fixture
def node_server() -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(options: dict[str, Any]) -> int:
        proc = subprocess.Popen(
            [node(), "http_edge_node_server.mjs", json.dumps(options)],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        line = proc.stdout.readline() if ready else ""
        assert line.strip().isdigit(), f"the Node server did not start: {line!r}"
        return int(line)

    yield start
    for proc in started:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def echo(socket: EngineSocket) -> None:
    async for message in socket:
        await socket.send(message)


@pytest.mark.parametrize("setting", list(SETTINGS))
async def test_same_answers_as_the_node_server(node_server: Any, setting: str) -> None:
    node_options, our_options = SETTINGS[setting]
    node_port = node_server(node_options)
    server = EngineServer(echo, close_timeout=0.1, **our_options)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve, server, "127.0.0.1", 0)
        our_port = listeners[0].socket.getsockname()[1]
        with trio.fail_after(30):
            for name, (method, target, headers) in REQUESTS.items():
                theirs = await trio.to_thread.run_sync(fetch, node_port, method, target, headers)
                ours = await trio.to_thread.run_sync(fetch, our_port, method, target, headers)
                assert ours == theirs, name
        nursery.cancel_scope.cancel()


# -- the official Node client ------------------------------------------------------------------


async def run_client(sio: trio_sio.Server, mode: str) -> dict[str, Any]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        with trio.fail_after(30):
            done = await trio.run_process(
                [node(), "http_edge_node_client.mjs", url, mode],
                cwd=HERE,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        nursery.cancel_scope.cancel()
    report = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, report
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_node_client_sees_the_refusal(transport: str) -> None:
    sio = trio_sio.Server(allow_request=allow)
    errors: list[int] = []
    sio.engine.on("connection_error", lambda error: errors.append(error.code))
    result = await run_client(sio, f"refused-{transport}")
    if transport == "polling":
        # socket.io-client: "xhr poll error", the status as description, the XHR as context
        assert result == {
            "message": "xhr poll error",
            "description": 403,
            "body": {"code": 4, "message": "invalid token"},
        }
    else:
        assert result["message"] == "websocket error"
        assert "403" in result["detail"], result
    assert errors == [4]


async def test_node_client_cookie_and_forwarded_address() -> None:
    sio = trio_sio.Server(cookie="sticky", trusted_proxies=["127.0.0.1"])
    cookies: list[str | None] = []

    @sio.engine.on("headers")
    def remember(headers: list[tuple[str, str]], head: RequestHead) -> None:
        if "sid" in head.query:
            cookies.append(head.headers.get("cookie"))

    @sio.on("whoami")
    async def whoami(socket: trio_sio.Socket) -> dict[str, Any]:
        return {
            "address": socket.handshake.address,
            "peer": socket.request.client[0] if socket.request.client else None,
            "header": socket.request.headers.get("x-forwarded-for"),
        }

    result = await run_client(sio, "cookie")
    assert result["whoami"] == {
        "address": "203.0.113.7",
        "peer": "127.0.0.1",
        "header": "203.0.113.7",
    }
    sid = result["engine_id"]
    assert cookies and all(c == f"sticky={sid}" for c in cookies), (cookies, sid)


async def test_node_client_forwarded_address_ignored_from_untrusted_peers() -> None:
    sio = trio_sio.Server(trusted_proxies=["10.0.0.0/8"])

    @sio.on("whoami")
    async def whoami(socket: trio_sio.Socket) -> dict[str, Any]:
        return {"address": socket.handshake.address}

    result = await run_client(sio, "cookie")
    assert result["whoami"] == {"address": "127.0.0.1"}
