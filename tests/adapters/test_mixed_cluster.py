"""A mixed cluster: a Node socket.io 4.8 server with the official ``@socket.io/redis-adapter``
8.3 and a trio_sio server with ours, on one real redis-server.

The Node node is ``node_cluster_server.mjs`` (driven over stdin, with official
``socket.io-client`` clients inside its process); the trio_sio node runs in this process with
``trio_sio.Client`` clients over real TCP. Every operation that crosses nodes is checked in
both directions: broadcasts (rooms, except, flags, binary), ``fetchSockets``, remote
join/leave/disconnect, server-side emits with acks, broadcasts with acks counting the
clients of both nodes; then the official ``@socket.io/redis-emitter`` (``node_emitter.mjs``)
and ours reaching both nodes' clients; then a Redis restart.

Each test uses its own channel prefix on the module's Redis. Without ``node`` or the
packages of ``tests/interop`` (``npm ci`` there) the tests are skipped, except under CI; the
first tests need no Node: they decode messages exactly as the Node adapter writes them (the
regressions of what the mixed cluster found).
"""

from __future__ import annotations

import datetime
import json
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_sio
from trio_sio.adapters import redis_sharded, redis_streams
from trio_sio.adapters._redis_wire import (
    RequestType,
    decode_broadcast,
    decode_message,
    encode_json,
    options_from_wire,
    packet_from_wire,
)
from trio_sio.adapters.base import BroadcastOptions, RemoteSocket
from trio_sio.adapters.redis import create_adapter
from trio_sio.adapters.redis_emitter import open_emitter
from trio_sio.protocol.socketio import encode

from .cluster_node import Inbox, Peer, TrioClient, open_client, to_json
from .conftest import RedisCluster, RedisServer

HERE = Path(__file__).resolve().parent
WAIT = 5.0  # for one thing to arrive
#: the adapters tested mixed: classic pub/sub (@socket.io/redis-adapter), Redis Streams
#: (@socket.io/redis-streams-adapter), sharded pub/sub on a Redis Cluster (createShardedAdapter
#: of @socket.io/redis-adapter; "sharded:MODE" for a subscription mode other than dynamic)
ADAPTERS = ["classic", "streams", "sharded"]
#: ... for broadcasts, where the sharded adapter's subscription mode matters
BROADCAST_ADAPTERS = [*ADAPTERS, "sharded:static", "sharded:dynamic-private"]
#: ... with the classic adapter's option of a response channel per node
WITH_SPECIFIC = [("classic", False), ("classic", True), ("streams", False), ("sharded", False)]
WITH_SPECIFIC_IDS = ["classic-shared", "classic-specific-channel", "streams", "sharded"]
UNICODE_ROOM = "ré 🙂#x"  # in a channel name: key#/#ré 🙂#x#
LIMIT = 30.0  # per test


@pytest.fixture
def url(request: pytest.FixtureRequest, adapter: str) -> str:
    """The Redis of the test's adapter: a Redis Cluster for the sharded one."""
    if adapter.startswith("sharded"):
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    single: str = request.getfixturevalue("redis_url")
    return single


@pytest.fixture
def key() -> str:
    """A channel prefix of this test's own."""
    return "mix" + secrets.token_hex(4)


def canon(values: Iterable[Any]) -> list[Any]:
    """``values`` in a stable order (for replies that come in any order)."""
    return sorted(values, key=lambda v: json.dumps(to_json(v), sort_keys=True))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    """Poll ``check`` with small sleeps until it holds (for state only a query can show)."""
    with trio.fail_after(timeout):
        while not await check():
            await trio.sleep(0.02)


class TrioNode:
    """The trio_sio node: namespaces ``/`` and ``/chat``, the same behaviour as the Node one
    (``socket.data["name"]``, rooms from ``auth``, server-side ``whoami``/``hello``/``silent``)."""

    def __init__(
        self, redis_url: str, key: str, name: str = "trio", *, adapter: str = "classic"
    ) -> None:
        if adapter == "streams":
            factory: Any = redis_streams.create_adapter(
                redis_url, stream_name=key, channel_prefix=key, requests_timeout=2.0
            )
        elif adapter.startswith("sharded"):
            mode = adapter.partition(":")[2] or "dynamic"
            factory = redis_sharded.create_adapter(
                redis_url,
                channel_prefix=key,
                subscription_mode=mode,  # type: ignore[arg-type]
                requests_timeout=2.0,
            )
        else:
            factory = create_adapter(redis_url, key=key, requests_timeout=2.0)
        self.sio = trio_sio.Server(adapter=factory)
        self.name = name
        self.server_side = Inbox()
        self.port = 0

        def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
            socket.data["name"] = auth.get("name")
            for room in auth.get("rooms", []):
                socket.join(room)

        self.sio.on("connection", connected)
        self.sio.of("/chat").on("connection", connected)

        def whoami() -> str:
            self.server_side.add("whoami")
            return name

        def hello(*args: Any) -> str:
            self.server_side.add("hello", *args)
            return f"{name}:{args[0] if args else None}"

        def silent(*args: Any, ack: trio_sio.Ack) -> None:
            self.server_side.add("silent", *args)

        self.sio.on_server_side("whoami", whoami)
        self.sio.on_server_side("hello", hello)
        self.sio.on_server_side("silent", silent)

    def rooms(self, sid: str, namespace: str = "/") -> frozenset[str]:
        return self.sio.of(namespace).adapter.socket_rooms(sid)

    def client(
        self, name: str, rooms: Iterable[str] = (), *, ack: Any = None, namespace: str = "/"
    ) -> AbstractAsyncContextManager[TrioClient]:
        """A ``trio_sio.Client`` over TCP; it answers ``poll`` with ``ack`` (if not None)."""
        return open_client(self.port, name, rooms, ack=ack, namespace=namespace)


