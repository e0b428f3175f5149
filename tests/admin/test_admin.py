"""The Admin UI's server protocol (``sio.instrument``), checked on the wire with raw clients.

The events and payloads are those of ``@socket.io/admin-ui`` 0.5.1's server
(``node_modules/@socket.io/admin-ui/dist/index.js`` in this folder).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import bcrypt
import pytest
import trio
import trio.lowlevel
import trio.testing

import trio_sio
from trio_sio.admin import InMemorySessionStore, Instrumentation
from trio_sio.admin._instrument import QUEUE_SIZE
from trio_sio.testing import MemoryNetwork, RawClient, open_raw_client

PASSWORD_HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
AUTH = {"type": "basic", "username": "admin", "password": PASSWORD_HASH}
LOGIN = {"username": "admin", "password": "s3cret"}
ALL_FEATURES = [
    *("EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"),
    *("AGGREGATED_EVENTS", "ALL_EVENTS"),
]
ISO_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@asynccontextmanager
async def running(sio: trio_sio.Server) -> AsyncIterator[trio_sio.Server]:
    async with trio.open_nursery() as nursery:
        await nursery.start(sio.run)
        yield sio
        nursery.cancel_scope.cancel()


def admin_event(frame: str | bytes, nsp: str = "/admin") -> tuple[str, list[Any]] | None:
    """``(event, args)`` of an EVENT frame of ``nsp``, else None."""
    prefix = f"42{nsp},"
    if not isinstance(frame, str) or not frame.startswith(prefix):
        return None
    event, *args = json.loads(frame[len(prefix) :])
    return event, args


async def next_event(raw: RawClient, name: str, nsp: str = "/admin") -> list[Any]:
    """The arguments of the next ``name`` event on ``nsp`` (other frames are skipped)."""
    with trio.fail_after(10):
        while True:
            found = admin_event(await raw.receive(), nsp)
            if found is not None and found[0] == name:
                return found[1]


async def next_about(raw: RawClient, name: str, nsp: str = "/") -> list[Any]:
    """The next ``name`` event about a socket of namespace ``nsp`` (first argument)."""
    while True:
        args = await next_event(raw, name)
        if args and args[0] == nsp:
            return args


async def wait_for(raw: RawClient, name: str, args: list[Any]) -> None:
    """Skip events until a ``name`` event with these arguments."""
    while await next_event(raw, name) != args:
        pass


async def login(raw: RawClient, auth: dict[str, Any] | None = None) -> str:
    """Connect to /admin; returns the session id the server sent."""
    await raw.connect("/admin", auth=LOGIN if auth is None else auth)
    [session_id] = await next_event(raw, "session")
    assert isinstance(session_id, str)
    return session_id


# -- options ------------------------------------------------------------------------------
def test_auth_must_be_explicit_and_valid() -> None:
    sio = trio_sio.Server()
    with pytest.raises(ValueError, match="invalid `auth`"):
        sio.instrument(auth=None)
    with pytest.raises(ValueError, match="bcrypt hash"):
        sio.instrument(auth={"type": "basic", "username": "admin", "password": "s3cret"})
    with pytest.raises(ValueError, match="mode"):
        sio.instrument(auth=False, mode="staging")  # type: ignore[arg-type]
    assert isinstance(sio.instrument(auth=AUTH), Instrumentation)
    with pytest.raises(RuntimeError, match="already"):
        sio.instrument(auth=False)


# -- login --------------------------------------------------------------------------------
async def test_login_session_config_and_all_sockets() -> None:
    sio = trio_sio.Server()
    sio.instrument(auth=AUTH)
    async with running(sio), open_raw_client(sio) as raw:
        session_id = await login(raw)
        assert re.fullmatch(r"[0-9a-f]{16}", session_id)
        assert await next_event(raw, "config") == [{"supportedFeatures": ALL_FEATURES}]
        [sockets] = await next_event(raw, "all_sockets")
        [me] = sockets  # the admin socket itself, as in Node
        assert me["nsp"] == "/admin" and me["transport"] == "websocket"
        assert re.fullmatch(r"[0-9a-f]{12}", me["clientId"])
        assert me["rooms"] == [me["id"]] and me["data"] == {}
        assert set(me["handshake"]) == {
            *("address", "headers", "query", "issued", "secure", "time", "url", "xdomain"),
        }

        # The session id replaces the password, until the session expires.
        async with open_raw_client(sio) as again:
            await again.connect("/admin", auth={"sessionId": session_id})
            assert await next_event(again, "config") == [{"supportedFeatures": ALL_FEATURES}]


@pytest.mark.parametrize(
    "auth",
    [
        {"username": "admin", "password": "wrong"},
        {"username": "root", "password": "s3cret"},
        {"username": "admin"},
        {"sessionId": "0123456789abcdef"},
        {},
    ],
)
async def test_wrong_credentials_are_refused(auth: dict[str, Any]) -> None:
    sio = trio_sio.Server()
    sio.instrument(auth=AUTH)
    async with running(sio), open_raw_client(sio) as raw:
        with pytest.raises(trio_sio.SocketIOError, match="invalid credentials"):
            await raw.connect("/admin", auth=auth)


async def test_no_auth_and_a_hash_from_bcryptjs() -> None:
    sio = trio_sio.Server()
    sio.instrument(auth=False, namespace="/watch")
    async with running(sio), open_raw_client(sio) as raw:
        await raw.connect("/watch")
        assert (await next_event(raw, "config", "/watch"))[0]["supportedFeatures"]

    # bcryptjs (the Node server's) writes $2a$ hashes: "s3cret" at cost 4
    node_hash = "$2a$04$P8HTceUJWAvuZIlVzdaa3OJP9ZJNJy.0pTWq8DHHXsvKo73uD70.q"
    sio = trio_sio.Server()
    sio.instrument(auth={"type": "basic", "username": "admin", "password": node_hash})
    async with running(sio), open_raw_client(sio) as raw:
        await login(raw)


async def test_sessions_expire_and_are_bounded(autojump_clock: trio.testing.MockClock) -> None:
    store = InMemorySessionStore(duration=60, max_sessions=2)
    for session_id in ("a", "b", "c"):
        await store.save(session_id)
    assert [await store.exists(s) for s in "abc"] == [False, True, True]
    await trio.sleep(61)
    assert not await store.exists("b")


# -- stats --------------------------------------------------------------------------------
async def test_server_stats_every_two_seconds(autojump_clock: trio.testing.MockClock) -> None:
    sio = trio_sio.Server()
    sio.of("/chat")
    sio.instrument(auth=False, server_id="node-1")
    async with running(sio), open_raw_client(sio) as admin, open_raw_client(sio) as user:
        await admin.connect("/admin")
        await user.connect("/chat")
        await user.send('42/chat,["hello","world"]')
        start = trio.current_time()
        stats = (await next_event(admin, "server_stats"))[0]
        first = trio.current_time()
        assert first - start <= 2.0
        assert stats["serverId"] == "node-1"
        assert isinstance(stats["hostname"], str) and isinstance(stats["pid"], int)
        assert stats["uptime"] >= 0
        assert stats["clientsCount"] == 2 and stats["pollingClientsCount"] == 0
        assert {"name": "/chat", "socketsCount": 1} in stats["namespaces"]
        assert {"name": "/admin", "socketsCount": 1} in stats["namespaces"]
        assert {"name": "/", "socketsCount": 0} in stats["namespaces"]
        counts: dict[str, int] = {}
        for event in stats["aggregatedEvents"]:
            assert event["timestamp"] % 1000 == 0
            assert ("subType" in event) == (event["type"] == "rawDisconnection")
            counts[event["type"]] = counts.get(event["type"], 0) + event["count"]
        assert counts["rawConnection"] == 2
        assert counts["packetsIn"] == 3  # two CONNECTs and the event
        # the Engine.IO packets' data, without their type digit (Node counts the same)
        assert counts["bytesIn"] == len('0/admin,0/chat,2/chat,["hello","world"]')
        assert counts["packetsOut"] >= 2 and counts["bytesOut"] > 0

        await next_event(admin, "server_stats")
        assert trio.current_time() - first == pytest.approx(2.0)
        await user.aclose()
        for _ in range(3):
            stats = (await next_event(admin, "server_stats"))[0]
            if stats["clientsCount"] == 1:
                break
        disconnections = [e for e in stats["aggregatedEvents"] if e["type"] == "rawDisconnection"]
        assert disconnections == [
            {"timestamp": disconnections[0]["timestamp"], "type": "rawDisconnection",
             "subType": "transport close", "count": 1}
        ]  # fmt: skip


# -- notifications ------------------------------------------------------------------------
async def test_sockets_rooms_and_events_are_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sio = trio_sio.Server()

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        socket.data["name"] = auth.get("name")
        socket.join("lobby")

    @sio.on("ping")
    async def ping(socket: trio_sio.Socket, value: int) -> None:
        await socket.emit("pong", value + 1)
        socket.leave("lobby")

    sio.instrument(auth=False)
    async with running(sio), open_raw_client(sio) as admin, open_raw_client(sio) as user:
        await admin.connect("/admin")
        await next_event(admin, "all_sockets")
        sid = await user.connect(auth={"name": "alice"})
        assert await next_about(admin, "room_joined") == ["/", sid, sid, ANY_DATE]
        [socket, date] = await next_event(admin, "socket_connected")
        assert socket["id"] == sid and socket["nsp"] == "/" and ISO_DATE.fullmatch(date)
        assert socket["rooms"] == [sid]  # reported before the application's handlers ran
        assert await next_about(admin, "room_joined") == ["/", "lobby", sid, ANY_DATE]
        # what the connection handler put in socket.data comes with the next stats tick
        update = {"id": sid, "nsp": "/", "data": {"name": "alice"}}
        assert await next_event(admin, "socket_updated") == [update]

        await user.send('42["ping",1]')
        assert await next_about(admin, "event_received") == ["/", sid, ["ping", 1], ANY_DATE]
        assert await next_about(admin, "event_sent") == ["/", sid, ["pong", 2], ANY_DATE]
        assert await next_about(admin, "room_left") == ["/", "lobby", sid, ANY_DATE]

        # socket.data set by the application shows, without the instrumentation's own key
        async with open_raw_client(sio) as second:
            await second.connect("/admin")
            [sockets] = await next_event(second, "all_sockets")
        [alice] = [s for s in sockets if s["id"] == sid]
        assert alice["data"] == {"name": "alice"} and alice["rooms"] == [sid]
        assert sorted(s["nsp"] for s in sockets) == ["/", "/admin", "/admin"]

        await user.send("41")
        assert await next_about(admin, "socket_disconnected") == [
            "/",
            sid,
            "client namespace disconnect",
            ANY_DATE,
        ]
        assert await next_about(admin, "room_left") == ["/", sid, sid, ANY_DATE]


class _AnyDate:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and ISO_DATE.fullmatch(other) is not None

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "<any ISO date>"


ANY_DATE: Any = _AnyDate()


async def test_polling_clients_and_their_upgrade(autojump_clock: trio.testing.MockClock) -> None:
    sio = trio_sio.Server()
    sio.instrument(auth=False)
    async with running(sio), open_raw_client(sio) as admin, trio.open_nursery() as nursery:
        await admin.connect("/admin")
        network = MemoryNetwork(nursery, sio)
        client = trio_sio.Client("http://test", connector=network.connect)
        async with client:
            [socket, _] = await next_about_socket(admin, "socket_connected", "/")
            assert socket["transport"] == "polling"
            update = await next_event(admin, "socket_updated")
            assert update == [{"id": socket["id"], "nsp": "/", "transport": "websocket"}]
            stats = (await next_event(admin, "server_stats"))[0]
            assert stats["clientsCount"] == 2 and stats["pollingClientsCount"] == 0
            async with open_raw_client(sio) as second:
                await second.connect("/admin")
                [sockets] = await next_event(second, "all_sockets")
            [mine] = [s for s in sockets if s["id"] == socket["id"]]
            assert mine["transport"] == "websocket" and mine["data"] == {}


async def next_about_socket(raw: RawClient, name: str, nsp: str) -> list[Any]:
    """The next ``name`` event whose first argument is a socket of ``nsp``."""
    while True:
        args = await next_event(raw, name)
        if args[0]["nsp"] == nsp:
            return args


# -- commands -----------------------------------------------------------------------------
async def test_emit_join_leave_and_disconnect_commands() -> None:
    sio = trio_sio.Server()
    sio.of("/chat")
    sio.instrument(auth=AUTH)
    async with (
        running(sio),
        open_raw_client(sio) as admin,
        open_raw_client(sio) as alice,
        open_raw_client(sio) as bob,
    ):
        await login(admin)
        alice_id = await alice.connect("/chat")
        bob_id = await bob.connect("/chat")
        await next_event(admin, "config")

        # emit to one socket (the UI's "emit" on a socket: the filter is its id)
        await admin.send(f'42/admin,["emit","/chat","{alice_id}","hi",{{"from":"ui"}},2]')
        assert await alice.receive() == '42/chat,["hi",{"from":"ui"},2]'
        # ... and to the whole namespace (no filter)
        await admin.send('42/admin,["emit","/chat",null,"all"]')
        assert await alice.receive() == '42/chat,["all"]'
        assert await bob.receive() == '42/chat,["all"]'

        await admin.send(f'42/admin,["join","/chat","red","{bob_id}"]')
        await wait_for(admin, "room_joined", ["/chat", "red", bob_id, ANY_DATE])
        assert sio.of("/chat").sockets[bob_id].rooms == {bob_id, "red"}
        await admin.send('42/admin,["join","/chat","blue"]')  # every socket
        await admin.send('42/admin,["emit","/chat","red","only red"]')
        assert await bob.receive() == '42/chat,["only red"]'
        await admin.send('42/admin,["leave","/chat","blue","red"]')  # sockets of red leave blue
        await wait_for(admin, "room_left", ["/chat", "blue", bob_id, ANY_DATE])
        assert sio.of("/chat").sockets[alice_id].rooms == {alice_id, "blue"}

        # malformed commands are ignored; unknown namespaces are not created
        for frame in ('["emit"]', '["emit","/nope",null,"x"]', '["join",1,2]', '["_disconnect"]'):
            await admin.send(f"42/admin,{frame}")
        assert "/nope" not in sio.namespaces

        await admin.send(f'42/admin,["_disconnect","/chat",false,"{alice_id}"]')
        assert await alice.receive() == "41/chat,"
        await admin.send('42/admin,["_disconnect","/chat",true]')
        assert await bob.receive() == "41/chat,"
        with trio.fail_after(5):
            await bob.closed.wait()  # close: the whole connection
        assert not sio.of("/chat").sockets


async def test_readonly_ignores_commands_and_production_reports_less(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sio = trio_sio.Server()
    sio.instrument(auth=False, readonly=True, mode="production")
    async with running(sio), open_raw_client(sio) as admin, open_raw_client(sio) as user:
        await admin.connect("/admin")
        assert await next_event(admin, "config") == [{"supportedFeatures": ["AGGREGATED_EVENTS"]}]
        user_id = await user.connect()
        await user.send('42["hello"]')
        await admin.send('42/admin,["emit","/",null,"from ui"]')
        await admin.send(f'42/admin,["_disconnect","/",true,"{user_id}"]')
        await next_event(admin, "server_stats")
        # production: only server_stats, no socket, room or event notifications
        with trio.move_on_after(0.3):
            while True:
                found = admin_event(await admin.receive())
                assert found is not None and found[0] == "server_stats", found
        with pytest.raises(trio.WouldBlock):
            user.receive_nowait()
        assert user_id in sio.main.sockets


async def test_dynamic_namespaces_are_watched_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sio = trio_sio.Server()
    parent = sio.of(re.compile(r"/room-\d+"))
    sio.instrument(auth=False)
    async with (
        running(sio),
        open_raw_client(sio) as admin,
        open_raw_client(sio) as user,
    ):
        await admin.connect("/admin")
        await next_event(admin, "all_sockets")
        sid = await user.connect("/room-1")
        await user.send('42/room-1,["hi"]')
        assert await next_about(admin, "event_received", "/room-1") == [
            "/room-1",
            sid,
            ["hi"],
            ANY_DATE,
        ]
        assert len(parent._incoming_hooks) == 1
        # the server calls the instrumentation's hook: it adds no handler of its own
        assert "connection" not in parent._lifecycle
        stats = (await next_event(admin, "server_stats"))[0]
        assert {"name": "/room-1", "socketsCount": 1} in stats["namespaces"]


async def test_notifications_never_block_and_overflow_is_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sio = trio_sio.Server()
    instrumentation = sio.instrument(auth=False)
    instrumentation._queue("before the server runs")  # nobody to tell: ignored
    assert instrumentation.dropped == 0
    async with running(sio):
        await trio.lowlevel.checkpoint()
        for _ in range(QUEUE_SIZE + 5):
            instrumentation._queue("room_joined", "/", "x", "y", "z")
        assert instrumentation.dropped > 0


async def test_instrument_before_running() -> None:
    sio = trio_sio.Server()
    async with running(sio):
        with pytest.raises(RuntimeError, match="before serve"):
            sio.instrument(auth=False)
