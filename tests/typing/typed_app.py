"""A small chat service written against trio_sio's public API as a ``mypy --strict`` user
writes it: every handler annotated, no ``type: ignore``, nothing imported from private
modules.

``nox -s typecheck`` runs ``mypy --strict`` on this file, so a public signature that turns
into ``Any`` (an "untyped decorator", an ``Any`` return) fails CI; ``test_typed_app.py`` runs
the server and the client against each other, so the app is not only type-checked but works.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

import trio_sio
from trio_sio.client import Connector
from trio_sio.engineio import (
    AllowRequest,
    CookieOptions,
    EngineConnectionError,
    RequestHead,
)

TOKEN = "s3cret"


def create_server() -> trio_sio.Server:
    """The chat server: a token-checking middleware, a lobby on ``"/"``, rooms on
    ``"/chat"`` and a background job acknowledged when it ends."""
    sio = trio_sio.Server(cors_allowed_origins="*", ping_interval=25, ping_timeout=20)
    chat: trio_sio.Namespace = sio.of("/chat")

    @sio.use
    def authenticate(socket: trio_sio.Socket, auth: dict[str, object]) -> None:
        if auth.get("token") != TOKEN:
            raise trio_sio.ConnectionRefused("unauthorized", {"hint": "send a valid token"})
        socket.data["user"] = str(auth.get("user", "anonymous"))

    chat.use(authenticate)
    # Packet middleware: a rate limit per socket, and a check of every event's arguments.
    sio.use_packet(trio_sio.RateLimit(rate=50, burst=100))

    @sio.use_packet
    def no_empty_messages(
        socket: trio_sio.Socket, event: str, args: list[object]
    ) -> trio_sio.PacketRefused | None:
        if event == "message" and not all(args):
            return trio_sio.PacketRefused("empty message")
        return None

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: dict[str, object]) -> None:
        user: str = socket.data["user"]
        socket.join("lobby")

        @socket.on("error")
        def refused(error: Exception) -> None:
            socket.data["refused"] = str(error)

        def sent(event: str, *args: object) -> None:
            socket.data["last sent"] = event

        socket.on_any_outgoing(sent)
        socket.use(lambda event, args: None)
        assert socket.listeners_any_outgoing() == [sent]
        await socket.emit("welcome", user)

        def pong(error: Exception | None, reply: str | None = None) -> None:
            socket.data["ping"] = "timeout" if error is not None else reply

        callback: trio_sio.Callback = pong
        emitter: trio_sio.SocketEmitter = socket.timeout(5)
        await emitter.emit("ping", callback=callback)

    @sio.on("disconnect")
    def disconnected(socket: trio_sio.Socket, reason: str) -> None:
        socket.data.clear()

    @sio.on("message")
    async def message(socket: trio_sio.Socket, room: str, text: str) -> dict[str, str]:
        await sio.to(room).emit("message", socket.data["user"], text)
        return {"status": "ok"}

    @sio.on("typing")
    async def typing(socket: trio_sio.Socket, room: str) -> None:
        await socket.to(room).volatile.emit("typing", socket.data["user"])

    @sio.on("rename")
    async def rename(socket: trio_sio.Socket, new_name: str) -> bool:
        confirmed: bool = await socket.emit_with_ack("confirm rename", new_name, timeout=5)
        if confirmed:
            socket.data["user"] = new_name
        return confirmed

    @sio.on("whoami")
    def whoami(socket: trio_sio.Socket) -> tuple[str, str]:
        return socket.data["user"], socket.data.get("ping", "")

    async def run_job(numbers: list[int], ack: trio_sio.Ack) -> None:
        await trio.sleep(1)  # slow work, after the handler returned
        await ack(sum(numbers))

    @sio.on("job")
    def job(socket: trio_sio.Socket, numbers: list[int], *, ack: trio_sio.Ack) -> None:
        if not ack.requested:
            return
        socket.start_soon(run_job, numbers, ack)

    @chat.on("connection")
    def chat_connected(socket: trio_sio.Socket, auth: dict[str, object]) -> None:
        socket.join("general")

    @chat.on("say")
    async def say(socket: trio_sio.Socket, text: str) -> None:
        await chat.to("general").emit("said", socket.data["user"], text)

    return sio


@dataclass
class Session:
    """What one client run saw."""

    welcome: str = ""
    messages: list[tuple[str, str]] = field(default_factory=list)
    said: list[tuple[str, str]] = field(default_factory=list)
    message_status: dict[str, str] = field(default_factory=dict)
    renamed: bool = False
    whoami: tuple[str, str] = ("", "")
    job_total: int = 0
    acked: list[object] = field(default_factory=list)
    got_ack: trio.Event = field(default_factory=trio.Event)
    got_message: trio.Event = field(default_factory=trio.Event)
    got_said: trio.Event = field(default_factory=trio.Event)


def create_edge_server() -> tuple[trio_sio.Server, list[int]]:
    """A server with the HTTP edge set up: CORS by function, a cookie, a refusal reason,
    header and connection_error hooks, the client's address behind a proxy."""

    def origin_allowed(origin: str) -> bool:
        return origin.endswith(".example.com")

    def check(head: RequestHead) -> bool | str:
        return head.query.get("token") == TOKEN or "invalid token"

    allow: AllowRequest = check
    sio = trio_sio.Server(
        cors_allowed_origins=origin_allowed,
        cors_exposed_headers=["x-session"],
        cookie=CookieOptions(name="lb", secure=True, same_site="None"),
        allow_request=allow,
        trusted_proxies=["10.0.0.0/8"],
    )
    codes: list[int] = []

    @sio.engine.on("initial_headers")
    def initial(headers: list[tuple[str, str]], head: RequestHead) -> None:
        headers.append(("X-Session", head.query.get("sid") or "new"))

    @sio.engine.on("connection_error")
    def refused(error: EngineConnectionError) -> None:
        codes.append(int(error.code))

    @sio.on("whoami")
    def whoami(socket: trio_sio.Socket) -> list[str | None]:
        peer = socket.request.client
        return [socket.handshake.address, peer[0] if peer else None]

    return sio, codes