class NodeClient:
    """A socket.io-client client inside the Node node's process."""

    def __init__(self, peer: Peer, name: str, sid: str) -> None:
        self.peer = peer
        self.name = name
        self.sid = sid

    @property
    def events(self) -> list[tuple[str, list[Any]]]:
        return [
            (e["event"], e["args"]) for e in self.peer.entries(ev="client-event", client=self.name)
        ]

    def args(self, event: str) -> list[list[Any]]:
        return [args for name, args in self.events if name == event]

    async def wait_for(self, event: str, count: int = 1) -> list[list[Any]]:
        found = await self.peer.wait_for(count, ev="client-event", client=self.name, event=event)
        return [e["args"] for e in found]

    async def wait_disconnect(self) -> str:
        (entry,) = await self.peer.wait_for(ev="client-disconnect", client=self.name)
        reason: str = entry["reason"]
        return reason


async def node_client(
    peer: Peer, name: str, rooms: Iterable[str] = (), *, ack: Any = None, nsp: str = "/"
) -> NodeClient:
    auth = {"name": name, "rooms": list(rooms)}
    fields: dict[str, Any] = {"name": name, "auth": auth, "nsp": nsp}
    if ack is not None:
        fields["ack"] = ack
    result = await peer.call("client", **fields)
    return NodeClient(peer, name, result["sid"])


@asynccontextmanager
async def node_server(
    node: str, redis_url: str, key: str, *, specific: bool = False, adapter: str = "classic"
) -> AsyncIterator[Peer]:
    argv = [node, "node_cluster_server.mjs", "--redis", redis_url, "--key", key]
    kind, _, mode = adapter.partition(":")
    argv += ["--name", "node", "--requests-timeout", "2000", "--adapter", kind]
    argv += ["--mode", mode or "dynamic"]
    if specific:
        argv.append("--specific-response-channel")
    async with Peer.start(argv, cwd=HERE) as peer:
        yield peer


@asynccontextmanager
async def mixed(
    node: str, redis_url: str, key: str, *, specific: bool = False, adapter: str = "classic"
) -> AsyncIterator[tuple[TrioNode, Peer]]:
    """The trio_sio node and the Node node, once each counts two servers."""
    trio_node = TrioNode(redis_url, key, adapter=adapter)
    async with (
        trio.open_nursery() as nursery,
        node_server(node, redis_url, key, specific=specific, adapter=adapter) as peer,
    ):
        listeners = await nursery.start(trio_node.sio.serve, "127.0.0.1", 0)
        trio_node.port = listeners[0].socket.getsockname()[1]

        async def both_see_two() -> bool:
            count = (await peer.call("serverCount"))["count"]
            return count == 2 and await trio_node.sio.server_count() == 2

        await eventually(both_see_two)
        yield trio_node, peer
        nursery.cancel_scope.cancel()


def call_except(rooms: list[str]) -> dict[str, Any]:
    """The ``except`` field of a command (a Python keyword)."""
    return {"except": rooms}


# -- the wire as the Node adapter writes it (no Node needed) ------------------------------------

#: What ``@socket.io/redis-adapter`` 8.3 (notepack.io 3.0.1) publishes on node ``AbCdEf`` for
#: ``io.emit("ev", new Date(1714979289123), NaN, -Infinity, {d: new Date(0)})``: the Dates
#: as msgpack timestamps (``d7 ff ...``, ``d6 ff ...``), NaN and -Infinity as float64.
NODE_BROADCAST = bytes.fromhex(
    "93a641624364456683a47479706502a46461746195a26576d7ff1d535300663881d9cb7ff8000000000000"
    "cbfff000000000000081a164d6ff00000000a36e7370a12f83a5726f6f6d7390a665786365707490a5666c"
    "61677380"
)

