"""The sharded Redis adapter on a real Redis Cluster of three masters (started by the tests),
between trio_sio nodes (the mixed tests with Node's ``createShardedAdapter`` are in
``test_mixed_cluster.py``); and the classic adapter over the same cluster.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import coredis
import pytest
import trio
from coredis.connection import TCPLocation

import trio_sio
from trio_sio.adapters import redis as classic
from trio_sio.adapters.base import RemoteSocket
from trio_sio.adapters.redis_sharded import ShardedAdapterFactory, create_adapter
from trio_sio.testing import RawClient, open_raw_client

from .conftest import RedisCluster
from .test_mixed_cluster import eventually

WAIT = 5.0


def make_node(url: str, prefix: str, mode: str = "dynamic") -> trio_sio.Server:
    sio = trio_sio.Server(
        adapter=create_adapter(
            url,
            channel_prefix=prefix,
            subscription_mode=mode,  # type: ignore[arg-type]
            requests_timeout=2.0,
        )
    )

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        socket.data["name"] = auth.get("name")
        for room in auth.get("rooms", []):
            socket.join(room)

    return sio


@asynccontextmanager
async def two_nodes(
    url: str, mode: str = "dynamic"
) -> AsyncIterator[tuple[str, trio_sio.Server, trio_sio.Server]]:
    prefix = "sh" + secrets.token_hex(4)
    a, b = make_node(url, prefix, mode), make_node(url, prefix, mode)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        yield prefix, a, b
        nursery.cancel_scope.cancel()


async def expect(raw: RawClient, frame: str) -> None:
    with trio.fail_after(WAIT):
        await raw.expect(frame)


async def shard_channels(url: str, pattern: str) -> set[str]:
    """The sharded channels with a subscriber, over every master."""
    found: set[str] = set()
    port = int(url.rsplit(":", 1)[1])
    nodes = [TCPLocation("127.0.0.1", port)]
    async with coredis.RedisCluster(startup_nodes=nodes, decode_responses=True) as cluster:
        for node in cluster.primaries:
            async with node:
                found |= set(await node.pubsub_shardchannels(pattern))
    return found


async def test_broadcasts_and_room_channels(redis_cluster: RedisCluster) -> None:
    url = redis_cluster.url
    async with (
        two_nodes(url) as (prefix, a, b),
        open_raw_client(a) as on_a,
        open_raw_client(b) as on_b,
    ):
        await on_a.connect(auth={"name": "a"})
        sid_b = await on_b.connect(auth={"name": "b", "rooms": ["red"]})
        assert await a.server_count() == 2
        await a.emit("all", 1)
        await expect(on_a, '42["all",1]')
        await expect(on_b, '42["all",1]')
        # node b subscribes to the room's own channel; a (no socket in "red") does not
        channels = await shard_channels(url, f"{prefix}#/#*")
        assert f"{prefix}#/#red#" in channels
        assert f"{prefix}#/#{sid_b}#" not in channels  # a socket's own room: none
        await a.to("red").emit("red only", b"\x01")
        await expect(on_b, '451-["red only",{"_placeholder":true,"num":0}]')
        with trio.fail_after(WAIT):
            assert await on_b.receive() == b"\x01"
        await a.to(sid_b).emit("direct")
        await expect(on_b, '42["direct"]')
        # the room emptied: its channel goes
        await b.in_(sid_b).sockets_leave("red")

        async def red_gone() -> bool:
            return f"{prefix}#/#red#" not in await shard_channels(url, f"{prefix}#/#*")

        await eventually(red_gone)


async def test_fetch_sockets_server_side_emits_and_acks(redis_cluster: RedisCluster) -> None:
    async with (
        two_nodes(redis_cluster.url) as (_, a, b),
        open_raw_client(a) as on_a,
        open_raw_client(b) as on_b,
    ):
        await on_a.connect(auth={"name": "a"})
        sid_b = await on_b.connect(auth={"name": "b", "rooms": ["red"]})
        found = {s.id: s for s in await a.fetch_sockets()}
        remote = found[sid_b]
        assert isinstance(remote, RemoteSocket)
        local = b.main.get_socket(sid_b)
        assert local is not None and remote.handshake == local.handshake
        assert remote.rooms == {sid_b, "red"} and remote.data == {"name": "b"}
        b.on_server_side("hello", lambda x: f"b:{x}")
        assert await a.server_side_emit_with_ack("hello", 1, timeout=5) == ["b:1"]

        async def answer(raw: RawClient, value: str) -> None:
            with trio.fail_after(WAIT):
                frame = str(await raw.receive())
            await raw.send(f"43{frame[2 : frame.index('[')]}[{json.dumps(value)}]")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer, on_a, "from a")
            nursery.start_soon(answer, on_b, "from b")
            replies = await a.timeout(5).emit_with_ack("question")
        assert sorted(replies) == ["from a", "from b"]


def test_a_single_redis_is_refused_clearly() -> None:
    factory = create_adapter("redis://127.0.0.1:6379")
    assert isinstance(factory, ShardedAdapterFactory)
    with pytest.raises(TypeError, match="Redis Cluster"):
        factory._open_pubsub(coredis.Redis())


async def test_the_classic_adapter_over_a_redis_cluster(redis_cluster: RedisCluster) -> None:
    """Classic pub/sub works on a cluster too (every message reaches every Redis node); the
    nodes are counted over every master, whichever one holds each subscription."""

    key = "cl" + secrets.token_hex(4)
    nodes = [
        trio_sio.Server(
            adapter=classic.create_adapter(redis_cluster.nodes[i].url, key=key, cluster=True)
        )
        for i in (0, 2)
    ]
    for sio in nodes:
        sio.on_server_side("hello", lambda x: f"got:{x}")
    a, b = nodes
    async with trio.open_nursery() as nursery:
        for sio in nodes:
            await nursery.start(sio.run)
        async with open_raw_client(a) as on_a, open_raw_client(b) as on_b:
            await on_a.connect()
            sid_b = await on_b.connect()
            assert await a.server_count() == 2
            await a.emit("all")
            await expect(on_a, '42["all"]')
            await expect(on_b, '42["all"]')
            assert {s.id for s in await a.fetch_sockets()} >= {sid_b}
            assert await a.server_side_emit_with_ack("hello", 1, timeout=5) == ["got:1"]
        nursery.cancel_scope.cancel()
