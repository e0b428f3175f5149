"""Connection state recovery across nodes of a mixed cluster with the Redis Streams adapters
(ours and the official ``@socket.io/redis-streams-adapter`` 0.3.1), without sticky sessions.

The official ``socket.io-client`` (in the Node node's process) reaches its first node through
a :class:`~interop.tcp_proxy.TcpProxy`. The proxy cuts the connection with a TCP reset; both
nodes broadcast meanwhile; then the proxy sends the client's reconnection to the *other*
node, which must give the socket back (same id, rooms) with what it missed from both nodes,
in order, before anything new. Both ways: Node → trio_sio and trio_sio → Node.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from interop.tcp_proxy import TcpProxy

import trio_sio
from trio_sio.adapters import redis_streams

from .cluster_node import Peer
from .test_mixed_cluster import HERE, eventually

pytestmark = pytest.mark.interop

LIMIT = 30.0


def trio_node(redis_url: str, key: str) -> trio_sio.Server:
    adapter = redis_streams.create_adapter(
        redis_url, stream_name=key, channel_prefix=key, requests_timeout=2.0
    )
    sio = trio_sio.Server(adapter=adapter, connection_state_recovery=True)

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        if not socket.recovered:
            socket.data["name"] = auth.get("name")
            for room in auth.get("rooms", []):
                socket.join(room)

    return sio


@asynccontextmanager
async def cluster(
    node: str, redis_url: str, key: str
) -> AsyncIterator[tuple[trio_sio.Server, int, Peer]]:
    """The trio_sio node (and its port) and the Node node, once each counts two servers."""
    sio = trio_node(redis_url, key)
    argv = [node, "node_cluster_server.mjs", "--redis", redis_url, "--key", key]
    argv += ["--name", "node", "--adapter", "streams", "--recovery"]
    async with trio.open_nursery() as nursery, Peer.start(argv, cwd=HERE) as peer:
        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]

        async def both_see_two() -> bool:
            count = (await peer.call("serverCount"))["count"]
            return count == 2 and await sio.server_count() == 2

        await eventually(both_see_two)
        yield sio, port, peer
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("first", ["node", "trio"], ids=["node-to-trio", "trio-to-node"])
async def test_a_client_is_recovered_by_the_other_node(
    node: str,
    redis_url: str,
    first: str,
) -> None:
    key = "rec" + secrets.token_hex(4)
    with trio.fail_after(LIMIT):
        async with cluster(node, redis_url, key) as (sio, trio_port, peer):
            ports = {"trio": trio_port, "node": peer.port}
            second = "trio" if first == "node" else "node"

            async def emit(where: str, event: str, *args: Any) -> None:
                if where == "trio":
                    await sio.to("red").emit(event, *args)
                else:
                    await peer.call("emit", event=event, args=list(args), to=["red"])

            def events() -> list[list[Any]]:
                found = peer.entries(ev="client-event", client="c")
                return [[e["event"], *e["args"]] for e in found]

            with TcpProxy(ports[first]) as proxy:
                url = f"http://127.0.0.1:{proxy.port}"
                auth = {"name": "c", "rooms": ["red"]}
                sid = (await peer.call("client", name="c", auth=auth, url=url, reconnect=True))[
                    "sid"
                ]
                await emit(first, "before")
                await peer.wait_for(ev="client-event", client="c", event="before")

                proxy.down()  # a TCP reset: the first node keeps the session
                await peer.wait_for(ev="client-disconnect", client="c")
                if first == "trio":
                    await eventually(lambda: _none_left(sio))
                else:

                    async def gone() -> bool:
                        return (await peer.call("rooms", sid=sid))["rooms"] is None

                    await eventually(gone)
                await emit("trio", "missed", 1)
                await emit("node", "missed", 2)
                await trio.sleep(0.3)  # both entries in the stream

                proxy.target_port = ports[second]  # the reconnection reaches the other node
                proxy.up()
                (_, back) = await peer.wait_for(2, ev="client-connect", client="c")
                assert back["sid"] == sid
                assert back["recovered"] is True
                await emit(second, "after")
                await peer.wait_for(ev="client-event", client="c", event="after")
                got = events()
                assert [e[:-1] for e in got] == [
                    ["before"],
                    ["missed", 1],
                    ["missed", 2],
                    ["after"],
                ]
                offsets = [e[-1] for e in got]
                # each with its stream id as offset
                assert all(re.fullmatch(r"[0-9]+-[0-9]+", offset) for offset in offsets)
                assert len(set(offsets)) == 4
                # its rooms came back on the second node
                if second == "trio":
                    socket = sio.main.get_socket(sid)
                    assert socket is not None and socket.recovered
                    assert "red" in socket.rooms
                else:
                    assert "red" in (await peer.call("rooms", sid=sid))["rooms"]


async def _none_left(sio: trio_sio.Server) -> bool:
    await trio.lowlevel.checkpoint()
    return not sio.main.sockets