#: ... and for ``io.to("red").timeout(2000).emitWithAck("poll", new Date(0), NaN)``, the
#: request (type 7, BROADCAST) to the other nodes.
NODE_ACK_REQUEST = bytes.fromhex(
    "85a3756964a6416243644566a9726571756573744964a27231a47479706507a67061636b657483a47479"
    "706502a46461746193a4706f6c6cd6ff00000000cb7ff8000000000000a36e7370a12fa46f70747383a5"
    "726f6f6d7391a3726564a665786365707490a5666c61677381a774696d656f7574cd07d0"
)


def test_a_node_broadcast_carrying_dates_and_nan_is_delivered_as_json_carries_them() -> None:
    # was: msgpack.Timestamp / nan in the packet, which the JSON encoder refused, so the
    # whole broadcast was dropped on trio_sio nodes ("a cluster message could not be handled")
    uid, packet, options = decode_broadcast(NODE_BROADCAST, "/")
    assert uid == "AbCdEf"
    assert packet.data == [
        "ev",
        "2024-05-06T07:08:09.123Z",
        None,
        None,
        {"d": "1970-01-01T00:00:00.000Z"},
    ]
    assert options == BroadcastOptions()
    assert encode(packet) == [
        '2["ev","2024-05-06T07:08:09.123Z",null,null,{"d":"1970-01-01T00:00:00.000Z"}]'
    ]


def test_a_node_broadcast_with_acks_carrying_a_date_is_delivered() -> None:
    request = decode_message(NODE_ACK_REQUEST)
    assert request["type"] == RequestType.BROADCAST
    packet = packet_from_wire(request["packet"], "/")
    assert encode(packet) == ['2["poll","1970-01-01T00:00:00.000Z",null]']
    options = options_from_wire(request["opts"])
    assert options == BroadcastOptions(rooms=frozenset({"red"}), timeout=2.0)


def test_json_messages_are_what_json_stringify_writes() -> None:
    # was: NaN/Infinity written as the bare NaN/Infinity JSON.parse rejects (a JS node dropped
    # the whole fetchSockets answer, or server-side reply), a datetime in socket data made
    # the data null
    when = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC)
    message = {"data": [math.nan, -math.inf, when, b"\x01", (1, {2: "x"})]}
    assert encode_json(message) == (
        b'{"data":[null,null,"2024-05-06T07:08:09.123Z",{"type":"Buffer","data":[1]},'
        b'[1,{"2":"x"}]]}'
    )


