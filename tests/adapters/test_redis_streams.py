"""The Redis Streams adapter between trio_sio nodes in one process, over a real redis-server.

Each test uses its own stream and channel prefix, so the tests of a module share one Redis.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import coredis
import trio
from interop.tcp_proxy import TcpProxy

import trio_sio
from trio_sio.adapters._streams_wire import decode_entry
from trio_sio.adapters.base import RemoteSocket
from trio_sio.adapters.redis_streams import StreamsAdapterFactory, create_adapter
from trio_sio.testing import RawClient, open_raw_client


def make_node(url: str, name: str) -> trio_sio.Server:
    sio = trio_sio.Server(
        adapter=create_adapter(url, stream_name=name, channel_prefix=name, requests_timeout=1.0),
        connection_state_recovery=True,
    )

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        if not socket.recovered:
            socket.data["name"] = auth.get("name")
            for room in auth.get("rooms", []):
                socket.join(room)

    sio.on("sync", lambda socket: True)
    return sio


@asynccontextmanager
async def cluster(url: str) -> AsyncIterator[tuple[str, trio_sio.Server, trio_sio.Server]]:
    name = "s" + secrets.token_hex(4)
    a, b = make_node(url, name), make_node(url, name)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        yield name, a, b
        nursery.cancel_scope.cancel()


async def connect(raw: RawClient, auth: dict[str, Any] | None = None) -> tuple[list[str], dict]:
    """CONNECT; the events received before the reply, and the reply."""
    await raw.send("40" + (json.dumps(auth) if auth else ""))
    before: list[str] = []
    with trio.fail_after(5):
        while True:
            frame = str(await raw.receive())
            if frame.startswith("40"):
                break
            before.append(frame)
        await raw.send('4299["sync"]')
        assert await raw.receive() == "4399[true]"
    return before, json.loads(frame[2:])


async def event(raw: RawClient) -> list[Any]:
    with trio.fail_after(5):
        frame = str(await raw.receive())
    assert frame.startswith("42"), frame
    value: list[Any] = json.loads(frame[2:])
    return value


async def test_broadcasts_rooms_and_offsets_cross_nodes(redis_url: str) -> None:
    async with (
        cluster(redis_url) as (name, a, b),
        open_raw_client(a) as on_a,
        open_raw_client(b) as on_b,
    ):
        await connect(on_a, {"name": "a"})
        await connect(on_b, {"name": "b", "rooms": ["red"]})
        await a.emit("all", 1)
        first_a, first_b = await event(on_a), await event(on_b)
        assert first_a == first_b  # the same stream id as offset on both nodes
        assert first_a[:2] == ["all", 1]
        async with coredis.Redis.from_url(redis_url, decode_responses=False) as redis:
            entries = await redis.xrange(name, "-", "+")
        assert [e.identifier.decode() for e in entries] == [first_a[2]]
        assert decode_entry(entries[0].field_values)["data"]["packet"]["data"] == ["all", 1]
        await b.to("red").emit("red only")
        assert (await event(on_b))[0] == "red only"
        await a.except_("red").emit("not red")
        assert (await event(on_a))[0] == "not red"
        await a.in_("red").sockets_join("blue")
        with trio.fail_after(5):
            while not b.main.adapter.rooms().get("blue"):
                await trio.sleep(0.02)


async def test_fetch_sockets_server_side_emits_and_acks(redis_url: str) -> None:
    async with (
        cluster(redis_url) as (_, a, b),
        open_raw_client(a) as on_a,
        open_raw_client(b) as on_b,
    ):
        await connect(on_a, {"name": "a"})
        _, reply = await connect(on_b, {"name": "b", "rooms": ["red"]})
        assert await a.server_count() == 2
        found = {s.id: s for s in await a.fetch_sockets()}
        remote = found[reply["sid"]]
        assert isinstance(remote, RemoteSocket)
        local = b.main.get_socket(reply["sid"])
        assert local is not None
        assert remote.handshake == local.handshake  # one typed shape
        assert remote.rooms == {reply["sid"], "red"}
        assert remote.data == {"name": "b"}

        got: list[str] = []

        def ping(value: str) -> str:
            got.append(value)
            return "pong:" + value

        b.on_server_side("ping", ping)
        await a.server_side_emit("ping", "w")
        assert await a.server_side_emit_with_ack("ping", "x", timeout=5) == ["pong:x"]
        assert got == ["w", "x"]

        async def answer(raw: RawClient, value: str) -> None:
            with trio.fail_after(5):
                frame = str(await raw.receive())
            ack_id = frame[2 : frame.index("[")]
            await raw.send(f"43{ack_id}[{json.dumps(value)}]")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer, on_a, "from a")
            nursery.start_soon(answer, on_b, "from b")
            replies = await a.timeout(5).emit_with_ack("question")
        assert sorted(replies) == ["from a", "from b"]


async def test_a_session_is_recovered_on_the_other_node(redis_url: str) -> None:
    async with cluster(redis_url) as (_, a, b):
        async with open_raw_client(b) as raw:
            _, reply = await connect(raw, {"rooms": ["red"]})
            await a.to("red").emit("first")
            name, offset = await event(raw)
            assert name == "first"
        with trio.fail_after(5):
            while b.main.sockets:
                await trio.sleep(0.01)
        await a.to("red").emit("missed", 1)
        await b.to("blue").emit("not-for-it")
        await b.emit("missed", 2)
        async with open_raw_client(a) as raw:  # back on the *other* node
            before, again = await connect(raw, {"pid": reply["pid"], "offset": offset})
            assert again == reply
            assert [json.loads(f[2:])[:-1] for f in before] == [["missed", 1], ["missed", 2]]
            socket = a.main.get_socket(reply["sid"])
            assert socket is not None and socket.recovered
            assert "red" in socket.rooms
        # an offset the stream does not hold, or an unknown session: a new socket
        async with open_raw_client(b) as raw:
            _, third = await connect(raw, {"pid": reply["pid"], "offset": "1-0"})
            assert third["sid"] != reply["sid"]
        async with open_raw_client(b) as raw:
            _, fourth = await connect(raw, {"pid": "unknown", "offset": offset})
            assert fourth["sid"] != reply["sid"]


async def test_a_node_cut_off_from_redis_reads_what_it_missed_from_the_stream(
    redis_url: str,
) -> None:
    """Unlike pub/sub: the broadcasts made while a node's link to Redis was down reach its
    sockets once it is back (read from the stream where it left off)."""
    name = "s" + secrets.token_hex(4)
    port = int(redis_url.rsplit(":", 1)[1])
    with TcpProxy(port) as proxy:
        a = make_node(f"redis://127.0.0.1:{proxy.port}", name)
        b = make_node(redis_url, name)
        factory = a.adapter_factory
        assert isinstance(factory, StreamsAdapterFactory)
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            await nursery.start(b.run)
            async with open_raw_client(a) as on_a:
                await connect(on_a, {"rooms": ["red"]})
                await b.emit("before")
                assert (await event(on_a))[0] == "before"
                proxy.down()
                with trio.fail_after(5):
                    while factory.statistics().subscribed:
                        await trio.sleep(0.01)
                await b.to("red").emit("during", 1)
                await b.emit("during", 2)
                proxy.up()
                assert [(await event(on_a))[:2] for _ in range(2)] == [
                    ["during", 1],
                    ["during", 2],
                ]
                assert factory.statistics().outages == 1
            nursery.cancel_scope.cancel()
