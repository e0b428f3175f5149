"""The Redis adapter between trio_sio nodes in one process, over a real redis-server.

Each test uses its own channel prefix, so the tests of a module can share one Redis.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import coredis
import pytest
import trio

import trio_sio
from trio_sio.adapters.base import RemoteSocket
from trio_sio.adapters.redis import ClusterTimeoutError, RedisUnavailable, create_adapter
from trio_sio.testing import RawClient, open_raw_client

from .conftest import RedisServer


def make_node(url: str, key: str, **options: Any) -> trio_sio.Server:
    sio = trio_sio.Server(adapter=create_adapter(url, key=key, requests_timeout=1.0), **options)

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        socket.data["name"] = auth.get("name")
        for room in auth.get("rooms", []):
            socket.join(room)

    return sio


@asynccontextmanager
async def cluster(url: str, count: int = 2) -> AsyncIterator[list[trio_sio.Server]]:
    key = "t" + secrets.token_hex(4)
    nodes = [make_node(url, key) for _ in range(count)]
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        yield nodes
        nursery.cancel_scope.cancel()


async def expect(raw: RawClient, frame: str | bytes) -> None:
    with trio.fail_after(5):
        await raw.expect(frame)


async def nothing_more(raw: RawClient) -> None:
    await trio.sleep(0.3)
    with pytest.raises(trio.WouldBlock):
        raw.receive_nowait()


async def test_broadcasts_cross_nodes(redis_url: str) -> None:
    async with (
        cluster(redis_url) as (a, b),
        open_raw_client(a) as on_a,
        open_raw_client(b) as on_b1,
        open_raw_client(b) as on_b2,
    ):
        await on_a.connect(auth={"name": "a"})
        await on_b1.connect(auth={"name": "b1", "rooms": ["red"]})
        await on_b2.connect(auth={"name": "b2", "rooms": ["blue"]})
        await a.emit("all", 1)
        for raw in (on_a, on_b1, on_b2):
            await expect(raw, '42["all",1]')
        await a.to("red").emit("red only", {"x": [1, 2]})
        await expect(on_b1, '42["red only",{"x":[1,2]}]')
        await a.except_("red").emit("not red")
        await expect(on_a, '42["not red"]')
        await expect(on_b2, '42["not red"]')
        await b.to("red").emit("bin", b"\x01\x02")
        await expect(on_b1, '451-["bin",{"_placeholder":true,"num":0}]')
        await expect(on_b1, b"\x01\x02")
        await a.local.emit("local")
        await expect(on_a, '42["local"]')
        for raw in (on_b1, on_b2):
            await nothing_more(raw)


async def test_fetch_sockets_and_remote_sockets(redis_url: str) -> None:
    async with (
        cluster(redis_url) as (a, b),
        open_raw_client(a) as on_a,
        open_raw_client(b) as on_b,
    ):
        sid_a = await on_a.connect(auth={"name": "a"})
        sid_b = await on_b.connect(auth={"name": "b", "rooms": ["red"]})
        assert await a.server_count() == 2
        found = {s.id: s for s in await a.fetch_sockets()}
        assert set(found) == {sid_a, sid_b}
        remote = found[sid_b]
        assert isinstance(remote, RemoteSocket)
        assert remote.rooms == {sid_b, "red"}
        assert remote.data == {"name": "b"}
        # the same typed handshake as a local socket's
        local = b.main.get_socket(sid_b)
        assert local is not None
        assert remote.handshake == local.handshake
        assert remote.handshake.auth == {"name": "b", "rooms": ["red"]}
        assert [s.id for s in await a.in_("red").fetch_sockets()] == [sid_b]
        await remote.emit("direct", "hi")
        await expect(on_b, '42["direct","hi"]')
        remote.join("green")
        with trio.fail_after(5):
            while "green" not in b.main.adapter.socket_rooms(sid_b):
                await trio.sleep(0.02)
        await a.in_("green").sockets_leave("red")
        with trio.fail_after(5):
            while "red" in b.main.adapter.socket_rooms(sid_b):
                await trio.sleep(0.02)
        await a.in_(sid_b).disconnect_sockets()
        await expect(on_b, "41")
        assert [s.id for s in await a.fetch_sockets()] == [sid_a]


async def test_server_side_emit(redis_url: str) -> None:
    async with cluster(redis_url, 3) as (a, b, c):
        got: list[tuple[str, Any]] = []
        for name, node in (("b", b), ("c", c)):

            def handler(x: int, *, name: str = name) -> str:
                got.append((name, x))
                return f"{name}:{x}"

            node.on_server_side("hello", handler)
        await a.server_side_emit("hello", 1)
        replies = await a.server_side_emit_with_ack("hello", 2, timeout=5)
        assert sorted(replies) == ["b:2", "c:2"]
        assert sorted(got) == [("b", 1), ("b", 2), ("c", 1), ("c", 2)]


async def test_a_node_that_does_not_answer_ends_at_the_timeout(redis_url: str) -> None:
    async with cluster(redis_url) as (a, b), open_raw_client(a) as on_a:
        await on_a.connect()

        @b.on_server_side("slow")
        async def slow() -> str:
            await trio.sleep(10)
            return "late"

        with trio.fail_after(5), pytest.raises(trio_sio.AckTimeoutError) as info:
            await a.server_side_emit_with_ack("slow", timeout=0.5)
        assert info.value.replies == []
        # a node that is gone but still counted: fetch_sockets ends with what came
        b.main.adapter.on_request = lambda raw: None  # type: ignore[method-assign]
        with trio.fail_after(5), pytest.raises(ClusterTimeoutError) as fetch:
            await a.fetch_sockets()
        assert [s.id for s in fetch.value.partial] == [s.id for s in a.main.sockets.values()]


async def test_broadcast_with_acks_across_nodes(redis_url: str) -> None:
    async with (
        cluster(redis_url) as (a, b),
        open_raw_client(a) as on_a,
        open_raw_client(b) as on_b1,
        open_raw_client(b) as on_b2,
    ):
        for raw in (on_a, on_b1, on_b2):
            await raw.connect()

        async def answer(raw: RawClient, value: str) -> None:
            frame = await raw.receive()
            assert isinstance(frame, str) and frame.startswith("42")
            ack_id = frame[2 : frame.index("[")]
            await raw.send(f'43{ack_id}["{value}"]')

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer, on_a, "a")
            nursery.start_soon(answer, on_b1, "b1")
            nursery.start_soon(answer, on_b2, "b2")
            with trio.fail_after(5):
                replies = await a.timeout(3).emit_with_ack("poll")
        assert sorted(replies) == ["a", "b1", "b2"]
        # one client stays silent: the others' replies come with the timeout error
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer, on_a, "a")
            nursery.start_soon(answer, on_b1, "b1")
            with trio.fail_after(5), pytest.raises(trio_sio.AckTimeoutError) as info:
                await a.timeout(0.5).emit_with_ack("poll")
        assert sorted(info.value.replies) == ["a", "b1"]


async def test_hostile_messages_are_dropped(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with cluster(redis_url) as (a, b):
        key = a.main.adapter.channels.request.split("-request#")[0]  # type: ignore[attr-defined]
        async with open_raw_client(b) as on_b:
            await on_b.connect()
            client: coredis.Redis[bytes] = coredis.Redis.from_url(redis_url)
            async with client:
                garbage = [
                    b"",
                    b"\xc1",
                    b"{not json",
                    b'{"type": 5, "opts": 3}',
                    b'{"type": 2, "opts": {"rooms": 5}, "rooms": 1}',
                    b'{"type": 6, "data": "x"}',
                    b"[1, 2",
                    b"\x93\xa1x\xc0\xc0",  # [uid, nil, nil]
                    b"\x93\xa1x\x81\xa4type\x05\x80",
                    b"\x91" * 5000 + b"\xc0",  # deep nesting
                    b"\x00" * 100_000,
                ]
                for data in garbage:
                    await client.publish(f"{key}#/#", data)
                    await client.publish(f"{key}-request#/#", data)
                    await client.publish(f"{key}-response#/#", data)
            await a.emit("still", "here")
            await expect(on_b, '42["still","here"]')
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_redis_unreachable_at_start_is_a_clear_error() -> None:
    sio = trio_sio.Server(adapter=create_adapter("redis://127.0.0.1:1", connect_timeout=2))
    with trio.fail_after(10), pytest.raises(RedisUnavailable, match="unreachable"):
        await sio.serve("127.0.0.1", 0)


async def test_a_redis_restart_is_ridden_out(redis_server: RedisServer) -> None:
    if redis_server.process is None:
        redis_server.start()
    async with (
        cluster(redis_server.url) as (a, b),
        open_raw_client(a) as on_a,
        open_raw_client(b) as on_b,
    ):
        await on_a.connect()
        await on_b.connect()
        redis_server.stop()
        await a.emit("during", 1)  # local delivery does not wait for Redis
        await expect(on_a, '42["during",1]')
        redis_server.start()
        with trio.fail_after(20):
            n = 0
            while True:  # until the subscriptions are back
                n += 1
                await a.emit("after", n)
                await expect(on_a, f'42["after",{n}]')
                with trio.move_on_after(0.5):
                    frame = await on_b.receive()
                    while frame == '42["during",1]':
                        frame = await on_b.receive()
                    assert isinstance(frame, str) and frame.startswith('42["after",')
                    break


async def test_the_emitter_reaches_every_node(redis_url: str) -> None:
    from trio_sio.adapters.redis_emitter import open_emitter

    async with cluster(redis_url) as (a, b):
        key = a.main.adapter.factory.key  # type: ignore[attr-defined]
        got: list[Any] = []
        b.on_server_side("reload", lambda *args: got.append(args))
        async with (
            open_raw_client(a) as on_a,
            open_raw_client(b, query={}) as on_b,
            open_emitter(redis_url, key=key) as emitter,
        ):
            sid_a = await on_a.connect()
            sid_b = await on_b.connect(auth={"rooms": ["red"]})
            await emitter.emit("hello", b"\x00", {"n": 1})
            for raw in (on_a, on_b):
                await expect(raw, '451-["hello",{"_placeholder":true,"num":0},{"n":1}]')
                await expect(raw, b"\x00")
            await emitter.to("red").emit("red")
            await expect(on_b, '42["red"]')
            await emitter.except_("red").emit("not red")
            await expect(on_a, '42["not red"]')
            await emitter.in_(sid_a).sockets_join("blue")
            with trio.fail_after(5):
                while "blue" not in a.main.adapter.socket_rooms(sid_a):
                    await trio.sleep(0.02)
            await emitter.server_side_emit("reload", 1)
            with trio.fail_after(5):
                while not got:
                    await trio.sleep(0.02)
            assert got == [(1,)]
            await emitter.in_(sid_b).disconnect_sockets()
            await expect(on_b, "41")
            await nothing_more(on_a)


async def test_while_redis_is_down_gathering_operations_end_with_this_nodes_part(
    redis_server: RedisServer,
) -> None:
    if redis_server.process is None:
        redis_server.start()
    async with (
        cluster(redis_server.url) as (a, _b),
        open_raw_client(a) as on_a,
    ):
        sid = await on_a.connect()
        redis_server.stop()
        try:
            with trio.fail_after(5), pytest.raises(ClusterTimeoutError) as info:
                await a.fetch_sockets()
            assert [s.id for s in info.value.partial] == [sid]
            with trio.fail_after(5), pytest.raises(trio_sio.AckTimeoutError) as acks:
                await a.server_side_emit_with_ack("anyone")
            assert acks.value.replies == []
            assert await a.server_count() == 1
        finally:
            redis_server.start()
