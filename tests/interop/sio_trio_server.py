"""Scenario app on ``trio_sio.Server``, for the Socket.IO interop tests with official clients.

    python sio_trio_server.py

Listens on 127.0.0.1, path ``/socket.io/``, on a free port. The first line on stdout is the
port; then one JSON object per line for what the server saw, so that the tests can check the
server's side of each exchange (``bytes`` are written as ``{"$bytes": "<hex>"}``):

    {"ev": "connection", "nsp", "sid", "auth", "query", "transport"}
    {"ev": "event", "nsp", "sid", "event", "args"}        every incoming event (``on_any``)
    {"ev": "sent", "nsp", "sid", "event"}                 every event emitted to one socket
    {"ev": "refused", "nsp", "auth"}                      a middleware refusal
    {"ev": "disconnect", "nsp", "sid", "reason"}

The server shuts down when its stdin closes, so it never outlives the test run.

On connection to ``"/"`` the server emits the examples of the "emitting events" page:
``hello("world")``, ``nothing()`` (no args), ``hello-multi(1, "2", {3: "4", 5: b"\\x06"})``,
``dates`` (two datetimes), ``hero`` (an object with ``__sio_json__``) and ``point`` (a
dataclass). Then it answers these events (the return value of a handler is its ack):

    whoami                 → {"nsp", "sid", "auth", "query"}
    transport              → the server's view of the Engine.IO transport
    echo(*args)            → the same args (an ack with several arguments), and emits
                             ``echoed(*args)`` first
    update item(id, diff)  → {"status": "ok"} (the page's example)
    no-answer              (no handler: never acknowledged)
    ask(*args)             → asks the client ``question(*args)`` with ``emit_with_ack`` (no
                             timeout) and acks {"reply": <its answer, a list>}
    ask-within(*args)      → the same with ``timeout=2``
    ask-timeout            → ``emit_with_ack("ignored", timeout=0.3)``; acks the error
    ask-callback(*args)    → ``timeout(2).emit("question", *args, callback=cb)``; acks what
                             cb got: {"err": null | "<class>", "args": [...]}
    ask-callback-timeout   → the same to ``ignored`` with a 0.3 s timeout
    ask-callback-plain     → ``emit("question", *args, callback=cb)`` without a timeout
    volatile-burst(n)      → ``n`` volatile ``position(i, i * 2)`` emits 20 ms apart, then a
                             regular ``volatile-done(n)``; acks nothing
    volatile-count         → the list of ``vping`` values received so far on this socket
    emit-set               → tries to emit a ``set``; acks {"error": "TypeError", ...}
    join(room)             → joins it; acks the socket's rooms (sorted, without its id)
    leave(room)            → leaves it; acks the same
    to-room(room, *args)   → ``socket.to(room).emit("room-news", *args)``
    to-room-except(room, muted, *args) → ``sio.to(room).except_(muted).emit("room-news2",
                             *args)`` (the sender included)
    broadcast(*args)       → ``socket.broadcast.emit("all-news", *args)``
    poll-room(room, event, t) → ``sio.to(room).timeout(t).emit_with_ack(event, room)``;
                             acks {"replies": sorted} or {"error", "replies"}
    sync                   → acks "sync" (a round trip: what was queued before has arrived)
    connected(sids)        → for each socket id of "/", whether it is still connected

``/admin`` accepts a connection only with ``auth.token == "secret"``; otherwise a
middleware refuses it with ``ConnectionRefused("not authorized", {"code": 403, ...})``. It
emits ``admin-hello`` on connection and answers ``whoami``, ``echo`` and ``connected``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import sys
from typing import Any

import trio

import trio_sio


def log(**entry: Any) -> None:
    sys.stdout.write(json.dumps(entry, default=describe_default) + "\n")
    sys.stdout.flush()


def describe(value: Any) -> Any:
    """``value`` as JSON, with bytes as ``{"$bytes": hex}``."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, list | tuple):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    return value


def describe_default(value: Any) -> Any:
    return repr(value)


def transport_of(socket: trio_sio.Socket) -> str:
    # There is no public accessor for the current Engine.IO transport of a socket (the JS
    # server has socket.conn.transport.name): reach into the connection.
    return str(socket._connection.engine.transport.value)


@dataclasses.dataclass
class Point:
    x: int
    y: int
    label: str


