"""Event handlers run in the task that read the event until they wait for something; then a
new task reads on, from the next packet, in order.

What that must keep: handlers start in arrival order, a waiting handler delays nothing else
(binary attachments and the rest of a polling payload included), handlers are cancelled with
their socket, and context variables stay each handler's own. What it buys: a handler that
does not wait costs no task (counted here with a Trio instrument).
"""

from __future__ import annotations

import contextvars
from typing import Any

import pytest
import sio_support
import trio
import trio.testing

import trio_sio
from trio_sio.engineio._inline import PATIENCE, run_inline
from trio_sio.engineio.memory import http_request
from trio_sio.testing import open_raw_client

Q = "/socket.io/?EIO=4&transport=polling"


def make_server(**options: Any) -> trio_sio.Server:
    sio = sio_support.make_server(**options)

    @sio.on("echo")
    async def echo(socket: trio_sio.Socket, value: Any) -> Any:
        return value

    @sio.on("shout")
    async def shout(socket: trio_sio.Socket, value: Any) -> None:
        await socket.emit("heard", value)

    return sio


class SpawnCounter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.spawned: list[str] = []

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned.append(task.name)


async def test_a_handler_that_does_not_wait_costs_no_task(nursery: trio.Nursery) -> None:
    sio = make_server()
    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send('420["echo",0]')
        await raw.expect("430[0]")
        counter = SpawnCounter()
        trio.lowlevel.add_instrument(counter)
        try:
            for i in range(1, 51):
                await raw.send(f'42{i}["echo",{i}]')
                await raw.expect(f"43{i}[{i}]")
                await raw.send(f'42["shout",{i}]')
                await raw.expect(f'42["heard",{i}]')
        finally:
            trio.lowlevel.remove_instrument(counter)
    assert counter.spawned == []


