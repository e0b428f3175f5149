"""The HTTP edge through the ASGI front end, driven in memory as an ASGI server drives it:
CORS and the cookie on polling answers, the header hooks on the WebSocket's accept, and the
client's address behind a trusted proxy as a Socket.IO handler sees it."""

from __future__ import annotations

import re
from typing import Any

import trio
from test_asgi_app import Conn, http_scope, respond, start_lifespan, ws_scope

import trio_sio
from trio_sio.engineio import CookieOptions, EngineServer, RequestHead


async def test_cors_cookie_and_hooks_on_polling(nursery: trio.Nursery) -> None:
    engine = EngineServer(
        cors_allowed_origins=re.compile(r"https://(www\.)?example\.com"),
        cors_exposed_headers=["x-hook"],
        cors_max_age=60,
        cookie=CookieOptions(secure=True, same_site="None"),
    )
    engine.on("headers", lambda headers, head: headers.append(("X-Hook", head.method)))
    app = trio_sio.ASGIApp(engine)
    await start_lifespan(nursery, app)
    origin = [(b"origin", b"https://example.com")]
    status, headers, body = await respond(
        app, http_scope("/engine.io/", "EIO=4&transport=polling", headers=origin)
    )
    assert status == 200 and body.startswith(b"0{")
    assert headers["access-control-allow-origin"] == "https://example.com"
    assert headers["access-control-allow-credentials"] == "true"
    assert headers["access-control-expose-headers"] == "x-hook"
    assert headers["x-hook"] == "GET"
    assert headers["set-cookie"].endswith("; Path=/; HttpOnly; Secure; SameSite=None")
    status, headers, _ = await respond(
        app,
        http_scope(
            "/engine.io/",
            "EIO=4&transport=polling",
            method="OPTIONS",
            headers=[*origin, (b"access-control-request-headers", b"x-token")],
        ),
    )
    assert status == 204
    assert headers["access-control-allow-headers"] == "x-token"
    assert headers["access-control-max-age"] == "60"
    assert "x-hook" not in headers
    evil = [(b"origin", b"https://example.com.evil.test")]
    status, headers, _ = await respond(
        app, http_scope("/engine.io/", "EIO=4&transport=polling", headers=evil)
    )
    assert status == 403 and "access-control-allow-origin" not in headers


async def test_websocket_accept_carries_hook_headers_and_address(nursery: trio.Nursery) -> None:
    sio = trio_sio.Server(trusted_proxies=["127.0.0.1"])
    seen: list[tuple[str | None, Any, str | None]] = []
    handled = trio.Event()

    @sio.engine.on("initial_headers")
    def initial(headers: list[tuple[str, str]], head: RequestHead) -> None:
        headers.append(("X-Initial", "yes"))

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket) -> None:
        request = socket.request
        seen.append((socket.handshake.address, request.client, request.headers.get("x-user")))
        handled.set()

    app = trio_sio.ASGIApp(sio)
    await start_lifespan(nursery, app)
    ws = Conn()
    ws.give(type="websocket.connect")
    headers = [(b"x-forwarded-for", b"198.51.100.1, 203.0.113.7"), (b"x-user", b"ann")]

    async def serve() -> None:
        await app(ws_scope(headers=headers), ws.receive, ws.send)

    nursery.start_soon(serve)
    accept = await ws.next()
    assert accept == {"type": "websocket.accept", "headers": [(b"X-Initial", b"yes")]}
    assert (await ws.next())["text"].startswith("0{")
    ws.give(type="websocket.receive", text="40")
    assert (await ws.next())["text"].startswith("40{")
    with trio.fail_after(5):
        await handled.wait()
    # the proxy (the peer, 127.0.0.1) appended the client's address: the last one counts
    assert seen == [("203.0.113.7", ("127.0.0.1", 5000), "ann")]
    ws.give(type="websocket.disconnect", code=1000)
