"""Per-socket listeners and packet middleware seen by the official Node client
(socket.io-client 4, ``listeners_node_client.mjs``), over each transport, on a real socket."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_sio

HERE = Path(__file__).resolve().parent


def make_app() -> trio_sio.Server:
    sio = trio_sio.Server()
    sio.use_packet(trio_sio.RateLimit(rate=0.1, burst=3, events={"msg"}))

    @sio.use_packet
    def authorize(socket: trio_sio.Socket, event: str, args: list[Any]) -> Any:
        if event.startswith("admin:"):
            return trio_sio.PacketRefused("not authorized")
        return None

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: Any) -> None:
        @socket.on("error")
        async def refused(err: Exception) -> None:
            await socket.emit("refused", str(err))

    sio.on("msg", lambda socket, i: i)

    @sio.on("login")
    def login(socket: trio_sio.Socket, token: str) -> dict[str, Any]:
        cart: list[str] = []

        @socket.on("add")
        def add(item: str) -> int:
            cart.append(item)
            return len(cart)

        socket.once("checkout", lambda: list(cart))
        socket.use(lambda event, args: [a.upper() for a in args] if event == "shout" else None)
        socket.on("shout", lambda *words: words[0])
        return {"ok": True, "token": token}

    return sio


@pytest.mark.parametrize("transports", [["polling"], ["websocket"], ["polling", "websocket"]])
async def test_listeners_and_middleware_with_the_node_client(
    node_sio_client: str, transports: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    sio = make_app()
    with caplog.at_level(logging.INFO, "trio_sio"), trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            done = await trio.run_process(
                [
                    node_sio_client,
                    "listeners_node_client.mjs",
                    f"http://127.0.0.1:{port}",
                    json.dumps(transports),
                ],
                cwd=HERE,
                capture_stdout=True,
                check=False,
            )
            nursery.cancel_scope.cancel()
    output = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert done.returncode == 0, output
    assert output["results"] == {
        "before_login": "error: operation has timed out",  # nobody listens yet: no ack
        "login": {"ok": True, "token": "token"},
        "add": [1, 2],
        "checkout": ["apple", "pear"],
        "checkout_again": "error: operation has timed out",  # once
        "shout": "HELLO",
        "admin": "error: operation has timed out",  # refused: no ack
        "burst": [1, 2, 3, "refused", "refused"],
        "refused": ["not authorized", "rate limit exceeded", "rate limit exceeded"],
    }
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