# -- broadcasts ----------------------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("adapter", BROADCAST_ADAPTERS)
async def test_broadcasts_both_ways(node: str, url: str, key: str, adapter: str) -> None:
    with trio.fail_after(LIMIT):
        async with (
            mixed(node, url, key, adapter=adapter) as (t, n),
            AsyncExitStack() as stack,
        ):
            t1 = await stack.enter_async_context(t.client("t1", ["red", UNICODE_ROOM]))
            t2 = await stack.enter_async_context(t.client("t2", ["blue"]))
            n1 = await node_client(n, "n1", ["red", UNICODE_ROOM])
            n2 = await node_client(n, "n2", ["blue"])

            # from Node (binary: Buffers, nested)
            binary_n = [1, b"\x01\x02", {"nested": [b"\xff", {"deep": b""}]}]
            await n.call("emit", event="n-all", args=binary_n)
            await n.call("emit", event="n-red", to=["red"])
            await n.call("emit", event="n-not-red", **call_except(["red"]))
            await n.call(
                "emit", event="n-red-not-blue", to=["red", "blue"], **call_except(["blue"])
            )
            await n.call("emit", event="n-unicode", to=[UNICODE_ROOM])
            await n.call("emit", event="n-local", local=True)
            await n.call("emit", event="n-to-t1", to=[t1.sid])
            await n.call("emit", event="n-fence")
            # from trio_sio
            binary_t = [2, b"\x03\x04", {"nested": [b"\x00", {"deep": bytearray(b"\x05")}]}]
            await t.sio.emit("t-all", *binary_t)
            await t.sio.to("red").emit("t-red")
            await t.sio.except_("red").emit("t-not-red")
            await t.sio.to("red", "blue").except_("blue").emit("t-red-not-blue")
            await t.sio.to(UNICODE_ROOM).emit("t-unicode")
            await t.sio.local.emit("t-local")
            await t.sio.to(n1.sid).emit("t-to-n1")
            await t.sio.emit("t-fence")

            for tc in (t1, t2):
                await tc.inbox.wait_for("n-fence")
                await tc.inbox.wait_for("t-fence")
            for nc in (n1, n2):
                await nc.wait_for("n-fence")
                await nc.wait_for("t-fence")

            def from_node(events: list[tuple[str, list[Any]]]) -> list[tuple[str, list[Any]]]:
                return [(e, a) for e, a in events if e.startswith("n-")]

            def from_trio(events: list[tuple[str, list[Any]]]) -> list[tuple[str, list[Any]]]:
                return [(e, a) for e, a in events if e.startswith("t-")]

            all_n = ("n-all", binary_n)
            all_t = ("t-all", [2, b"\x03\x04", {"nested": [b"\x00", {"deep": b"\x05"}]}])
            red_n = [all_n, ("n-red", []), ("n-red-not-blue", []), ("n-unicode", [])]
            blue_n = [all_n, ("n-not-red", [])]
            red_t = [all_t, ("t-red", []), ("t-red-not-blue", []), ("t-unicode", [])]
            blue_t = [all_t, ("t-not-red", [])]
            # Sharded pub/sub orders messages per channel only, and each room's channel may
            # live on another shard: there, the events are compared in any order (once all
            # came); elsewhere in the order they were sent.
            sharded = adapter.startswith("sharded")

            async def expect_events(
                get: Callable[[], list[tuple[str, list[Any]]]],
                expected: list[tuple[str, list[Any]]],
            ) -> None:
                if not sharded:
                    assert get() == expected
                    return

                async def complete() -> bool:
                    await trio.lowlevel.checkpoint()
                    return len(get()) >= len(expected)

                await eventually(complete)
                assert canon(get()) == canon(expected)

            await expect_events(
                lambda: from_node(t1.inbox.events), [*red_n, ("n-to-t1", []), ("n-fence", [])]
            )
            await expect_events(lambda: from_node(t2.inbox.events), [*blue_n, ("n-fence", [])])
            # A Node ClusterAdapter (Streams, sharded) delivers a broadcast to its own clients
            # once Redis took it, so a local one (no Redis) may overtake those before it.
            local_n = ("n-local", [])

            def on_node(events: list[tuple[str, list[Any]]]) -> list[tuple[str, list[Any]]]:
                found = from_node(events)
                if adapter != "classic" and local_n in found:
                    found.remove(local_n)
                    found.insert(-1, local_n)  # where the classic adapter delivers it
                return found

            await expect_events(lambda: on_node(n1.events), [*red_n, local_n, ("n-fence", [])])
            await expect_events(lambda: on_node(n2.events), [*blue_n, local_n, ("n-fence", [])])
            await expect_events(
                lambda: from_trio(t1.inbox.events), [*red_t, ("t-local", []), ("t-fence", [])]
            )
            await expect_events(
                lambda: from_trio(t2.inbox.events), [*blue_t, ("t-local", []), ("t-fence", [])]
            )
            await expect_events(
                lambda: from_trio(n1.events), [*red_t, ("t-to-n1", []), ("t-fence", [])]
            )
            await expect_events(lambda: from_trio(n2.events), [*blue_t, ("t-fence", [])])

            # values JSON cannot carry, as a Node peer's clients get them (JSON.stringify):
            # a Date (msgpack timestamp) as its ISO string, NaN, Infinity and undefined as null
            special = [
                {"$date": 1714979289123},
                {"$nan": True},
                {"$inf": True},
                {"$undefined": True},
                {"when": {"$date": 0}, "list": [{"$nan": True}]},
            ]
            await n.call("emit", event="n-special", args=special)
            expected = [
                "2024-05-06T07:08:09.123Z",
                None,
                None,
                None,
                {"when": "1970-01-01T00:00:00.000Z", "list": [None]},
            ]
            assert await n1.wait_for("n-special") == [expected]
            assert await t1.inbox.wait_for("n-special") == [expected]

            # the volatile flag crosses too (to idle sockets: nothing is dropped; one at a
            # time, as a socket still sending drops a volatile packet)
            await n.call("emit", event="n-volatile", volatile=True)
            for tc in (t1, t2):
                assert await tc.inbox.wait_for("n-volatile") == [[]]
            await t.sio.volatile.emit("t-volatile")
            for nc in (n1, n2):
                assert await nc.wait_for("t-volatile") == [[]]


