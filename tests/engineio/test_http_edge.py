"""The HTTP edge of the Engine.IO server: CORS (answered as the npm ``cors`` package does),
the handshake cookie, ``allow_request`` reasons, the header and ``connection_error`` hooks,
and the client's address behind trusted proxies.

Driven in memory through the real request handlers, under the autojump clock.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
import trio
import trio.testing

from trio_sio.engineio import (
    CookieOptions,
    EngineConfig,
    EngineConnectionError,
    EngineServer,
    EngineSocket,
    RequestHead,
)
from trio_sio.engineio.memory import http_request, request_head
from trio_sio.frontends.standalone import serve

Q = "/engine.io/?EIO=4&transport=polling"
WS = "/engine.io/?EIO=4&transport=websocket"


async def echo(socket: EngineSocket) -> None:
    async for message in socket:
        await socket.send(message)


async def start(nursery: trio.Nursery, **options: Any) -> EngineServer:
    server = EngineServer(echo, close_timeout=0.1, **options)
    await nursery.start(server.run)
    return server


def sid_of(body: bytes) -> str:
    sid = json.loads(body[1:])["sid"]
    assert isinstance(sid, str)
    return sid


def named(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in headers if n.lower() == name.lower()]


# -- CORS -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "allowed",
    [
        pytest.param(re.compile(r"https://[a-z]+\.example\.com"), id="regex"),
        pytest.param(["http://other.test", re.compile(r"https://.*\.example\.com")], id="list"),
        pytest.param(lambda origin: origin.endswith(".example.com"), id="function"),
    ],
)
async def test_origin_by_regex_list_or_function(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, allowed: Any
) -> None:
    server = await start(nursery, cors_allowed_origins=allowed)
    ok = await http_request(server, "GET", Q, headers={"Origin": "https://app.example.com"})
    assert ok.status == 200
    assert ok.headers[1:] == [
        ("Access-Control-Allow-Origin", "https://app.example.com"),
        ("Vary", "Origin"),
        ("Access-Control-Allow-Credentials", "true"),
    ]
    # a regex matches the whole origin: a suffix after it is no match
    refused = await http_request(
        server, "GET", Q, headers={"Origin": "https://app.example.com.evil.test"}
    )
    assert refused.status == 403
    assert json.loads(refused.body) == {"code": 4, "message": "Origin not allowed"}
    assert named(refused.headers, "Access-Control-Allow-Origin") == []


async def test_async_origin_function_is_awaited(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    asked: list[str] = []

    async def allowed(origin: str) -> bool:
        asked.append(origin)
        await trio.sleep(1)  # a database, say
        return origin == "http://good.test"

    server = await start(nursery, cors_allowed_origins=allowed)
    ok = await http_request(server, "GET", Q, headers={"Origin": "http://good.test"})
    assert ok.status == 200
    bad = await http_request(server, "GET", Q, headers={"Origin": "http://bad.test"})
    assert bad.status == 403
    head = request_head("GET", WS, {"Origin": "http://bad.test", "upgrade": "websocket"})
    refusal = await server.check_websocket(head)
    assert refusal is not None and refusal.status == 403
    assert asked == ["http://good.test", "http://bad.test", "http://bad.test"]


async def test_preflight_as_the_cors_package_answers(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # The JS server's cors: {origin: [...], credentials: true, allowedHeaders: [...],
    # exposedHeaders: [...], maxAge: 600}
    server = await start(
        nursery,
        cors_allowed_origins=["http://page.test"],
        cors_credentials=True,
        cors_allowed_headers=["x-token", "content-type"],
        cors_exposed_headers=["x-session"],
        cors_max_age=600,
    )
    asked = {"Origin": "http://page.test", "Access-Control-Request-Method": "POST"}
    preflight = await http_request(server, "OPTIONS", Q, headers=asked)
    assert (preflight.status, preflight.body) == (204, b"")
    assert preflight.headers == [
        ("Access-Control-Allow-Origin", "http://page.test"),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Allow-Methods", "GET,HEAD,PUT,PATCH,POST,DELETE"),
        ("Access-Control-Allow-Headers", "x-token,content-type"),
        ("Access-Control-Max-Age", "600"),
        ("Access-Control-Expose-Headers", "x-session"),
        ("Vary", "Origin"),
    ]
    # the actual request: origin, credentials, exposed headers
    ok = await http_request(server, "GET", Q, headers={"Origin": "http://page.test"})
    assert ok.headers[1:] == [
        ("Access-Control-Allow-Origin", "http://page.test"),
        ("Vary", "Origin"),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Expose-Headers", "x-session"),
    ]
    # an origin not allowed: 204 still, without Access-Control-Allow-Origin (the browser
    # refuses), as the cors package answers
    other = dict(asked, Origin="http://evil.test")
    refused = await http_request(server, "OPTIONS", Q, headers=other)
    assert refused.status == 204
    assert named(refused.headers, "Access-Control-Allow-Origin") == []


async def test_preflight_defaults_reflect_requested_headers(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery, cors_allowed_origins="*")
    asked = {"Origin": "http://a.test", "Access-Control-Request-Headers": "x-token"}
    preflight = await http_request(server, "OPTIONS", Q, headers=asked)
    assert preflight.headers == [
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Allow-Methods", "GET,HEAD,PUT,PATCH,POST,DELETE"),
        ("Access-Control-Allow-Headers", "x-token"),
        ("Vary", "Access-Control-Request-Headers"),
    ]


async def test_any_origin_with_credentials_sends_the_origin_back(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery, cors_allowed_origins="*", cors_credentials=True)
    ok = await http_request(server, "GET", Q, headers={"Origin": "http://a.test"})
    assert ok.headers[1:] == [
        ("Access-Control-Allow-Origin", "http://a.test"),
        ("Vary", "Origin"),
        ("Access-Control-Allow-Credentials", "true"),
    ]
    # and a list without credentials
    plain = await start(nursery, cors_allowed_origins=["http://a.test"], cors_credentials=False)
    ok = await http_request(plain, "GET", Q, headers={"Origin": "http://a.test"})
    assert named(ok.headers, "Access-Control-Allow-Credentials") == []


@pytest.mark.parametrize(
    "options",
    [
        {"cors_max_age": -1},
        {"cors_allowed_headers": "x-token"},
        {"cors_exposed_headers": "x-token"},
        {"trusted_proxies": "10.0.0.1"},
        {"trusted_proxies": ["10.0.0.300"]},
    ],
)
def test_malformed_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EngineConfig(**options)


# -- the cookie -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        (True, "io={sid}; Path=/; HttpOnly; SameSite=Lax"),
        ("sticky", "sticky={sid}; Path=/; HttpOnly; SameSite=Lax"),
        (
            CookieOptions(
                name="lb",
                path="/app",
                http_only=False,
                same_site="None",
                secure=True,
                domain="example.com",
                max_age=3600,
            ),
            "lb={sid}; Max-Age=3600; Domain=example.com; Path=/app; Secure; SameSite=None",
        ),
        (CookieOptions(path=None, same_site=None), "io={sid}; HttpOnly"),
        (
            CookieOptions(same_site="Strict", max_age=0),
            "io={sid}; Max-Age=0; Path=/; HttpOnly; SameSite=Strict",
        ),
    ],
)
async def test_cookie_attributes(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    cookie: Any,
    expected: str,
) -> None:
    server = await start(nursery, cookie=cookie)
    first = await http_request(server, "GET", Q)
    sid = sid_of(first.body)
    assert named(first.headers, "Set-Cookie") == [expected.format(sid=sid)]
    again = await http_request(server, "POST", f"{Q}&sid={sid}", b"4hi")
    assert again.status == 200 and named(again.headers, "Set-Cookie") == []
    # no cookie on a WebSocket's 101: the session id is not known yet
    assert server.accept_headers(request_head("GET", WS)) == []


@pytest.mark.parametrize(
    "options",
    [
        {"name": "a b"},
        {"name": "a;b"},
        {"path": "/x; Secure"},
        {"domain": "a\r\nb"},
        {"same_site": "None"},  # without secure
        {"same_site": "lax"},
        {"max_age": -1},
    ],
)
def test_malformed_cookie_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CookieOptions(**options)


# -- allow_request and connection_error ------------------------------------------------------


async def test_allow_request_reason_and_connection_error(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    def allow(head: RequestHead) -> bool | str:
        token = head.query.get("token")
        if token is None:
            return False
        return token == "good" or "invalid token"

    server = await start(nursery, allow_request=allow, cors_allowed_origins=["http://a.test"])
    errors: list[EngineConnectionError] = []
    server.on("connection_error", errors.append)
    caplog.set_level(logging.DEBUG)

    reason = await http_request(
        server, "GET", Q + "&token=bad", headers={"Origin": "http://a.test"}
    )
    assert reason.status == 403
    assert json.loads(reason.body) == {"code": 4, "message": "invalid token"}
    # the page may read why: the refusal carries the CORS headers of an allowed origin
    assert named(reason.headers, "Access-Control-Allow-Origin") == ["http://a.test"]
    plain = await http_request(server, "GET", Q)
    assert json.loads(plain.body) == {"code": 4, "message": "Forbidden"}
    head = request_head("GET", WS + "&token=bad", {"upgrade": "websocket"})
    refusal = await server.check_websocket(head)
    assert refusal is not None and refusal.status == 403
    assert json.loads(refusal.body)["message"] == "invalid token"
    unknown = await http_request(server, "GET", Q + "&sid=nope")
    assert json.loads(unknown.body) == {"code": 1, "message": "Session ID unknown"}
    transport = await http_request(server, "GET", "/engine.io/?EIO=4&transport=carrier")
    assert json.loads(transport.body) == {"code": 0, "message": "Transport unknown"}

    assert [(e.code, e.message, dict(e.context)) for e in errors] == [
        (4, "Forbidden", {"message": "invalid token"}),
        (4, "Forbidden", {}),
        (4, "Forbidden", {"message": "invalid token"}),
        (1, "Session ID unknown", {}),
        (0, "Transport unknown", {}),
    ]
    assert errors[0].request.query["token"] == "bad"
    assert all(r.levelno < logging.WARNING for r in caplog.records)
    ok = await http_request(server, "GET", Q + "&token=good")
    assert ok.status == 200 and len(errors) == 5


async def test_async_allow_request(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def allow(head: RequestHead) -> bool | str:
        await trio.sleep(1)
        return "closed for maintenance"

    server = await start(nursery, allow_request=allow)
    refused = await http_request(server, "GET", Q)
    assert json.loads(refused.body) == {"code": 4, "message": "closed for maintenance"}


# -- header hooks ---------------------------------------------------------------------------


async def test_initial_headers_and_headers_hooks(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery, cookie="io")
    seen: list[tuple[str, str | None]] = []

    @server.on("initial_headers")
    def initial(headers: list[tuple[str, str]], head: RequestHead) -> None:
        # the cookie is there already, as in the JS server (none on a WebSocket's 101)
        assert bool(named(headers, "Set-Cookie")) == (head.query["transport"] == "polling")
        headers.append(("X-Initial", "1"))
        seen.append(("initial", head.query.get("sid")))

    def every(headers: list[tuple[str, str]], head: RequestHead) -> None:
        headers.append(("X-Every", head.method))
        seen.append(("every", head.query.get("sid")))

    assert server.on("headers", every) is every

    first = await http_request(server, "GET", Q)
    assert named(first.headers, "X-Initial") == ["1"]
    assert named(first.headers, "X-Every") == ["GET"]
    sid = sid_of(first.body)
    posted = await http_request(server, "POST", f"{Q}&sid={sid}", b"4hi")
    assert named(posted.headers, "X-Every") == ["POST"]
    assert named(posted.headers, "X-Initial") == []
    # errors get no hook headers
    bad = await http_request(server, "GET", Q + "&sid=nope")
    assert named(bad.headers, "X-Every") == []
    # the WebSocket's 101
    assert server.accept_headers(request_head("GET", WS)) == [
        ("X-Initial", "1"),
        ("X-Every", "GET"),
    ]
    assert server.accept_headers(request_head("GET", f"{WS}&sid={sid}")) == [("X-Every", "GET")]
    assert seen == [
        ("initial", None),
        ("every", None),
        ("every", sid),
        ("initial", None),
        ("every", None),
        ("every", sid),
    ]
    with pytest.raises(ValueError, match="unknown event"):
        server.on("header", every)  # type: ignore[call-overload]


async def test_a_failing_hook_is_logged_and_the_answer_goes_out(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start(nursery)

    @server.on("headers")
    def broken(headers: list[tuple[str, str]], head: RequestHead) -> None:
        raise RuntimeError("bug")

    response = await http_request(server, "GET", Q)
    assert response.status == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        f"the hook {broken!r} failed"
    ]


# -- the client's address -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", "203.0.113.7", "203.0.113.7"),
        # the proxy appends; an untrusted client's own entries before it are not believed
        ("10.0.0.2", "198.51.100.1, 203.0.113.7", "203.0.113.7"),
        # two trusted proxies in a row
        ("10.0.0.2", "203.0.113.7, 10.0.0.9", "203.0.113.7"),
        ("192.168.1.5", "203.0.113.7", "203.0.113.7"),
        ("::ffff:10.0.0.2", "2001:db8::1", "2001:db8::1"),
        # a peer that is no trusted proxy: the header is ignored
        ("198.51.100.1", "203.0.113.7", "198.51.100.1"),
        # everything trusted: the first address
        ("10.0.0.2", "10.0.0.3", "10.0.0.3"),
        # a malformed entry ends the walk at the address before it
        ("10.0.0.2", "203.0.113.7, junk", "10.0.0.2"),
        ("10.0.0.2", "junk, 10.0.0.3", "10.0.0.3"),
    ],
)
def test_client_address_behind_trusted_proxies(
    peer: str, forwarded: str | None, expected: str
) -> None:
    server = EngineServer(echo, trusted_proxies=["10.0.0.0/8", "192.168.1.5"])
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    head = request_head("GET", Q, headers, client=(peer, 5000))
    assert server.client_address(head) == expected


def test_forwarded_for_ignored_without_trusted_proxies() -> None:
    server = EngineServer(echo)
    head = request_head("GET", Q, {"X-Forwarded-For": "203.0.113.7"}, client=("10.0.0.2", 1))
    assert server.client_address(head) == "10.0.0.2"
    assert server.client_address(request_head("GET", Q, client=None)) is None


# -- the standalone front end's 101 -----------------------------------------------------------


@pytest.mark.parametrize("backend", ["native", "trio-websocket"])
async def test_standalone_websocket_accept_carries_hook_headers(
    nursery: trio.Nursery, backend: str
) -> None:
    server = EngineServer(echo, websocket=backend, close_timeout=0.1)
    server.on("initial_headers", lambda headers, head: headers.append(("X-Initial", "yes")))
    server.on("headers", lambda headers, head: headers.append(("X-Every", head.path)))
    listeners = await nursery.start(serve, server, "127.0.0.1", 0)
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(
            f"GET {WS} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(4096)
        await stream.aclose()
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 101 ")
    assert b"\r\nx-initial: yes" in head
    assert b"\r\nx-every: /engine.io/" in head
