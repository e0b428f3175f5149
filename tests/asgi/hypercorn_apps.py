"""ASGI applications for the Hypercorn tests, loadable as Hypercorn loads any app.

    hypercorn --worker-class trio "hypercorn_apps:echo_app()"
    hypercorn --worker-class trio "hypercorn_apps:scenario_app()"
    hypercorn --worker-class trio "hypercorn_apps:quart_app()"
    hypercorn --worker-class trio "hypercorn_apps:starlette_app()"

``echo_app`` writes one JSON line to stdout for each connection and disconnection, so that a
test that runs it in a Hypercorn process can see the server's side.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import trio_sio

INTEROP = Path(__file__).resolve().parents[1] / "interop"

#: The origin the echo app allows (CORS).
ALLOWED_ORIGIN = "http://allowed.example"
#: The echo app's ``max_http_buffer_size``.
MAX_PAYLOAD = 10_000


def log(**entry: Any) -> None:
    sys.stdout.write(json.dumps(entry) + "\n")
    sys.stdout.flush()


def echo_server(**options: Any) -> trio_sio.Server:
    """``echo`` acks its arguments; ``transport`` acks the server's transport; a
    ``welcome`` is emitted on connection."""
    options.setdefault("cors_allowed_origins", [ALLOWED_ORIGIN])
    options.setdefault("max_http_buffer_size", MAX_PAYLOAD)
    options.setdefault("close_timeout", 0.5)
    sio = trio_sio.Server(**options)

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        log(ev="connection", sid=socket.id, transport=socket.transport)
        await socket.emit("welcome", socket.id)

    @sio.on("disconnect")
    async def disconnected(socket: trio_sio.Socket, reason: str) -> None:
        log(ev="disconnect", sid=socket.id, reason=reason)

    @sio.on("echo")
    async def echo(socket: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @sio.on("transport")
    async def transport(socket: trio_sio.Socket) -> str:
        return str(socket.transport)

    return sio


def echo_app(**options: Any) -> trio_sio.ASGIApp:
    return trio_sio.ASGIApp(echo_server(**options))


def scenario_app() -> trio_sio.ASGIApp:
    """The interop scenario server (tests/interop/sio_trio_server.py) as an ASGI app."""
    return trio_sio.ASGIApp(_server("scenario"))


def _server(kind: str) -> trio_sio.Server:
    if kind == "scenario":
        sys.path.insert(0, str(INTEROP))
        from sio_trio_server import make_server

        return make_server()
    return echo_server()


def quart_app(server: str = "echo") -> Any:
    """A Quart-Trio app with a route of its own; trio_sio wraps its ASGI app (Quart's way
    of adding ASGI middleware), so Socket.IO is served at /socket.io/ beside the routes."""
    from quart_trio import QuartTrio

    app = QuartTrio(__name__)

    @app.route("/")
    async def index() -> str:
        return "hello from quart"

    app.asgi_app = trio_sio.ASGIApp(_server(server), other_app=app.asgi_app)  # type: ignore[method-assign]
    return app


def starlette_app(server: str = "echo") -> Any:
    """A Starlette app (on anyio's Trio backend under Hypercorn's trio worker) with a route
    of its own and trio_sio mounted at /socket.io; Starlette keeps lifespan to itself, so
    its lifespan runs the server."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    sio_app = trio_sio.ASGIApp(_server(server))

    async def index(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello from starlette")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        async with sio_app.running():
            yield

    return Starlette(
        routes=[Route("/", index), Mount("/socket.io", app=sio_app)], lifespan=lifespan
    )