# -- fetchSockets ------------------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize(("adapter", "specific"), WITH_SPECIFIC, ids=WITH_SPECIFIC_IDS)
async def test_fetch_sockets_both_ways(
    node: str, url: str, key: str, adapter: str, specific: bool
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            mixed(node, url, key, specific=specific, adapter=adapter) as (t, n),
            t.client("t1", ["red"]) as t1,
            t.client("t2", ["blue"]) as t2,
        ):
            n1 = await node_client(n, "n1", ["red"])
            n2 = await node_client(n, "n2", ["blue", "green"])

            # trio_sio sees Node's sockets
            found = {s.id: s for s in await t.sio.fetch_sockets()}
            assert set(found) == {t1.sid, t2.sid, n1.sid, n2.sid}
            remote = found[n2.sid]
            assert isinstance(remote, RemoteSocket)
            assert remote.rooms == {n2.sid, "blue", "green"}
            assert remote.data == {"name": "n2"}
            # the same typed Handshake as a local socket's
            assert isinstance(remote.handshake, trio_sio.Handshake)
            assert remote.handshake.auth == {"name": "n2", "rooms": ["blue", "green"]}
            assert remote.handshake.address == "127.0.0.1"
            assert remote.handshake.query["EIO"] == "4"
            assert remote.handshake.url.startswith("/socket.io/?")
            assert remote.handshake.issued > 0
            assert remote.handshake.time
            assert "host" in remote.handshake.headers
            assert {s.id for s in await t.sio.in_("red").fetch_sockets()} == {t1.sid, n1.sid}
            assert {s.id for s in await t.sio.except_("red").fetch_sockets()} == {t2.sid, n2.sid}

            # Node sees trio_sio's sockets
            sockets = {s["id"]: s for s in (await n.call("fetchSockets"))["sockets"]}
            assert set(sockets) == {t1.sid, t2.sid, n1.sid, n2.sid}
            seen = sockets[t1.sid]
            assert seen["local"] is False
            assert seen["rooms"] == sorted([t1.sid, "red"])
            assert seen["data"] == {"name": "t1"}
            assert seen["handshake"]["auth"] == {"name": "t1", "rooms": ["red"]}
            assert seen["handshake"]["address"] == "127.0.0.1"
            assert seen["handshake"]["query"]["EIO"] == "4"
            assert seen["handshake"]["url"].startswith("/socket.io/?")
            assert isinstance(seen["handshake"]["issued"], int)
            # the same fields as a Node socket's own handshake
            assert set(seen["handshake"]) == set(sockets[n1.sid]["handshake"])
            red = await n.call("fetchSockets", to=["red"])
            assert {s["id"] for s in red["sockets"]} == {t1.sid, n1.sid}
            not_red = await n.call("fetchSockets", **call_except(["red"]))
            assert {s["id"] for s in not_red["sockets"]} == {t2.sid, n2.sid}

            # every node's rooms (the Streams adapters have no allRooms across nodes)
            if adapter == "classic":
                expected = {t1.sid, t2.sid, n1.sid, n2.sid, "red", "blue", "green"}
                assert set((await n.call("allRooms"))["rooms"]) == expected
                assert await t.sio.main.adapter.all_rooms() == expected


# -- remote join / leave / disconnect ------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_remote_join_leave_disconnect_both_ways(
    node: str, url: str, key: str, adapter: str
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            mixed(node, url, key, adapter=adapter) as (t, n),
            AsyncExitStack() as stack,
        ):
            t1 = await stack.enter_async_context(t.client("t1", ["red"]))
            t2 = await stack.enter_async_context(t.client("t2", ["blue"]))
            n1 = await node_client(n, "n1", ["red"])
            n2 = await node_client(n, "n2", ["blue"])

            async def node_rooms(sid: str) -> set[str]:
                rooms = (await n.call("rooms", sid=sid))["rooms"]
                return set(rooms or ())

            # trio_sio → Node: socketsJoin / socketsLeave, and RemoteSocket.join / leave
            await t.sio.in_(n1.sid).sockets_join("green")
            await eventually(lambda: _has(node_rooms(n1.sid), "green"))
            await t.sio.in_("green").sockets_leave("red")
            await eventually(lambda: _lacks(node_rooms(n1.sid), "red"))
            remote = {s.id: s for s in await t.sio.fetch_sockets()}[n2.sid]
            assert isinstance(remote, RemoteSocket)
            remote.join("yellow")
            await eventually(lambda: _has(node_rooms(n2.sid), "yellow"))
            remote.leave("blue")
            await eventually(lambda: _lacks(node_rooms(n2.sid), "blue"))
            assert await node_rooms(n2.sid) == {n2.sid, "yellow"}

            # Node → trio_sio: socketsJoin / socketsLeave, and RemoteSocket.join / leave
            await n.call("socketsJoin", to=[t1.sid], rooms=["green"])
            await eventually(lambda: _now("green" in t.rooms(t1.sid)))
            await n.call("socketsLeave", to=["green"], rooms=["red"])
            await eventually(lambda: _now("red" not in t.rooms(t1.sid)))
            assert (await n.call("remote", sid=t2.sid, op="join", rooms=["yellow"]))["remote"]
            await eventually(lambda: _now("yellow" in t.rooms(t2.sid)))
            await n.call("remote", sid=t2.sid, op="leave", rooms=["blue"])
            await eventually(lambda: _now("blue" not in t.rooms(t2.sid)))
            assert t.rooms(t2.sid) == {t2.sid, "yellow"}

            # the rooms made remotely work for broadcasts from either side
            await t.sio.to("green").emit("green-t")
            await n.call("emit", event="yellow-n", to=["yellow"])
            assert await t1.inbox.wait_for("green-t") == [[]]
            assert await n1.wait_for("green-t") == [[]]
            assert await t2.inbox.wait_for("yellow-n") == [[]]
            assert await n2.wait_for("yellow-n") == [[]]

            # RemoteSocket.emit both ways
            await remote.emit("direct-t", b"\x01")
            assert await n2.wait_for("direct-t") == [[b"\x01"]]
            await n.call("remote", sid=t2.sid, op="emit", event="direct-n", args=[b"\x02"])
            assert await t2.inbox.wait_for("direct-n") == [[b"\x02"]]

            # disconnect: a room (trio_sio → Node), RemoteSocket.disconnect (Node → trio_sio)
            await t.sio.in_(n2.sid).disconnect_sockets()
            assert await n2.wait_disconnect() == "io server disconnect"
            await n.wait_for(ev="disconnect", sid=n2.sid, reason="server namespace disconnect")
            await n.call("disconnectSockets", to=[t2.sid])
            assert await t2.inbox.wait_for("disconnect") == [["io server disconnect"]]
            await n.call("remote", sid=t1.sid, op="disconnect", close=True)
            await t1.inbox.wait_for("disconnect")
            remote_n1 = {s.id: s for s in await t.sio.fetch_sockets()}[n1.sid]
            await remote_n1.disconnect(close=True)
            await n1.wait_disconnect()
            await eventually(lambda: _now(not t.sio.main.sockets))
            assert (await n.call("fetchSockets"))["sockets"] == []


