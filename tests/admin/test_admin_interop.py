"""trio_sio's Admin UI protocol next to the Node server's (``socket.io`` 4.8.3 instrumented
by ``@socket.io/admin-ui`` 0.5.1, ``node_reference_server.js``): the same scenario runs
against both, and what an admin client receives must have the same events and shapes.

Needs node and ``npm ci`` in this folder; skipped without them (an error under CI).
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import trio

import trio_sio

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
PASSWORD = "pw"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


@pytest.fixture
def node_url() -> Iterator[str]:
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "@socket.io" / "admin-ui").is_dir():
        reason = "node or tests/admin/node_modules is missing (npm ci in tests/admin)"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    proc = subprocess.Popen(
        [node, "node_reference_server.js"],
        cwd=HERE,
        env=dict(os.environ, ADMIN_PASSWORD_HASH=HASH),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("listening on "), line
        yield f"http://127.0.0.1:{int(line.split()[-1])}"
    finally:
        proc.kill()
        proc.wait()


def trio_server() -> trio_sio.Server:
    """The same application as the Node reference, on trio_sio."""
    sio = trio_sio.Server()

    @sio.use
    def named(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        socket.data["name"] = auth.get("name")

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        socket.join(auth.get("rooms", []))

    @sio.on("ping")
    async def ping(socket: trio_sio.Socket, value: int) -> None:
        await socket.emit("pong", value + 1)

    auth = {"type": "basic", "username": "admin", "password": HASH}
    sio.instrument(auth=auth, mode="development", server_id="node-reference")
    return sio


async def scenario(url: str) -> dict[str, list[list[Any]]]:
    """What an admin client receives while a user connects, pings and leaves."""
    received: dict[str, list[list[Any]]] = {}
    admin = trio_sio.Client(
        url, namespaces=["/admin"], auth={"username": "admin", "password": PASSWORD}
    )

    @admin.of("/admin").on_any
    def record(event: str, *args: Any) -> None:
        received.setdefault(event, []).append(list(args))

    async with admin:
        with trio.fail_after(10):
            while "all_sockets" not in received:
                await trio.sleep(0.05)
        user = trio_sio.Client(url, auth={"name": "u", "rooms": ["r"]}, transports=["websocket"])
        async with user:
            await user.emit("ping", 1)
            await user.wait_for("pong")
            await trio.sleep(0.2)
        with trio.fail_after(10):
            while not any(
                s["clientsCount"] == 1 and s["aggregatedEvents"]
                for [s] in received.get("server_stats", [])
            ):
                await trio.sleep(0.1)
    return received


def shape(value: Any) -> Any:
    """The structure of a value: dict keys (recursively), list item shapes, type names."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


async def test_same_events_and_payloads_as_the_node_server(node_url: str) -> None:
    from_node = await scenario(node_url)
    sio = trio_server()
    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(sio.serve, "127.0.0.1", 0)
        ours = await scenario(f"http://127.0.0.1:{listener.socket.getsockname()[1]}")
        nursery.cancel_scope.cancel()

    # Node emits `session` before its CONNECT packet (which the UI's client hands out before
    # the UI listens: it misses it); trio_sio sends it right after CONNECT.
    assert [len(args[0]) for args in from_node["session"]] == [16]
    assert [len(args[0]) for args in ours["session"]] == [16]
    # socket_updated tells of the admin client's own move from polling to WebSocket: whether
    # it comes depends on whether that upgrade ends before the namespace CONNECT (whose
    # password check may wait) is done, on either server.
    assert set(ours) - {"socket_updated"} == set(from_node) - {"socket_updated"}
    assert ours["config"] == from_node["config"]

    def user_events(received: dict[str, list[list[Any]]], name: str) -> list[list[Any]]:
        return [args for args in received[name] if args[0] == "/"]

    for name in ("room_joined", "room_left", "event_received", "event_sent"):
        node, mine = user_events(from_node, name), user_events(ours, name)
        assert [shape(a) for a in mine] == [shape(a) for a in node], name
    assert [a[2] for a in user_events(ours, "event_received")] == [["ping", 1]]
    assert [a[2] for a in user_events(ours, "event_sent")] == [["pong", 2]]
    assert [a[2] for a in user_events(ours, "socket_disconnected")] == [
        a[2] for a in user_events(from_node, "socket_disconnected")
    ]

    [node_socket, _], [our_socket, _] = [
        next(args for args in received["socket_connected"] if args[0]["nsp"] == "/")
        for received in (from_node, ours)
    ]
    assert shape(our_socket) == {**shape(node_socket), "handshake": shape(our_socket["handshake"])}
    assert set(our_socket["handshake"]) == set(node_socket["handshake"])
    assert our_socket["data"] == node_socket["data"] == {"name": "u"}

    [[node_admin]], [[our_admin]] = from_node["all_sockets"][0], ours["all_sockets"][0]
    assert set(our_admin) == set(node_admin)

    def stats_shape(received: dict[str, list[list[Any]]]) -> tuple[Any, ...]:
        [stats] = received["server_stats"][-1]
        kinds = {e["type"] for [s] in received["server_stats"] for e in s["aggregatedEvents"]}
        return set(stats), kinds, shape(stats["namespaces"][0])

    assert stats_shape(ours) == stats_shape(from_node)
