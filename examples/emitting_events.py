"""The "Emitting events" guide of Socket.IO, in Python: every example, both directions.

Each section builds a server and a client the way an application would. The test suite runs
them all (tests/examples/test_emitting_events.py). docs/emitting-events.rst shows the same
examples as plain snippets, which tests/docs/test_snippets.py runs.

Run it against itself on a free port:

    python examples/emitting_events.py
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable
from typing import Any

import trio

import trio_sio

log = logging.getLogger("emitting_events")
Report = Callable[..., None]


# -- Basic emit ---------------------------------------------------------------------------
def basic_emit(report: Report) -> tuple[trio_sio.Server, Callable[[trio_sio.Client], None]]:
    """Server → client, then client → server: ``hello`` with ``"world"``."""
    sio = trio_sio.Server()

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        await socket.emit("hello", "world")

    @sio.on("hello")
    def hello_from_client(socket: trio_sio.Socket, arg: str) -> None:
        report("server got", arg)  # world

    def client_handlers(client: trio_sio.Client) -> None:
        @client.on("hello")
        async def hello_from_server(arg: str) -> None:
            report("client got", arg)  # world
            await client.emit("hello", "world")

    return sio, client_handlers


# -- Any number of arguments, binary anywhere ------------------------------------------------
def many_arguments(report: Report) -> tuple[trio_sio.Server, Callable[[trio_sio.Client], None]]:
    """``emit("hello", 1, "2", {3: "4", 5: bytes([6])})``: no json.dumps, bytes included."""
    sio = trio_sio.Server()

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        await socket.emit("hello", 1, "2", {3: "4", 5: bytes([6])})

    @sio.on("hello")
    def hello_from_client(socket: trio_sio.Socket, arg1: int, arg2: str, arg3: Any) -> None:
        report("server got", arg1, arg2, arg3)

    def client_handlers(client: trio_sio.Client) -> None:
        @client.on("hello")
        async def hello_from_server(arg1: int, arg2: str, arg3: dict[str, Any]) -> None:
            report("client got", arg1, arg2, arg3)  # 1 "2" {"3": "4", "5": b"\x06"}
            await client.emit("hello", 1, "2", {3: "4", 5: bytearray([6])})

    return sio, client_handlers


# -- Dates, classes with their own wire form, sets -------------------------------------------
@dataclasses.dataclass
class Position:
    x: int
    y: int


class Hero:
    """The guide's ``Hero`` with a private ``hp``: ``__sio_json__`` is JavaScript's ``toJSON``."""

    def __init__(self) -> None:
        self._hp = 42

    def __sio_json__(self) -> dict[str, int]:
        return {"hp": self._hp}


def special_values(report: Report) -> tuple[trio_sio.Server, Callable[[trio_sio.Client], None]]:
    """Dates become ISO strings, dataclasses dicts, ``__sio_json__`` picks the wire form,
    and a set is refused at the call (convert it by hand, as with a JS ``Set``)."""
    sio = trio_sio.Server()
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        await socket.emit("here's a hero", Hero(), epoch, Position(1, 2))
        tags = {"fast", "brave"}
        try:
            await socket.emit("tags", tags)
        except TypeError as exc:
            report("refused", str(exc))
            await socket.emit("tags", sorted(tags))

    @sio.on("here's a hero")
    def hero_from_client(socket: trio_sio.Socket, hero: dict[str, int], when: str) -> None:
        report("server got", hero, when)

    def client_handlers(client: trio_sio.Client) -> None:
        @client.on("here's a hero")
        async def hero(hero: dict[str, int], when: str, position: dict[str, int]) -> None:
            report("client got", hero, when, position)  # {"hp": 42} "1970-01-01T00:00:00.000Z"
            await client.emit("here's a hero", Hero(), epoch)

        @client.on("tags")
        def tags(tags: list[str]) -> None:
            report("client got tags", tags)

    return sio, client_handlers


# -- Acknowledgements ------------------------------------------------------------------------
def acknowledgements(report: Report) -> tuple[trio_sio.Server, Callable[[trio_sio.Client], None]]:
    """``update item``: the handler's return value is the ack, in both directions."""
    sio = trio_sio.Server()

    @sio.on("update item")
    def update_item(socket: trio_sio.Socket, arg1: str, arg2: dict[str, str]) -> dict[str, str]:
        report("server got", arg1, arg2)  # "1" {"name": "updated"}
        return {"status": "ok"}

    @sio.on("ask the client")
    async def ask(socket: trio_sio.Socket) -> None:
        response = await socket.emit_with_ack("update item", "2", {"name": "again"}, timeout=5)
        report("server got ack", response)

    def client_handlers(client: trio_sio.Client) -> None:
        @client.on("update item")
        def update_item(arg1: str, arg2: dict[str, str]) -> dict[str, str]:
            report("client got", arg1, arg2)
            return {"status": "ok"}

        @client.on("connect")
        async def go() -> None:
            response = await client.emit_with_ack("update item", "1", {"name": "updated"})
            report("client got ack", response["status"])  # ok
            await client.emit("ask the client")

    return sio, client_handlers


