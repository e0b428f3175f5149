"""A small multi-room chat on trio_sio, with its web page served from the same port.

    npm ci --prefix examples/chat          # once: fetches the official browser client
    python examples/chat/server.py [--host 127.0.0.1] [--port 8000] [--redis URL]
    hypercorn --worker-class trio --bind 127.0.0.1:8000 examples.chat.server:app   # or so

then open http://127.0.0.1:8000/ in two browser windows.

With ``--admin`` (and a password: ``--admin-password`` or ``$CHAT_ADMIN_PASSWORD``; the
user is ``admin``, or ``--admin-user``/``$CHAT_ADMIN_USER``), the server also speaks the
Socket.IO Admin UI's protocol (``sio.instrument``; needs ``pip install 'trio-sio[admin]'``)
and serves the UI's page at http://127.0.0.1:8000/admin/: connect it to
``http://127.0.0.1:8000`` to watch the sockets, rooms and events of the chat.

What it shows:

* a nickname given at login in the connection ``auth`` and checked by a middleware (unique,
  case-insensitive; a refused login reaches the page as a ``connect_error``);
* rooms: join, leave (back to the lobby) and a live room list; each room keeps its last
  messages, sent to whoever joins;
* acknowledgements: the ``message`` handler's return value (the stored id and time) is the
  ack the page waits for before marking a message as delivered;
* a typing indicator relayed to the room, cleared by a timeout on the receiving page;
* the user list of the room;
* reconnection: the page's ``auth`` carries its nickname and room, so after a lost
  connection (or a server restart) it comes back as the same user in the same room;
* connection state recovery (on unless ``--no-recovery``): a page whose network drops for
  less than two minutes gets its socket back, with the messages sent meanwhile, which it
  marks as recovered.

The state lives in memory: a restart forgets the history.

Several servers: with ``--redis redis://127.0.0.1:6379`` the server uses the Redis adapter
(``trio_sio.adapters.redis``), and pages connected to different servers of the same Redis
chat together (``nox -s chat-cluster`` starts two, on ports 8000 and 8001). Then:

* cluster-wide: messages, join/leave notices and typing (room broadcasts go through Redis);
  the user list of a room and the head counts of the room list (``fetch_sockets`` asks every
  server);
* per server: each room's history holds only the messages sent through *this* server, and
  a page gets the history of the server it is connected to; the room list names the rooms
  with someone in them on any server, plus the empty rooms the server that sent it knows;
  a nickname is unique per server only.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import logging
import os
import re
import secrets
import signal
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

import trio_sio

log = logging.getLogger("chat")

HERE = Path(__file__).resolve().parent
PUBLIC = HERE / "public"
CLIENT_DIST = HERE / "node_modules" / "socket.io-client" / "dist"
ADMIN_UI = HERE / "node_modules" / "@socket.io" / "admin-ui" / "ui" / "dist"

LOBBY = "lobby"
HISTORY_SIZE = 50
MAX_ROOMS = 100
MAX_TEXT = 2000

NICKNAME = re.compile(r"[^\W_][\w .-]{0,23}")
ROOM = re.compile(r"[a-z0-9][a-z0-9_-]{0,23}")


def static_files() -> dict[str, Path]:
    """The URL paths of the page and of the client bundle, and the files behind them."""
    return {
        "/": PUBLIC / "index.html",
        "/index.html": PUBLIC / "index.html",
        "/chat.js": PUBLIC / "chat.js",
        "/style.css": PUBLIC / "style.css",
        "/socket.io.min.js": CLIENT_DIST / "socket.io.min.js",
        "/socket.io.min.js.map": CLIENT_DIST / "socket.io.min.js.map",
        **admin_ui_files(),
    }


def admin_ui_files() -> dict[str, Path]:
    """The Socket.IO Admin UI's built page under ``/admin/`` (same origin as the chat, so no
    CORS to set up), if npm installed it."""
    if not ADMIN_UI.is_dir():
        return {}
    files = {"/admin/": ADMIN_UI / "index.html"}
    for path in ADMIN_UI.rglob("*"):
        if path.is_file() and path.suffix != ".map":
            files["/admin/" + path.relative_to(ADMIN_UI).as_posix()] = path
    return files


def instrument(sio: trio_sio.Server, username: str, password: str) -> None:
    """Speak the Admin UI's protocol on the namespace ``/admin``, with basic auth.

    ``password`` is hashed with bcrypt here, unless it is a bcrypt hash already.
    """
    import bcrypt  # noqa: PLC0415 - the `admin` extra, only for --admin

    if not password.startswith("$2"):
        password = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    sio.instrument(auth={"type": "basic", "username": username, "password": password})


def now() -> str:
    """The current time, ISO 8601 in UTC with milliseconds (what JavaScript's Date parses)."""
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


@dataclass
class Room:
    name: str
    history: deque[dict[str, Any]]  # the last messages, oldest first


class Chat:
    """The chat's state and its Socket.IO handlers.

    ``socket.data`` holds ``nickname``, ``token`` (a random value the page keeps for its
    lifetime, so that a reconnecting page may take its nickname back from a connection the
    server has not yet seen die) and ``room``.
    """

    def __init__(
        self, history_size: int = HISTORY_SIZE, redis: str | None = None, recovery: bool = True
    ) -> None:
        options: dict[str, Any] = {"connection_state_recovery": recovery}
        if redis is not None:
            # only here: the Redis adapter needs the `redis` extra (coredis, msgpack)
            from trio_sio.adapters.redis import create_adapter  # noqa: PLC0415

            options["adapter"] = create_adapter(redis)
        self.sio = trio_sio.Server(static_files=static_files(), **options)
        self.history_size = history_size
        self.rooms: dict[str, Room] = {LOBBY: self._new_room(LOBBY)}
        self.nicknames: dict[str, trio_sio.Socket] = {}  # casefolded nickname -> socket
        # Message ids stay unique across restarts, so that a reconnected page can merge the
        # history it is sent with the messages it already shows.
        self._ids = (f"{secrets.token_hex(3)}-{n}" for n in itertools.count(1))

        sio = self.sio
        sio.use(self.login)
        sio.on("connection", self.connected)
        sio.on("disconnect", self.disconnected)
        sio.on("join", self.join)
        sio.on("leave", self.leave)
        sio.on("rooms", self.room_list)
        sio.on("message", self.message)
        sio.on("typing", self.typing)

    def _new_room(self, name: str) -> Room:
        return Room(name, deque(maxlen=self.history_size))

    # -- connection -----------------------------------------------------------------------
    async def login(self, socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        """Middleware: claim the nickname of ``auth`` or refuse the connection."""
        nickname = str(auth.get("nickname", "")).strip()
        token = str(auth.get("token", ""))
        if not NICKNAME.fullmatch(nickname):
            raise trio_sio.ConnectionRefused(
                "a nickname has 1 to 24 letters, digits, spaces, '.', '-' or '_'"
            )
        key = nickname.casefold()
        holder = self.nicknames.get(key)
        if holder is not None and holder.connected:
            if not token or holder.data.get("token") != token:
                raise trio_sio.ConnectionRefused(f"the nickname {nickname!r} is taken")
            # The same page again: its old connection is dead but not yet timed out.
            log.info("%s reconnected; dropping its previous connection", nickname)
            await holder.disconnect(close=True)
        room = str(auth.get("room") or LOBBY).strip().lower()
        if not ROOM.fullmatch(room) or (room not in self.rooms and len(self.rooms) >= MAX_ROOMS):
            room = LOBBY
        socket.data.update(nickname=nickname, token=token, room=room)
        self.nicknames[key] = socket

    async def connected(self, socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        nickname, room = socket.data["nickname"], socket.data["room"]
        if socket.recovered:
            await self._recovered(socket)
            return
        log.info("%s connected (%s, socket %s)", nickname, socket.transport, socket.id)
        await socket.emit("joined", await self._enter(socket, room))
        await self._broadcast_rooms()

    async def _recovered(self, socket: trio_sio.Socket) -> None:
        """A page back after a short network loss: its socket kept its data and room (the
        middleware did not run), and the page got the messages it missed; tell the room."""
        nickname, room = socket.data["nickname"], socket.data["room"]
        holder = self.nicknames.get(nickname.casefold())
        if holder is not None and holder.connected and holder is not socket:
            log.info("%s is back, but the nickname was taken meanwhile", nickname)
            await socket.disconnect()
            return
        self.nicknames[nickname.casefold()] = socket
        log.info("%s is back (socket %s recovered)", nickname, socket.id)
        await socket.to(room).emit("notice", {"room": room, "text": f"{nickname} is back"})
        await self.sio.to(room).emit("users", {"room": room, "users": await self._users(room)})
        await self._broadcast_rooms()

    async def disconnected(self, socket: trio_sio.Socket, reason: str) -> None:
        nickname, room = socket.data.get("nickname"), socket.data.get("room")
        if nickname is None:
            return
        log.info("%s disconnected: %s", nickname, reason)
        if self.nicknames.get(nickname.casefold()) is socket:
            del self.nicknames[nickname.casefold()]
        # The socket has already left its rooms.
        await self._left(socket, room)
        await self._broadcast_rooms()

    # -- rooms ----------------------------------------------------------------------------
    async def join(self, socket: trio_sio.Socket, name: Any) -> dict[str, Any]:
        """``join(room)``; the ack is the room's state, or ``{"error": ...}``."""
        room = str(name).strip().lower()
        if not ROOM.fullmatch(room):
            return {"error": "a room name has 1 to 24 characters among a-z, 0-9, '-' and '_'"}
        if room not in self.rooms and len(self.rooms) >= MAX_ROOMS:
            return {"error": "too many rooms"}
        state = await self._move(socket, room)
        await self._broadcast_rooms()
        return state

    async def leave(self, socket: trio_sio.Socket) -> dict[str, Any]:
        """``leave()``: back to the lobby; the ack is the lobby's state."""
        state = await self._move(socket, LOBBY)
        await self._broadcast_rooms()
        return state

    async def room_list(self, socket: trio_sio.Socket) -> list[dict[str, Any]]:
        """``rooms()``: the ack lists every room with its number of users."""
        return await self._rooms()

    async def _move(self, socket: trio_sio.Socket, room: str) -> dict[str, Any]:
        old = socket.data["room"]
        if old != room:
            socket.leave(old)
            await self._left(socket, old)
        return await self._enter(socket, room)

    async def _enter(self, socket: trio_sio.Socket, name: str) -> dict[str, Any]:
        """Put ``socket`` in room ``name``; returns what the page needs to show it."""
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = self._new_room(name)
            log.info("room %r created", name)
        socket.data["room"] = name
        already = name in socket.rooms
        socket.join(name)
        users = await self._users(name)
        if not already:
            nickname = socket.data["nickname"]
            log.info("%s joined %r", nickname, name)
            await socket.to(name).emit("notice", {"room": name, "text": f"{nickname} joined"})
            await socket.to(name).emit("users", {"room": name, "users": users})
        return {"room": name, "history": list(room.history), "users": users}

    async def _left(self, socket: trio_sio.Socket, name: str | None) -> None:
        """Tell room ``name`` that ``socket`` has gone."""
        if name is None:
            return
        nickname = socket.data["nickname"]
        log.info("%s left %r", nickname, name)
        # Not to the socket itself: if it comes back through recovery, it would get these.
        others = self.sio.to(name).except_(socket.id)
        await others.emit("typing", {"nickname": nickname, "typing": False})
        await others.emit("notice", {"room": name, "text": f"{nickname} left"})
        await others.emit("users", {"room": name, "users": await self._users(name)})

    async def _users(self, room: str) -> list[str]:
        sockets = await self.sio.in_(room).fetch_sockets()
        return sorted((s.data["nickname"] for s in sockets), key=str.casefold)

    async def _rooms(self) -> list[dict[str, Any]]:
        """The known rooms (with several servers: those with users anywhere too)."""
        counts = dict.fromkeys(self.rooms, 0)
        for socket in await self.sio.fetch_sockets():
            for name in socket.rooms - {socket.id}:
                counts[name] = counts.get(name, 0) + 1
        return [
            {"name": name, "users": counts[name]}
            for name in sorted(counts, key=lambda n: (n != LOBBY, n))
        ]

    async def _broadcast_rooms(self) -> None:
        await self.sio.emit("rooms", await self._rooms())

    # -- chatting -------------------------------------------------------------------------
    async def message(self, socket: trio_sio.Socket, text: Any) -> dict[str, Any]:
        """``message(text)``; the ack carries the stored message's ``id`` and ``time``."""
        if not isinstance(text, str) or not text.strip():
            return {"error": "empty message"}
        text = text.strip()[:MAX_TEXT]
        room = socket.data["room"]
        stored = {
            "id": next(self._ids),
            "room": room,
            "nickname": socket.data["nickname"],
            "text": text,
            "time": now(),
        }
        self.rooms[room].history.append(stored)
        log.info("%s in %r: %d characters", stored["nickname"], room, len(text))
        await socket.to(room).emit("message", stored)
        return {"id": stored["id"], "time": stored["time"]}

    async def typing(self, socket: trio_sio.Socket, active: Any = True) -> None:
        """``typing(bool)``, relayed to the rest of the room.

        Not a volatile broadcast: that would drop the notice for every client whose transport
        is busy at that moment (a long-polling client between two requests, a client
        upgrading to WebSocket), and a lost "stopped typing" leaves a stale indicator. The
        pages send it at most every two seconds, and only while connected.
        """
        room = socket.data["room"]
        update = {"nickname": socket.data["nickname"], "typing": bool(active)}
        await socket.to(room).emit("typing", update)


async def serve(
    host: str,
    port: int,
    redis: str | None = None,
    recovery: bool = True,
    admin: tuple[str, str] | None = None,
) -> int:
    chat = Chat(redis=redis, recovery=recovery)
    if admin is not None:
        instrument(chat.sio, *admin)
    async with trio.open_nursery() as nursery:
        await nursery.start(stop_on_signals, nursery.cancel_scope)
        try:
            listeners = await nursery.start(chat.sio.serve, host, port)
        except trio_sio.SocketIOError as exc:  # RedisUnavailable
            log.error("%s", exc)
            return 1
        bound = listeners[0].socket.getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        log.info("chat server on http://%s:%d/", shown, bound[1])
        if admin is not None:
            log.info("Admin UI on http://%s:%d/admin/ (user %r)", shown, bound[1], admin[0])
    return 0


async def stop_on_signals(
    cancel_scope: trio.CancelScope, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Cancel ``cancel_scope`` (the server's nursery) on Ctrl+C (SIGINT) or SIGTERM, so that
    the server closes its connections and the process exits with 0 instead of a
    ``KeyboardInterrupt`` traceback. Blocks until a signal arrives or it is cancelled."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            log.info("%s: stopping", signal.Signals(signum).name)
            cancel_scope.cancel()
            return


def configure_logging(debug: bool = False) -> None:
    """Log the chat's lines (and trio_sio's warnings) to stderr, unless the application
    running us (or a test) has configured logging already: under Hypercorn too, whose own
    set-up covers only its ``hypercorn.*`` loggers."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def create_app(redis: str | None = None) -> trio_sio.ASGIApp:
    """The chat as an ASGI application (its page included), for Hypercorn's trio worker.

    Configures logging (:func:`configure_logging`) so that the chat's lines show under an
    ASGI server too."""
    configure_logging()
    return trio_sio.ASGIApp(Chat(redis=redis).sio)


#: The chat for an ASGI server, run from the repository's root:
#: ``hypercorn --worker-class trio --bind 127.0.0.1:8000 examples.chat.server:app``
#: (with Redis: ``"examples.chat.server:create_app('redis://127.0.0.1:6379')"``).
app = create_app()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    parser.add_argument("--redis", metavar="URL", help="share rooms with other servers via Redis")
    parser.add_argument(
        "--no-recovery", action="store_true", help="turn connection state recovery off"
    )
    parser.add_argument("--debug", action="store_true", help="log trio_sio's debug messages")
    parser.add_argument(
        "--admin",
        action="store_true",
        help="also serve the Socket.IO Admin UI: its page is at /admin/ on the same port "
        "(needs a password; the page loads its icons and fonts from public CDNs)",
    )
    parser.add_argument(
        "--admin-user",
        default=os.environ.get("CHAT_ADMIN_USER", "admin"),
        help="the Admin UI's user name (default: $CHAT_ADMIN_USER, or admin)",
    )
    parser.add_argument(
        "--admin-password",
        default=os.environ.get("CHAT_ADMIN_PASSWORD"),
        help="its password, or a bcrypt hash of it (default: $CHAT_ADMIN_PASSWORD)",
    )
    args = parser.parse_args(argv)
    configure_logging(args.debug)
    if not (CLIENT_DIST / "socket.io.min.js").is_file():
        log.error("the Socket.IO browser client is missing: run `npm ci` in %s", HERE)
        return 1
    admin = None
    if args.admin:
        if not args.admin_password:
            log.error("--admin needs a password: --admin-password or $CHAT_ADMIN_PASSWORD")
            return 1
        if not admin_ui_files():
            log.warning("the Admin UI's page is missing (npm ci in %s): use another copy", HERE)
        admin = (args.admin_user, args.admin_password)
    code = 0
    try:
        code = trio.run(serve, args.host, args.port, args.redis, not args.no_recovery, admin)
    except* KeyboardInterrupt:
        pass  # Ctrl+C before stop_on_signals was listening (or after it stopped)
    log.info("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