async def _has(rooms: Awaitable[set[str]], room: str) -> bool:
    return room in await rooms


async def _lacks(rooms: Awaitable[set[str]], room: str) -> bool:
    return room not in await rooms


async def _now(value: bool) -> bool:
    await trio.lowlevel.checkpoint()
    return value


@pytest.mark.interop
@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_values_json_cannot_carry_reach_node_as_json_stringify_writes_them(
    node: str, url: str, key: str, adapter: str
) -> None:
    """Socket data and server-side replies go as JSON: a Node peer must be able to parse them."""
    when = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC)
    with trio.fail_after(LIMIT):
        async with mixed(node, url, key, adapter=adapter) as (t, n), t.client("t1") as t1:
            t.sio.main.sockets[t1.sid].data.update(
                {"nan": math.nan, "inf": [-math.inf], "when": when, "pair": (1, 2)}
            )
            t.sio.on_server_side("special", lambda: [math.nan, when, (3,)])
            (seen,) = (await n.call("fetchSockets"))["sockets"]
            assert seen["data"] == {
                "name": "t1",
                "nan": None,
                "inf": [None],
                "when": "2024-05-06T07:08:09.123Z",
                "pair": [1, 2],
            }
            result = await n.call("serverSideEmitWithAck", event="special")
            assert result["replies"] == [[None, "2024-05-06T07:08:09.123Z", [3]]]


# -- server-side emits -------------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_server_side_emit_with_acks_both_ways(
    node: str, url: str, key: str, adapter: str
) -> None:
    with trio.fail_after(LIMIT):
        async with mixed(node, url, key, adapter=adapter) as (t, n):
            # trio_sio → Node
            assert await t.sio.server_side_emit_with_ack("whoami", timeout=5) == ["node"]
            assert await t.sio.server_side_emit_with_ack("hello", 7, timeout=5) == ["node:7"]
            await t.sio.server_side_emit("hello", "plain", b"\x01\x02")
            entries = await n.wait_for(2, ev="server-side", event="hello")
            # classic: JSON carries a Buffer as JSON.stringify writes it, both ways;
            # streams, sharded: msgpack carries bytes as bytes
            sent: Any = b"\x01\x02" if adapter != "classic" else {"type": "Buffer", "data": [1, 2]}
            assert [e["args"] for e in entries] == [[7], ["plain", sent]]
            with pytest.raises(trio_sio.AckTimeoutError) as info:
                await t.sio.server_side_emit_with_ack("silent", timeout=0.5)
            assert info.value.replies == []
            await n.wait_for(ev="server-side", event="silent")

            # Node → trio_sio
            assert (await n.call("serverSideEmitWithAck", event="whoami"))["replies"] == ["trio"]
            result = await n.call("serverSideEmitWithAck", event="hello", args=[8])
            assert result["replies"] == ["trio:8"]
            await n.call("serverSideEmit", event="hello", args=["plain", b"\x03"])
            got: Any = b"\x03" if adapter != "classic" else {"type": "Buffer", "data": [3]}
            assert await t.server_side.wait_for("hello", 2) == [[8], ["plain", got]]
            result = await n.call("serverSideEmitWithAck", event="silent", timeout=10)
            assert result["replies"] == []
            assert result["timedOut"] == "timeout reached: only 0 responses received out of 1"
            assert await t.server_side.wait_for("whoami") == [[]]