# -- With timeout ------------------------------------------------------------------------------
def with_timeout(report: Report) -> tuple[trio_sio.Server, Callable[[trio_sio.Client], None]]:
    """``timeout(5).emit(..., callback=)``: the callback gets an error when no ack comes in
    time, ``(None, response)`` otherwise. ``emit_with_ack(timeout=)`` raises instead."""
    sio = trio_sio.Server()

    @sio.on("my-event")
    def answered(socket: trio_sio.Socket) -> str:
        return "response"

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        def callback(err: Exception | None, *response: Any) -> None:
            report("server callback", type(err).__name__ if err else None, response)

        await socket.timeout(5).emit("my-event", callback=callback)  # nobody answers

        async def ask() -> None:
            try:
                await socket.emit_with_ack("my-event", timeout=5)
            except trio_sio.AckTimeoutError:
                report("server timed out")

        socket.start_soon(ask)  # a handler should not wait long: events wait behind it

    def client_handlers(client: trio_sio.Client) -> None:
        @client.on("connect")
        async def go() -> None:
            def callback(err: Exception | None, *response: Any) -> None:
                report("client callback", err, response)  # None ("response",)

            await client.timeout(5).emit("my-event", callback=callback)

    return sio, client_handlers


# -- Volatile events ---------------------------------------------------------------------------
def volatile_events(report: Report) -> tuple[trio_sio.Server, Callable[[trio_sio.Client], None]]:
    """``volatile.emit``: sent only if the connection can take it right now."""
    sio = trio_sio.Server()

    @sio.on("ping")
    def ping(socket: trio_sio.Socket, count: int) -> None:
        report("server got", count)

    @sio.on("connection")
    async def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        await socket.volatile.emit("hello", "might or might not be received")

    def client_handlers(client: trio_sio.Client) -> None:
        @client.on("hello")
        def hello(arg: str) -> None:
            report("client got", arg)

        @client.on("connect")
        async def go() -> None:
            for count in range(1, 4):
                await client.volatile.emit("ping", count)
                await trio.sleep(1)

    return sio, client_handlers


EXAMPLES = {
    "basic emit": basic_emit,
    "many arguments": many_arguments,
    "special values": special_values,
    "acknowledgements": acknowledgements,
    "with timeout": with_timeout,
    "volatile events": volatile_events,
}


async def main() -> None:
    """Run every example over real loopback sockets, printing what each side sees."""
    for name, build in EXAMPLES.items():
        print(f"--- {name}")
        sio, client_handlers = build(print)
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            client = trio_sio.Client(f"http://127.0.0.1:{port}", transports=["websocket"])
            client_handlers(client)
            async with client:
                await trio.sleep(6)
            sio.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    trio.run(main)
