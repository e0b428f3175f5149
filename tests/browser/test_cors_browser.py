"""CORS in Chromium: the page at one origin, the Socket.IO server at another, credentials on.

``cors_e2e.mjs`` (Playwright) loads ``cors_page.html`` from two page servers of this test
(two origins, same site): one the server's origin function allows, one it does not. From
the allowed page the official browser client connects over polling with
``withCredentials`` and a custom header (every request is preflighted), the handshake's
cookie comes back on the session's requests, the page reads a header the server exposes
and the reason of a refused handshake. From the other page nothing gets through.

Needs node, Chromium and ``npm ci`` in tests/browser and examples/chat (``setup.sh``);
skipped without them, except under CI.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from browser_support import requirements

import trio_sio
from trio_sio.engineio import EngineConnectionError, EngineServer, EngineSocket, RequestHead
from trio_sio.frontends.standalone import serve

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLIENT = ROOT / "examples" / "chat" / "node_modules" / "socket.io-client" / "dist"


async def nothing(socket: EngineSocket) -> None:
    pass


async def page_server(nursery: trio.Nursery) -> str:
    """A plain file server for the page: another origin than the Socket.IO server's."""
    static = {"/": HERE / "cors_page.html", "/socket.io.min.js": CLIENT / "socket.io.min.js"}
    server = EngineServer(nothing, static_files=static, close_timeout=0.2)
    listeners = await nursery.start(serve, server, "127.0.0.1", 0)
    return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"


async def test_chromium_cross_origin_with_credentials() -> None:
    node, chromium = requirements(ROOT / "examples" / "chat")
    async with trio.open_nursery() as nursery:
        good_page = await page_server(nursery)
        bad_page = await page_server(nursery)
        asked: list[str] = []

        def origin_allowed(origin: str) -> bool:
            asked.append(origin)
            return origin == good_page

        def allow(head: RequestHead) -> bool | str:
            return "invalid token" if head.query.get("token") == "bad" else True

        sio = trio_sio.Server(
            cors_allowed_origins=origin_allowed,
            cors_allowed_headers=["x-token"],
            cors_exposed_headers=["x-session"],
            cors_max_age=600,
            cookie="io",
            allow_request=allow,
            close_timeout=0.2,
        )
        seen: list[dict[str, Any]] = []

        @sio.engine.on("initial_headers")
        def session_header(headers: list[tuple[str, str]], head: RequestHead) -> None:
            headers.append(("X-Session", "s-1"))

        refusals: list[tuple[str | None, int, str | None]] = []

        @sio.engine.on("connection_error")
        def refused(error: EngineConnectionError) -> None:
            origin = error.request.headers.get("origin")
            refusals.append((origin, int(error.code), error.context.get("message")))

        # The session's requests until its last event: after it, the page's own fetch
        # gets a cookie of another session, which the closing requests may carry.
        recording = True

        @sio.engine.on("headers")
        def remember(headers: list[tuple[str, str]], head: RequestHead) -> None:
            if "sid" in head.query and recording:
                seen.append(dict(head.headers))

        @sio.on("echo")
        async def echo(socket: trio_sio.Socket, text: str) -> str:
            nonlocal recording
            if text == "again":
                recording = False
            return text

        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        server = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        pages = " ".join(f"{page}/?server={server}" for page in (good_page, bad_page))
        env = dict(os.environ, CORS_PAGES=pages, CHROMIUM=chromium)
        with trio.fail_after(60):
            done = await trio.run_process(
                [node, "cors_e2e.mjs"],
                cwd=HERE,
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        nursery.cancel_scope.cancel()
    report = done.stdout.decode() + done.stderr.decode()
    print(report, seen, asked, file=sys.stderr)
    assert done.returncode == 0, report
    good, bad = json.loads(done.stdout.decode().strip().splitlines()[-1])["pages"]

    assert good["origin"] == good_page
    connect = good["connect"]
    assert connect["connected"] is True, good
    assert (connect["echo"], connect["again"]) == ("hello", "again")
    # the session's requests came with the custom header (preflighted) and the cookie
    session = [h for h in seen if h.get("origin") == good_page]
    assert session, seen
    assert all(h.get("x-token") == "secret" for h in session), session
    assert all(h.get("cookie") == f"io={connect['engine_id']}" for h in session), session
    # an exposed header, and the reason of a refusal, both readable by the page
    assert good["exposed"] == {"status": 200, "session": "s-1"}
    assert good["refused"] == {"status": 403, "body": {"code": 4, "message": "invalid token"}}

    assert bad["origin"] == bad_page
    assert bad["connect"] == {"connected": False, "error": "xhr poll error"}, bad
    assert "error" in bad["exposed"] and "error" in bad["refused"], bad
    # the other page's handshakes were refused for their origin; the good page's fetch
    # with a bad token for its reason
    assert (bad_page, 4, "Origin not allowed") in refusals, refusals
    assert {r for r in refusals if r[0] == good_page} == {(good_page, 4, "invalid token")}
    assert set(asked) == {good_page, bad_page}