# -- broadcasts with acks ------------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize(("adapter", "specific"), WITH_SPECIFIC, ids=WITH_SPECIFIC_IDS)
async def test_broadcast_with_acks_spanning_both(
    node: str, url: str, key: str, adapter: str, specific: bool
) -> None:
    with trio.fail_after(LIMIT):
        async with (
            mixed(node, url, key, specific=specific, adapter=adapter) as (t, n),
            t.client("t1", ["red"], ack="t1") as t1,
            t.client("t2", ["blue"], ack=b"\x02") as t2,
        ):
            await node_client(n, "n1", ["red"], ack="n1")
            n2 = await node_client(n, "n2", ["blue"], ack=b"\x01")
            everyone = canon(["t1", b"\x02", "n1", b"\x01"])

            # Node's io.timeout(2000).emitWithAck counts trio_sio's clients too
            args = [b"\xaa", {"$date": 1714979289123}]
            result = await n.call("emitWithAck", event="poll", args=args, timeout=2000)
            assert "timedOut" not in result
            assert canon(result["replies"]) == everyone
            assert t1.inbox.args("poll") == [[b"\xaa", "2024-05-06T07:08:09.123Z"]]
            result = await n.call("emitWithAck", event="poll", to=["red"], timeout=2000)
            assert canon(result["replies"]) == canon(["t1", "n1"])

            # trio_sio's timeout(2).emit_with_ack counts Node's clients too
            with trio.fail_after(3):
                replies = await t.sio.timeout(2).emit_with_ack("poll", b"\xbb")
            assert canon(replies) == everyone
            replies = await t.sio.to("blue").timeout(2).emit_with_ack("poll")
            assert canon(replies) == canon([b"\x02", b"\x01"])

            # one remote socket: RemoteSocket.emit_with_ack / remoteSocket.timeout().emitWithAck
            remote = {s.id: s for s in await t.sio.fetch_sockets()}[n2.sid]
            assert isinstance(remote, RemoteSocket)
            assert await remote.emit_with_ack("poll", timeout=2) == b"\x01"
            result = await n.call("remote", sid=t2.sid, op="emitWithAck", event="poll")
            assert result == {"ev": "result", "id": result["id"], "reply": b"\x02"}

            # a silent client on each side: both end at their timeout with the others' acks
            async with t.client("t3") as _t3:
                await node_client(n, "n3")
                result = await n.call("emitWithAck", event="poll", timeout=1000)
                assert result["timedOut"] == "operation has timed out"
                assert canon(result["replies"]) == everyone
                with pytest.raises(trio_sio.AckTimeoutError) as info:
                    await t.sio.timeout(1).emit_with_ack("poll")
                assert canon(info.value.replies) == everyone


# -- emitters ----------------------------------------------------------------------------------


@pytest.mark.interop
async def test_node_emitter_reaches_both_nodes(node: str, redis_url: str, key: str) -> None:
    argv = [node, "node_emitter.mjs", "--redis", redis_url, "--key", key]
    with trio.fail_after(LIMIT):
        async with (
            mixed(node, redis_url, key) as (t, n),
            Peer.start(argv, cwd=HERE) as emitter,
            t.client("t1", ["red"]) as t1,
            t.client("t2", ["blue"]) as t2,
            t.client("tc", namespace="/chat") as tc,
        ):
            await _emitter_scenario(t, n, emitter.call, t1, t2, tc)


@pytest.mark.interop
async def test_trio_emitter_reaches_both_nodes(node: str, redis_url: str, key: str) -> None:
    with trio.fail_after(LIMIT):
        async with (
            mixed(node, redis_url, key) as (t, n),
            open_emitter(redis_url, key=key) as emitter,
            t.client("t1", ["red"]) as t1,
            t.client("t2", ["blue"]) as t2,
            t.client("tc", namespace="/chat") as tc,
        ):

            async def call(cmd: str, **fields: Any) -> dict[str, Any]:
                op = emitter.of(fields.get("nsp", "/")).to(*fields.get("to", []))
                op = op.except_(*fields.get("except", []))
                if fields.get("volatile"):
                    op = op.volatile
                if cmd == "emit":
                    await op.emit(fields["event"], *fields.get("args", []))
                elif cmd == "socketsJoin":
                    await op.sockets_join(*fields["rooms"])
                elif cmd == "socketsLeave":
                    await op.sockets_leave(*fields["rooms"])
                elif cmd == "disconnectSockets":
                    await op.disconnect_sockets(fields.get("close", False))
                elif cmd == "serverSideEmit":
                    await op.server_side_emit(fields["event"], *fields.get("args", []))
                return {}

            await _emitter_scenario(t, n, call, t1, t2, tc)


