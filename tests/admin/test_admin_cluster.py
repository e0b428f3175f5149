"""The Admin UI across a cluster: two trio_sio nodes on one real redis-server.

The UI connects to one node and sees both: each node's ``server_stats``, every node's
sockets (``fetch_sockets``) and notifications (broadcast to the admin namespace through the
adapter), and its commands reach sockets of the other node.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import bcrypt
import trio

import trio_sio
from trio_sio.adapters.redis import create_adapter
from trio_sio.admin import RedisSessionStore
from trio_sio.testing import open_raw_client

from .test_admin import ANY_DATE, next_event, wait_for

HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()


@asynccontextmanager
async def cluster(url: str) -> AsyncIterator[list[trio_sio.Server]]:
    key = "admin" + secrets.token_hex(4)
    nodes = []
    for name in ("node-a", "node-b"):
        sio = trio_sio.Server(adapter=create_adapter(url, key=key, requests_timeout=1.0))

        @sio.use
        def named(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
            socket.data["name"] = auth.get("name")

        @sio.on("connection")
        def connected(socket: trio_sio.Socket) -> None:
            socket.join("everyone")

        sio.instrument(
            auth={"type": "basic", "username": "admin", "password": HASH},
            server_id=name,
            store=RedisSessionStore(url, prefix=key),
        )
        nodes.append(sio)
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        yield nodes
        nursery.cancel_scope.cancel()


async def test_one_ui_sees_and_drives_the_whole_cluster(redis_url: str) -> None:
    async with (
        cluster(redis_url) as (a, b),
        open_raw_client(a) as admin,
        open_raw_client(a) as on_a,
        open_raw_client(b) as on_b,
    ):
        id_a = await on_a.connect(auth={"name": "on a"})
        await admin.connect("/admin", auth={"username": "admin", "password": "pw"})
        [session_id] = await next_event(admin, "session")
        [sockets] = await next_event(admin, "all_sockets")
        assert {s["id"] for s in sockets if s["nsp"] == "/"} == {id_a}

        # a socket connecting to the other node is reported through Redis
        id_b = await on_b.connect(auth={"name": "on b"})
        while True:
            [socket, _] = await next_event(admin, "socket_connected")
            if socket["id"] == id_b:
                break
        assert socket["data"] == {"name": "on b"} and socket["transport"] == "websocket"
        await wait_for(admin, "room_joined", ["/", "everyone", id_b, ANY_DATE])

        # both nodes' stats come to the UI connected to one of them
        servers: set[str] = set()
        with trio.fail_after(10):
            while servers != {"node-a", "node-b"}:
                [stats] = await next_event(admin, "server_stats")
                servers.add(stats["serverId"])

        # a UI connecting later lists the sockets of both nodes, with the other node's
        # clientId and transport (kept in socket.data["_admin"], as the Node server does)
        async with open_raw_client(b) as second:
            await second.connect("/admin", auth={"sessionId": session_id})  # a's session
            [sockets] = await next_event(second, "all_sockets")
        users = {s["id"]: s for s in sockets if s["nsp"] == "/"}
        assert set(users) == {id_a, id_b}
        assert users[id_a]["data"] == {"name": "on a"}
        assert users[id_a]["clientId"] and users[id_a]["transport"] == "websocket"
        assert sorted(users[id_a]["rooms"]) == sorted([id_a, "everyone"])

        # commands sent to node a act on node b's sockets
        await admin.send(f'42/admin,["emit","/","{id_b}","from the ui",1]')
        with trio.fail_after(5):
            assert await on_b.receive() == '42["from the ui",1]'
        await admin.send(f'42/admin,["_disconnect","/",false,"{id_b}"]')
        with trio.fail_after(5):
            assert await on_b.receive() == "41"