async def run_client(
    url: str, *, user: str, token: str = TOKEN, connector: Connector | None = None
) -> Session:
    """Connect as ``user``, chat a little, and return what happened."""
    session = Session()
    client = trio_sio.Client(
        url,
        auth={"token": token, "user": user},
        namespaces=["/", "/chat"],
        connector=connector,
    )
    chat: trio_sio.ClientSocket = client.of("/chat")

    @client.on("welcome")
    def welcome(name: str) -> None:
        session.welcome = name

    @client.on("ping")
    async def ping() -> str:
        return "pong"

    @client.on("message")
    def message(sender: str, text: str) -> None:
        session.messages.append((sender, text))
        session.got_message.set()

    @client.on("confirm rename", ordered=True)
    async def confirm_rename(new_name: str, *, ack: trio_sio.Ack) -> None:
        await ack(new_name.isidentifier())

    @chat.on("said")
    def said(sender: str, text: str) -> None:
        session.said.append((sender, text))
        session.got_said.set()

    async def on_ack(*args: object) -> None:
        session.acked.extend(args)
        session.got_ack.set()

    async with client:
        await client.volatile.emit("typing", "lobby")
        session.message_status = await client.timeout(2).emit_with_ack("message", "lobby", "hello")
        session.renamed = await client.emit_with_ack("rename", f"{user}2", timeout=5)
        session.job_total = await client.emit_with_ack("job", [1, 2, 3], timeout=5)
        await client.emit("message", "lobby", "bye", callback=on_ack)
        await chat.emit("say", "hi all")
        with trio.fail_after(5):
            await session.got_ack.wait()
            await session.got_message.wait()
            await session.got_said.wait()
        name, ping = await client.emit_with_ack("whoami", timeout=5)
        session.whoami = (str(name), str(ping))
    return session