async def _emitter_scenario(
    t: TrioNode,
    n: Peer,
    emit: Callable[..., Awaitable[dict[str, Any]]],
    t1: TrioClient,
    t2: TrioClient,
    tc: TrioClient,
) -> None:
    """What an emitter (``emit(cmd, **fields)``, the Node script's commands) does to the
    clients of both nodes."""
    n1 = await node_client(n, "n1", ["red"])
    n2 = await node_client(n, "n2", ["blue"])
    nc = await node_client(n, "nc", nsp="/chat")

    await emit("emit", event="e-all", args=[1, b"\x01\x02", {"b": [b"\xff"]}])
    await emit("emit", event="e-red", to=["red"])
    await emit("emit", event="e-not-red", **call_except(["red"]))
    await emit("emit", event="e-chat", nsp="/chat", args=[b"\x03"])
    await emit("emit", event="e-fence")
    await emit("emit", event="e-fence", nsp="/chat")
    for tcl in (t1, t2, tc):
        await tcl.inbox.wait_for("e-fence")
    for ncl in (n1, n2, nc):
        await ncl.wait_for("e-fence")
    all_ = ("e-all", [1, b"\x01\x02", {"b": [b"\xff"]}])
    red = [all_, ("e-red", []), ("e-fence", [])]
    blue = [all_, ("e-not-red", []), ("e-fence", [])]
    chat = [("e-chat", [b"\x03"]), ("e-fence", [])]
    assert t1.inbox.events == red
    assert n1.events == red
    assert t2.inbox.events == blue
    assert n2.events == blue
    assert tc.inbox.events == chat
    assert nc.events == chat
    await emit("emit", event="e-volatile", volatile=True)
    for tcl in (t1, t2):
        assert await tcl.inbox.wait_for("e-volatile") == [[]]
    for ncl in (n1, n2):
        assert await ncl.wait_for("e-volatile") == [[]]

    async def node_rooms(sid: str) -> set[str]:
        return set((await n.call("rooms", sid=sid))["rooms"] or ())

    await emit("socketsJoin", to=["red"], rooms=["purple"])
    await eventually(lambda: _now("purple" in t.rooms(t1.sid)))
    await eventually(lambda: _has(node_rooms(n1.sid), "purple"))
    await emit("socketsLeave", to=["purple"], rooms=["red"])
    await eventually(lambda: _now("red" not in t.rooms(t1.sid)))
    await eventually(lambda: _lacks(node_rooms(n1.sid), "red"))
    await emit("socketsJoin", to=[tc.sid, nc.sid], rooms=["lobby"], nsp="/chat")
    await eventually(lambda: _now("lobby" in t.rooms(tc.sid, "/chat")))
    await eventually(lambda: _has(node_rooms_chat(n, nc.sid), "lobby"))

    await emit("serverSideEmit", event="hello", args=["from-emitter"])
    assert await t.server_side.wait_for("hello") == [["from-emitter"]]
    entries = await n.wait_for(ev="server-side", event="hello")
    assert entries[0]["args"] == ["from-emitter"]

    await emit("disconnectSockets", to=["blue"])
    assert await t2.inbox.wait_for("disconnect") == [["io server disconnect"]]
    assert await n2.wait_disconnect() == "io server disconnect"
    await emit("disconnectSockets", nsp="/chat", close=True)
    await tc.inbox.wait_for("disconnect")
    await n.wait_for(ev="client-disconnect", client="nc")
    assert not t1.inbox.args("disconnect")
    assert not n.entries(ev="client-disconnect", client="n1")


async def node_rooms_chat(n: Peer, sid: str) -> set[str]:
    return set((await n.call("rooms", sid=sid, nsp="/chat"))["rooms"] or ())


# -- a Redis restart ---------------------------------------------------------------------------


@pytest.mark.interop
async def test_broadcasts_resume_after_a_redis_restart(
    node: str, redis_server: RedisServer, key: str
) -> None:
    if redis_server.process is None:
        redis_server.start()
    with trio.fail_after(60):
        async with (
            mixed(node, redis_server.url, key) as (t, n),
            t.client("t1") as t1,
        ):
            n1 = await node_client(n, "n1")
            await t.sio.emit("before-t")
            await n.call("emit", event="before-n")
            assert await n1.wait_for("before-t") == [[]]
            assert await t1.inbox.wait_for("before-n") == [[]]

            await trio.to_thread.run_sync(redis_server.stop)
            await t.sio.emit("during-t")  # local delivery does not wait for Redis
            assert await t1.inbox.wait_for("during-t") == [[]]
            await trio.to_thread.run_sync(redis_server.start)

            # until a broadcast from each side reaches the other side's client
            count = 0
            while not (t1.inbox.args("after-n") and n1.args("after-t")):
                count += 1
                await t.sio.emit("after-t", count)
                await n.call("emit", event="after-n", args=[count])
                with trio.move_on_after(0.5):
                    await t1.inbox.wait_for("after-n")
                    await n1.wait_for("after-t")

            async def both_see_two() -> bool:
                count = (await n.call("serverCount"))["count"]
                return count == 2 and await t.sio.server_count() == 2

            await eventually(both_see_two, timeout=20)
            # and the requests work again, both ways
            assert {s.id for s in await t.sio.fetch_sockets()} == {t1.sid, n1.sid}
            sockets = (await n.call("fetchSockets"))["sockets"]
            assert {s["id"] for s in sockets} == {t1.sid, n1.sid}
