"""A trio_sio cluster of three processes on a real redis-server.

Each node is ``cluster_node.py`` started as its own Python process (``--redis URL --port 0``,
driven over stdin), with ``trio_sio.Client`` clients over real TCP on every node: broadcasts
(rooms, except, binary), ``fetch_sockets``, broadcasts with acks (including a silent client
on the node that asks, whose others' replies must not be lost) and server-side emits with
acks. Each test uses its own channel prefix on the module's Redis.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from .cluster_node import Peer, TrioClient, open_client, to_json

HERE = Path(__file__).resolve().parent
LIMIT = 40.0  # per test (three Python processes start)


def canon(values: list[Any]) -> list[Any]:
    return sorted(values, key=lambda v: json.dumps(to_json(v), sort_keys=True))


@asynccontextmanager
async def three_nodes(redis_url: str) -> AsyncIterator[list[Peer]]:
    """``p0``, ``p1``, ``p2``: once each of them counts three servers."""
    key = "proc" + secrets.token_hex(4)
    async with AsyncExitStack() as stack:
        nodes = []
        for i in range(3):
            argv = [sys.executable, str(HERE / "cluster_node.py"), "--redis", redis_url]
            argv += ["--port", "0", "--key", key, "--name", f"p{i}", "--requests-timeout", "2"]
            nodes.append(await stack.enter_async_context(Peer.start(argv, name=f"p{i}")))
        for peer in nodes:
            with trio.fail_after(10):
                while (await peer.call("serverCount"))["count"] != 3:
                    await trio.sleep(0.05)
        yield nodes


@asynccontextmanager
async def clients(nodes: list[Peer], acks: list[Any]) -> AsyncIterator[list[TrioClient]]:
    """One client per node: ``c0`` in room red, ``c1`` in blue, ``c2`` in red; ``c<i>``
    answers ``poll`` with ``acks[i]``."""
    rooms = [["red"], ["blue"], ["red"]]
    async with AsyncExitStack() as stack:
        found = []
        for i, peer in enumerate(nodes):
            assert peer.port is not None
            client = open_client(peer.port, f"c{i}", rooms[i], ack=acks[i])
            found.append(await stack.enter_async_context(client))
        yield found


async def test_broadcasts_rooms_and_binary(redis_url: str) -> None:
    with trio.fail_after(LIMIT):
        async with three_nodes(redis_url) as nodes, clients(nodes, [None] * 3) as (c0, c1, c2):
            p0, p1, p2 = nodes
            await p0.call("emit", event="all", args=[1, b"\x00\x01", {"deep": [b"\xff"]}])
            await p1.call("emit", event="red", to=["red"])
            except_red: dict[str, Any] = {"except": ["red"]}  # a Python keyword
            await p2.call("emit", event="not-red", **except_red)
            await p0.call("emit", event="to-c2", to=[c2.sid], args=[b"\x02"])
            await p2.call("emit", event="red-local", to=["red"], local=True)
            for peer in nodes:
                await peer.call("emit", event="fence", args=[peer.name])
            for client in (c0, c1, c2):
                await client.inbox.wait_for("fence", 3)

            def without_fences(client: TrioClient) -> list[tuple[str, list[Any]]]:
                return sorted(
                    (e for e in client.inbox.events if e[0] != "fence"), key=lambda e: e[0]
                )

            all_ = ("all", [1, b"\x00\x01", {"deep": [b"\xff"]}])
            assert without_fences(c0) == [all_, ("red", [])]
            assert without_fences(c1) == [all_, ("not-red", [])]
            assert without_fences(c2) == [
                all_,
                ("red", []),
                ("red-local", []),
                ("to-c2", [b"\x02"]),
            ]


async def test_fetch_sockets_and_server_side_emits(redis_url: str) -> None:
    with trio.fail_after(LIMIT):
        async with three_nodes(redis_url) as nodes, clients(nodes, [None] * 3) as (c0, c1, c2):
            p0, p1, p2 = nodes
            sockets = {s["id"]: s for s in (await p0.call("fetchSockets"))["sockets"]}
            assert set(sockets) == {c0.sid, c1.sid, c2.sid}
            assert sockets[c0.sid]["local"] is True
            remote = sockets[c1.sid]
            assert remote["local"] is False
            assert remote["rooms"] == sorted([c1.sid, "blue"])
            assert remote["data"] == {"name": "c1"}
            assert remote["handshake"]["auth"] == {"name": "c1", "rooms": ["blue"]}
            assert remote["handshake"]["query"]["EIO"] == "4"
            red = await p1.call("fetchSockets", to=["red"])
            assert {s["id"] for s in red["sockets"]} == {c0.sid, c2.sid}

            # server-side emits: one reply per other node
            result = await p0.call("serverSideEmitWithAck", event="whoami")
            assert sorted(result["replies"]) == ["p1", "p2"]
            result = await p1.call("serverSideEmitWithAck", event="hello", args=[b"\x01"])
            hello = {"type": "Buffer", "data": [1]}  # JSON carries bytes as a Node Buffer
            assert sorted(result["replies"]) == [f"p0:{hello}", f"p2:{hello}"]
            await p2.call("serverSideEmit", event="hello", args=["plain"])
            for peer in (p0, p1):
                await peer.wait_for(ev="server-side", event="hello", args=["plain"])
            assert not p2.entries(ev="server-side", event="hello", args=["plain"])
            result = await p2.call("serverSideEmitWithAck", event="silent")
            assert result["replies"] == []
            assert "timedOut" in result


async def test_broadcast_with_acks(redis_url: str) -> None:
    with trio.fail_after(LIMIT):
        acks = ["c0", b"\x01", {"c": 2}]
        async with three_nodes(redis_url) as nodes, clients(nodes, acks) as (c0, _, _):
            p0, p1, p2 = nodes
            result = await p1.call("emitWithAck", event="poll", args=[b"\xaa"], timeout=2000)
            assert "timedOut" not in result
            assert canon(result["replies"]) == canon(acks)
            assert c0.inbox.args("poll") == [[b"\xaa"]]
            result = await p2.call("emitWithAck", event="poll", to=["red"], timeout=2000)
            assert canon(result["replies"]) == canon(["c0", {"c": 2}])

            # a silent client on the node that asks, and one on another node: the replies
            # that came are kept, this node's own included
            async with (
                open_client(p0.port or 0, "silent0"),
                open_client(p1.port or 0, "silent1"),
            ):
                result = await p0.call("emitWithAck", event="poll", timeout=500)
                assert result["timedOut"]
                assert canon(result["replies"]) == canon(acks)