class Hero:
    """The page's class with ``toJSON()``: a private field, sent as ``{"hp": 42}``."""

    def __init__(self) -> None:
        self._hp = 42

    def __sio_json__(self) -> dict[str, int]:
        return {"hp": self._hp}


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
#: Microseconds are truncated to milliseconds: "2024-05-06T07:08:09.123Z".
LATER = datetime.datetime(
    2024, 5, 6, 9, 8, 9, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
)


def make_server() -> trio_sio.Server:
    sio = trio_sio.Server(cors_allowed_origins="*", ping_interval=25, ping_timeout=20)
    vpings: dict[str, list[Any]] = {}

    # -- logging of both directions --------------------------------------------------------
    def log_incoming(socket: trio_sio.Socket, event: str, *args: Any) -> None:
        log(ev="event", nsp=socket.namespace.name, sid=socket.id, event=event, args=describe(args))
        if event == "vping":
            vpings.setdefault(socket.id, []).extend(args)

    def log_outgoing(socket: trio_sio.Socket, event: str, *args: Any) -> None:
        log(ev="sent", nsp=socket.namespace.name, sid=socket.id, event=event)

    def log_disconnect(socket: trio_sio.Socket, reason: str) -> None:
        log(ev="disconnect", nsp=socket.namespace.name, sid=socket.id, reason=reason)
        vpings.pop(socket.id, None)

    def whoami(socket: trio_sio.Socket) -> dict[str, Any]:
        return {
            "nsp": socket.namespace.name,
            "sid": socket.id,
            "auth": socket.handshake.auth,
            "query": {k: v for k, v in socket.handshake.query.items() if k == "q"},
        }

    def connected_sids(socket: trio_sio.Socket, sids: list[str]) -> list[bool]:
        return [sio.main.get_socket(sid) is not None for sid in sids]

    admin = sio.of("/admin")
    for namespace in (sio.main, admin):
        namespace.on_any(log_incoming)
        namespace.on_any_outgoing(log_outgoing)
        namespace.on("disconnect", log_disconnect)
        namespace.on("whoami", whoami)
        namespace.on("echo", echo)
        namespace.on("connected", connected_sids)

    # -- "/" ------------------------------------------------------------------------------
    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        log(
            ev="connection",
            nsp="/",
            sid=socket.id,
            auth=auth,
            query=dict(socket.handshake.query),
            transport=transport_of(socket),
        )
        await socket.emit("hello", "world")
        await socket.emit("nothing")
        await socket.emit("hello-multi", 1, "2", {3: "4", 5: b"\x06"})
        await socket.emit("dates", EPOCH, LATER)
        await socket.emit("hero", Hero())
        await socket.emit("point", Point(1, 2, "p"))

    @sio.on("transport")
    def transport(socket: trio_sio.Socket) -> str:
        return transport_of(socket)

    @sio.on("update item")
    def update_item(socket: trio_sio.Socket, item_id: Any, changes: Any) -> dict[str, str]:
        return {"status": "ok"}

    @sio.on("ask")
    async def ask(socket: trio_sio.Socket, *args: Any) -> dict[str, Any]:
        reply = await socket.emit_with_ack("question", *args)
        return {"reply": as_list(reply)}

    @sio.on("ask-within")
    async def ask_within(socket: trio_sio.Socket, *args: Any) -> dict[str, Any]:
        reply = await socket.emit_with_ack("question", *args, timeout=2)
        return {"reply": as_list(reply)}

    @sio.on("ask-timeout")
    async def ask_timeout(socket: trio_sio.Socket) -> dict[str, Any]:
        try:
            reply = await socket.emit_with_ack("ignored", "hello?", timeout=0.3)
        except trio_sio.AckTimeoutError as exc:
            return {"error": type(exc).__name__, "message": str(exc)}
        return {"reply": as_list(reply)}

    async def ask_with_callback(
        socket: trio_sio.Socket, event: str, timeout: float | None, args: tuple[Any, ...]
    ) -> dict[str, Any]:
        done = trio.Event()
        outcome: dict[str, Any] = {}

        def callback(*cb_args: Any) -> None:
            if timeout is not None:
                err, *cb_args_list = cb_args
                outcome["err"] = None if err is None else type(err).__name__
            else:
                cb_args_list = list(cb_args)
            outcome["args"] = cb_args_list
            done.set()

        emitter = socket if timeout is None else socket.timeout(timeout)
        await emitter.emit(event, *args, callback=callback)
        with trio.move_on_after(5):
            await done.wait()
        return outcome or {"error": "callback not called in 5 s"}

    @sio.on("ask-callback")
    async def ask_callback(socket: trio_sio.Socket, *args: Any) -> dict[str, Any]:
        return await ask_with_callback(socket, "question", 2, args)

    @sio.on("ask-callback-timeout")
    async def ask_callback_timeout(socket: trio_sio.Socket) -> dict[str, Any]:
        return await ask_with_callback(socket, "ignored", 0.3, ("hello?",))

    @sio.on("ask-callback-plain")
    async def ask_callback_plain(socket: trio_sio.Socket, *args: Any) -> dict[str, Any]:
        return await ask_with_callback(socket, "question", None, args)

    @sio.on("volatile-burst")
    async def volatile_burst(socket: trio_sio.Socket, count: int) -> None:
        for i in range(int(count)):
            await trio.sleep(0.02)
            await socket.volatile.emit("position", i, i * 2)
        await socket.emit("volatile-done", count)

    @sio.on("volatile-count")
    def volatile_count(socket: trio_sio.Socket) -> list[Any]:
        return vpings.get(socket.id, [])

    @sio.on("emit-set")
    async def emit_set(socket: trio_sio.Socket) -> dict[str, str]:
        try:
            await socket.emit("set-event", {1, 2})
        except TypeError as exc:
            return {"error": "TypeError", "message": str(exc)}
        return {"error": "none"}

    def rooms_of(socket: trio_sio.Socket) -> list[str]:
        return sorted(socket.rooms - {socket.id})

    @sio.on("join")
    def join(socket: trio_sio.Socket, room: str) -> list[str]:
        socket.join(room)
        return rooms_of(socket)

    @sio.on("leave")
    def leave(socket: trio_sio.Socket, room: str) -> list[str]:
        socket.leave(room)
        return rooms_of(socket)

    @sio.on("to-room")
    async def to_room(socket: trio_sio.Socket, room: str, *args: Any) -> str:
        await socket.to(room).emit("room-news", *args)
        return "sent"

    @sio.on("to-room-except")
    async def to_room_except(socket: trio_sio.Socket, room: str, muted: str, *args: Any) -> str:
        await sio.to(room).except_(muted).emit("room-news2", *args)
        return "sent"

    @sio.on("broadcast")
    async def broadcast(socket: trio_sio.Socket, *args: Any) -> str:
        await socket.broadcast.emit("all-news", *args)
        return "sent"

    @sio.on("poll-room")
    async def poll_room(
        socket: trio_sio.Socket, room: str, event: str, timeout: float
    ) -> dict[str, Any]:
        try:
            replies = await sio.to(room).timeout(timeout).emit_with_ack(event, room)
        except trio_sio.AckTimeoutError as exc:
            return {"error": type(exc).__name__, "replies": sorted(map(str, exc.replies))}
        return {"replies": sorted(map(str, replies))}

    @sio.on("sync")
    def sync(socket: trio_sio.Socket) -> str:
        return "sync"

    # -- "/admin" -------------------------------------------------------------------------
    @admin.use
    def check_token(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        if auth.get("token") != "secret":
            log(ev="refused", nsp="/admin", auth=auth)
            raise trio_sio.ConnectionRefused("not authorized", {"code": 403, "reason": "bad token"})

    @admin.on("connection")
    async def admin_connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        log(
            ev="connection",
            nsp="/admin",
            sid=socket.id,
            auth=auth,
            query=dict(socket.handshake.query),
            transport=transport_of(socket),
        )
        await socket.emit("admin-hello", {"welcome": auth.get("user")})

    return sio


async def echo(socket: trio_sio.Socket, *args: Any) -> tuple[Any, ...]:
    await socket.emit("echoed", *args)
    return args


def as_list(reply: Any) -> list[Any]:
    """``emit_with_ack``'s result (None, one value or a tuple) as the list of ack args."""
    if reply is None:
        return []
    if isinstance(reply, tuple):
        return list(reply)
    return [reply]


async def wait_stdin_closed() -> None:
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stream:
        while await stream.receive_some():
            pass


async def main() -> None:
    sio = make_server()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        sys.stdout.write(f"{listeners[0].socket.getsockname()[1]}\n")
        sys.stdout.flush()
        await wait_stdin_closed()
        sio.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    trio.run(main)
