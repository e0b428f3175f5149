"""One set of rules for running a received event's handler and for an emit with a callback,
checked in both directions: the server handling what a client sent, and the client handling
what the server sent (both sides share ``run_event_handler``, ``emit_with_callback`` and the
bound and ordered lane of ``Lanes``).

In memory, in virtual time.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing

import trio_sio
from trio_sio.testing import SioClient, SioServe


@dataclass
class Side:
    """One end of a connection, as the rules see it."""

    #: register a handler for an event (without the server's leading socket argument)
    on: Callable[[str, Callable[..., Any]], None]
    emit: Callable[..., Awaitable[None]]
    emit_with_ack: Callable[..., Awaitable[Any]]
    on_any_outgoing: Callable[[Callable[..., Any]], Any]


Pair = Callable[..., Any]  # pair(**options): an async context manager, (receiver, sender)


@pytest.fixture(params=["server-handles", "client-handles"])
def pair(
    request: pytest.FixtureRequest, sio_serve: SioServe, sio_client: SioClient
) -> Callable[[], Any]:
    @asynccontextmanager
    async def open_pair(**options: Any) -> AsyncIterator[tuple[Side, Side]]:
        sio = trio_sio.Server(**options)
        sockets: list[trio_sio.Socket] = []
        sio.on("connection", lambda socket, auth: sockets.append(socket))

        def server_on(event: str, fn: Callable[..., Any]) -> None:
            if "ack" in inspect.signature(fn).parameters:
                sio.on(event, lambda socket, *args, ack: fn(*args, ack=ack))
            else:
                sio.on(event, lambda socket, *args: fn(*args))

        network = await sio_serve(sio)
        client = sio_client(network, **options)
        async with client:
            while not sockets:
                await trio.sleep(0.01)
            socket = sockets[0]
            server = Side(server_on, socket.emit, socket.emit_with_ack, socket.on_any_outgoing)
            peer = Side(client.on, client.emit, client.emit_with_ack, client.on_any_outgoing)
            if request.param == "server-handles":
                yield server, peer
            else:
                yield peer, server

    return open_pair


def handler_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_return_value_is_the_ack(
    pair: Pair, autojump_clock: trio.testing.MockClock
) -> None:
    async with pair() as (receiver, sender):
        receiver.on("double", lambda n: n * 2)
        receiver.on("both", lambda a, b: (b, a))
        receiver.on("nothing", lambda: None)
        assert await sender.emit_with_ack("double", 21, timeout=5) == 42
        assert await sender.emit_with_ack("both", 1, 2, timeout=5) == (2, 1)
        assert await sender.emit_with_ack("nothing", timeout=5) is None


async def test_a_handler_taking_ack_answers_on_its_own_terms(
    pair: Pair, autojump_clock: trio.testing.MockClock
) -> None:
    async with pair() as (receiver, sender):

        async def later(n: int, *, ack: trio_sio.Ack) -> str:
            await trio.sleep(1)
            await ack(n + 1)
            return "not the ack"

        receiver.on("later", later)
        assert await sender.emit_with_ack("later", 1, timeout=5) == 2


async def test_a_handler_that_raises_is_logged_and_not_acked(
    pair: Pair, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with pair() as (receiver, sender):

        def boom() -> None:
            raise RuntimeError("boom")

        receiver.on("boom", boom)
        with pytest.raises(trio_sio.AckTimeoutError):
            await sender.emit_with_ack("boom", timeout=5)
    (message,) = handler_errors(caplog)
    assert message.endswith(": handler for 'boom' failed")


async def test_a_handler_that_finds_its_connection_closed_is_not_logged(
    pair: Pair, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with pair() as (receiver, sender):

        def gone() -> None:
            raise trio_sio.ConnectionClosed("transport close")

        receiver.on("gone", gone)
        with pytest.raises(trio_sio.AckTimeoutError):
            await sender.emit_with_ack("gone", timeout=5)
    assert handler_errors(caplog) == []


async def test_a_return_value_that_cannot_be_sent_is_logged_and_not_acked(
    pair: Pair, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with pair() as (receiver, sender):
        receiver.on("set", lambda: {1, 2})
        with pytest.raises(trio_sio.AckTimeoutError):
            await sender.emit_with_ack("set", timeout=5)
    (message,) = handler_errors(caplog)
    assert message.endswith(": the ack of 'set' cannot be sent")


async def test_an_emit_refused_by_an_outgoing_listener_never_calls_its_callback(
    pair: Pair, autojump_clock: trio.testing.MockClock
) -> None:
    async with pair() as (receiver, sender):
        receiver.on("echo", lambda value: value)
        called: list[Any] = []

        def refuse(event: str, *args: Any) -> None:
            if event == "refused":
                raise ValueError("not this one")

        sender.on_any_outgoing(refuse)
        with pytest.raises(ValueError, match="not this one"):
            await sender.emit("refused", callback=lambda *args: called.append(args))
        with pytest.raises(ValueError, match="not this one"):
            await trio_sio_timeout(sender)("refused", callback=lambda *a: called.append(a))
        await trio.sleep(60)  # past any timeout
        assert called == []
        await sender.emit("echo", 7, callback=lambda *args: called.append(args))
        await trio.sleep(1)
        assert called == [(7,)]


def trio_sio_timeout(side: Side) -> Callable[..., Awaitable[None]]:
    """``emit`` with a 5-second ack timeout on that side (``socket.timeout(5).emit``)."""
    owner = side.emit.__self__  # type: ignore[attr-defined]
    emit: Callable[..., Awaitable[None]] = owner.timeout(5).emit
    return emit


async def test_ordered_handlers_run_one_at_a_time_in_arrival_order(
    pair: Pair, autojump_clock: trio.testing.MockClock
) -> None:
    async with pair(ordered_handlers=True) as (receiver, sender):
        log: list[str] = []

        async def step(name: str, pause: float) -> None:
            log.append(f"start {name}")
            await trio.sleep(pause)
            log.append(f"end {name}")

        receiver.on("step", step)
        for name, pause in (("a", 3), ("b", 1), ("c", 2)):
            await sender.emit("step", name, pause)
        await trio.sleep(10)
        assert log == ["start a", "end a", "start b", "end b", "start c", "end c"]


async def test_at_most_max_concurrent_handlers_run_and_the_rest_wait(
    pair: Pair, autojump_clock: trio.testing.MockClock
) -> None:
    async with pair(max_concurrent_handlers=2) as (receiver, sender):
        running: list[int] = []
        peak = 0
        release = trio.Event()

        async def hold(n: int) -> int:
            nonlocal peak
            running.append(n)
            peak = max(peak, len(running))
            await release.wait()
            running.remove(n)
            return n

        receiver.on("hold", hold)
        replies: list[int] = []
        for n in range(5):
            await sender.emit("hold", n, callback=replies.append)
        await trio.sleep(5)
        assert sorted(running) == [0, 1]  # the others wait, unread
        release.set()
        await trio.sleep(5)
        assert (peak, sorted(replies)) == (2, [0, 1, 2, 3, 4])


@pytest.mark.parametrize("round_no", range(10))  # Trio's order of one step varies by run
async def test_callbacks_run_in_the_order_the_acks_came(
    pair: Pair, autojump_clock: trio.testing.MockClock, round_no: int
) -> None:
    """The receiver's handlers answer in an order of Trio's choosing, all at about once (so
    acks arrive together); the sender's callbacks run in the order the acks came."""
    count = 12
    answered: list[int] = []
    called: list[int] = []
    async with pair() as (receiver, sender):
        arrived = 0
        all_in = trio.Event()

        async def answer(n: int) -> int:
            nonlocal arrived
            arrived += 1
            if arrived == count:
                all_in.set()
            await all_in.wait()
            answered.append(n)
            return n

        receiver.on("answer", answer)
        for n in range(count):
            await sender.emit("answer", n, callback=called.append)
        while len(called) < count:
            await trio.sleep(0.01)
    assert sorted(answered) == list(range(count))
    assert called == answered