async def test_handlers_start_in_arrival_order_across_hand_overs(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    started: list[int] = []
    release = trio.Event()

    @sio.on("work")
    async def work(socket: trio_sio.Socket, i: int, blob: bytes) -> int:
        started.append(i)
        if i % 2 == 0:
            await release.wait()  # hands the reading over
        else:
            await trio.lowlevel.checkpoint()  # a schedule point only: keeps it
        return len(blob)

    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        for i in range(6):  # each event comes in two messages: its header, its attachment
            await raw.send(f'451-{i}["work",{i},{{"_placeholder":true,"num":0}}]')
            await raw.send(bytes(i))
        for i in (1, 3, 5):  # the ones that did not wait are answered at once
            await raw.expect(f"43{i}[{i}]")
        assert started == [0, 1, 2, 3, 4, 5]
        release.set()
        assert sorted([await raw.receive() for _ in range(3)]) == ["430[0]", "432[2]", "434[4]"]


async def test_a_waiting_handler_does_not_hold_the_rest_of_a_polling_payload(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    release = trio.Event()

    @sio.on("wait")
    async def wait(socket: trio_sio.Socket) -> str:
        await release.wait()
        return "released"

    await nursery.start(sio.run)
    opened = await http_request(sio.engine, "GET", Q)
    sid = opened.body.decode().split('"sid":"')[1].split('"')[0]
    url = f"{Q}&sid={sid}"
    assert (await http_request(sio.engine, "POST", url, b"40")).status == 200
    assert (await http_request(sio.engine, "GET", url)).body.startswith(b"40{")
    body = "\x1e".join(['421["wait"]', '422["echo",2]', '423["echo",3]']).encode()
    with trio.fail_after(5):
        reply = await http_request(sio.engine, "POST", url, body)
    assert (reply.status, reply.body) == (200, b"ok")
    assert (await http_request(sio.engine, "GET", url)).body == b"432[2]\x1e433[3]"
    release.set()
    assert (await http_request(sio.engine, "GET", url)).body == b'431["released"]'


async def test_a_handler_that_keeps_computing_lets_reading_go_on(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    pinged = trio.Event()
    rounds: list[int] = []

    @sio.on("compute")
    async def compute(socket: trio_sio.Socket) -> None:
        for i in range(10_000):  # schedule points only, never a wait
            if pinged.is_set():
                rounds.append(i)
                return
            await trio.lowlevel.checkpoint()

    @sio.on("ping")
    def ping(socket: trio_sio.Socket) -> None:
        pinged.set()

    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send('42["compute"]')
        await raw.send('42["ping"]')
        with trio.fail_after(5):
            while not rounds:
                await trio.sleep(0.1)
    assert rounds[0] < 10_000


@pytest.mark.parametrize("first", [True, False], ids=["first event", "later event"])
async def test_a_waiting_handler_is_cancelled_with_its_socket(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, first: bool
) -> None:
    # The first event of a reader runs in a cancel scope of its own; later ones in the
    # reader's, which the handler keeps when the reader retires.
    sio = make_server()
    cancelled = trio.Event()

    @sio.on("forever")
    async def forever(socket: trio_sio.Socket) -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        if not first:
            await raw.send('429["echo",9]')
            await raw.expect("439[9]")
        await raw.send('42["forever"]')
        await raw.send('420["echo",0]')
        await raw.expect("430[0]")
        await raw.send("41")  # the namespace only: the session stays
        with trio.fail_after(5):
            await cancelled.wait()
        await raw.connect()
        await raw.send('421["echo",1]')
        await raw.expect("431[1]")


async def test_context_variables_set_by_a_handler_stay_its_own(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    @sio.on("set")
    def set_(socket: trio_sio.Socket, value: str) -> str:
        before = var.get()
        var.set(value)
        return before

    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        for i, value in enumerate(["a", "b"]):
            await raw.send(f'42{i}["set","{value}"]')
            await raw.expect(f'43{i}["unset"]')


# -- run_inline itself ------------------------------------------------------------------------
async def test_run_inline_calls_on_wait_once_before_the_first_wait() -> None:
    log: list[str] = []
    release = trio.Event()

    async def body() -> None:
        for _ in range(PATIENCE):
            await trio.lowlevel.checkpoint()
        log.append("before wait")
        await release.wait()
        log.append("after wait")
        await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_inline, body(), lambda: log.append("on_wait"))
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert log == ["before wait", "on_wait", "after wait"]


async def test_run_inline_calls_on_wait_after_too_many_schedule_points() -> None:
    log: list[int] = []
    count = 0

    async def body() -> None:
        nonlocal count
        for count in range(PATIENCE + 3):  # noqa: B007
            await trio.lowlevel.checkpoint()

    await run_inline(body(), lambda: log.append(count))
    assert log == [PATIENCE]


async def test_run_inline_propagates_exceptions_and_cancellation() -> None:
    async def fail() -> None:
        await trio.lowlevel.checkpoint()
        raise KeyError("x")

    with pytest.raises(KeyError):
        await run_inline(fail(), None)

    finished = False

    async def wait() -> None:
        nonlocal finished
        await trio.sleep_forever()
        finished = True

    with trio.move_on_after(0.01) as scope:
        await run_inline(wait(), None)
    assert scope.cancelled_caught and not finished


async def test_a_post_is_answered_before_the_replies_it_caused(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # As with the JS server, which answers a POST before its handlers run: python-engineio's
    # polling client drops the CLOSE it queued when a reply overtakes the POST's "ok".
    sio = make_server()

    @sio.of("/private").use
    def refuse(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        raise trio_sio.ConnectionRefused("not authorized")

    await nursery.start(sio.run)
    opened = await http_request(sio.engine, "GET", Q)
    sid = opened.body.decode().split('"sid":"')[1].split('"')[0]
    url = f"{Q}&sid={sid}"
    for body in (b"40/private,", b'40/private,{"token":"bad"}'):
        done: list[str] = []

        async def get(done: list[str]) -> None:
            reply = await http_request(sio.engine, "GET", url)
            assert reply.body.startswith(b"44/private,")
            done.append("GET")

        async with trio.open_nursery() as requests:
            requests.start_soon(get, done)
            await trio.testing.wait_all_tasks_blocked()  # the GET is parked
            assert (await http_request(sio.engine, "POST", url, body)).body == b"ok"
            done.append("POST")
        assert done == ["POST", "GET"]
