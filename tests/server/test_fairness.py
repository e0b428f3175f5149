"""Fairness between sessions: a session whose reading held the event loop (decoding a large
message, an inline handler that computes) pauses its reading for about as long before it
goes on, so that the others and new connections get their turn.

The time the reading held the loop is real CPU time in production; here the module's clock
is replaced by a counter that the tests move by hand ("this decode took 30 ms"), while
Trio's clock is the autojump clock, so the pauses are read off virtual time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import sio_support
import trio
import trio.testing

import trio_sio
from trio_sio.engineio import socket as socket_module
from trio_sio.engineio.memory import http_request
from trio_sio.protocol import socketio as socketio_module
from trio_sio.testing import open_raw_client

Q = "/socket.io/?EIO=4&transport=polling"
#: makes a message large enough to be measured (the handlers ignore the extra argument)
PAD = ',"' + "x" * socket_module.HEAVY_BYTES + '"'


class Cpu:
    """Stands for the reading's clock: moves only when a test says some work took time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch) -> Cpu:
    clock = Cpu()
    monkeypatch.setattr(socket_module, "_clock", clock)
    return clock


def timed_server(cpu: Cpu, started: list[tuple[str, float]]) -> trio_sio.Server:
    """A server whose ``work`` handler records when it starts and "takes" ``cost`` seconds."""
    sio = sio_support.make_server(echo=True)

    @sio.on("work")
    def work(socket: trio_sio.Socket, name: str, cost: float) -> str:
        started.append((name, trio.current_time()))
        cpu.spend(cost)
        return name

    @sio.on("note")
    def note(socket: trio_sio.Socket, name: str) -> None:
        started.append((name, trio.current_time()))

    return sio


async def test_a_handler_that_held_the_loop_pauses_its_sessions_reading(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, cpu: Cpu
) -> None:
    started: list[tuple[str, float]] = []
    sio = timed_server(cpu, started)
    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send(f'421["work","heavy",0.05{PAD}]')
        await raw.send('422["work","next",0]')
        await raw.expect('431["heavy"]')
        await raw.expect('432["next"]')
    (heavy, at), (name, next_at) = started
    assert (heavy, name) == ("heavy", "next")
    assert next_at - at == pytest.approx(0.05)


async def test_a_small_message_is_not_measured(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, cpu: Cpu
) -> None:
    """Below HEAVY_BYTES, one message per read costs nothing for fairness (an echo's path):
    even a handler that computes at length then goes unnoticed."""
    started: list[tuple[str, float]] = []
    sio = timed_server(cpu, started)
    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        for i in range(3):
            await raw.send(f'42{i}["work","w{i}",0.05]')
            await raw.expect(f'43{i}["w{i}"]')
    assert {at for _, at in started} == {started[0][1]}


async def test_quick_steps_never_pause(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, cpu: Cpu
) -> None:
    started: list[tuple[str, float]] = []
    sio = timed_server(cpu, started)
    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        for i in range(20):  # 9 ms each, one read each: below SLOW_STEP
            await raw.send(f'42{i}["work","w{i}",0.009{PAD}]')
            await raw.expect(f'43{i}["w{i}"]')
    assert {at for _, at in started} == {started[0][1]}


async def polling_session(sio: trio_sio.Server) -> str:
    """Open a polling session connected to ``/``; its URL."""
    opened = await http_request(sio.engine, "GET", Q)
    sid = opened.body.decode().split('"sid":"')[1].split('"')[0]
    url = f"{Q}&sid={sid}"
    assert (await http_request(sio.engine, "POST", url, b"40")).status == 200
    assert (await http_request(sio.engine, "GET", url)).body.startswith(b"40{")
    return url


async def post_and_collect(sio: trio_sio.Server, url: str, packets: list[str]) -> list[bytes]:
    """POST ``packets`` as one payload; GET until as many answers came."""
    reply = await http_request(sio.engine, "POST", url, "\x1e".join(packets).encode())
    assert (reply.status, reply.body) == (200, b"ok")
    answers: list[bytes] = []
    while len(answers) < len(packets):
        answers += (await http_request(sio.engine, "GET", url)).body.split(b"\x1e")
    return answers


async def test_messages_read_together_pause_once_their_time_adds_up(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, cpu: Cpu
) -> None:
    started: list[tuple[str, float]] = []
    sio = timed_server(cpu, started)
    await nursery.start(sio.run)
    url = await polling_session(sio)
    sent_at = trio.current_time()
    # 4 ms each, in one payload: a pause after every third
    packets = [f'42{i}["work","w{i}",0.004]' for i in range(6)]
    answers = await post_and_collect(sio, url, packets)
    assert answers == [b'43%d["w%d"]' % (i, i) for i in range(6)]
    offsets = [round(at - sent_at, 6) for _, at in started]
    assert offsets == [0, 0, 0, 0.012, 0.012, 0.012]


async def test_the_pause_is_capped(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, cpu: Cpu
) -> None:
    started: list[tuple[str, float]] = []
    sio = timed_server(cpu, started)
    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send(f'421["work","huge",3{PAD}]')
        await raw.send('422["work","next",0]')
        await raw.expect('431["huge"]')
        await raw.expect('432["next"]')
    assert started[1][1] - started[0][1] == pytest.approx(socket_module.MAX_PAUSE)


async def test_other_sessions_go_first_while_one_pauses(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, cpu: Cpu
) -> None:
    started: list[tuple[str, float]] = []
    sio = timed_server(cpu, started)
    await nursery.start(sio.run)
    async with open_raw_client(sio) as heavy, open_raw_client(sio) as light:
        await heavy.connect()
        await light.connect()
        await heavy.send(f'421["work","heavy",0.1{PAD}]')
        await heavy.send(f'422["work","heavy again",0.1{PAD}]')
        await heavy.expect('431["heavy"]')
        # The heavy session is pausing now: a new connection and the light session's
        # events are served meanwhile, before its next message.
        async with open_raw_client(sio) as newcomer:
            await newcomer.connect()
            await light.send('42["note","light"]')
            await newcomer.send('42["note","newcomer"]')
            await heavy.expect('432["heavy again"]')
    assert [name for name, _ in started] == ["heavy", "light", "newcomer", "heavy again"]


async def test_a_polling_payload_is_dispatched_in_steps_when_it_holds_the_loop(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, cpu: Cpu
) -> None:
    started: list[tuple[str, float]] = []
    sio = timed_server(cpu, started)
    await nursery.start(sio.run)
    url = await polling_session(sio)
    packets = [f'42{i}["work","p{i}",0.02]' for i in range(3)]
    answers = await post_and_collect(sio, url, packets)
    assert answers == [b'43%d["p%d"]' % (i, i) for i in range(3)]
    times = [at for _, at in started]
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [0.02, 0.02]


async def test_decoding_that_held_the_loop_pauses_before_the_handler(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    cpu: Cpu,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed: Callable[[Any, str | bytes], None] = socketio_module.Decoder.feed

    def slow_feed(self: Any, data: str | bytes) -> None:
        if isinstance(data, str) and "big" in data:
            cpu.spend(0.03)  # as a megabyte of JSON would
        feed(self, data)

    monkeypatch.setattr(socketio_module.Decoder, "feed", slow_feed)
    started: list[tuple[str, float]] = []
    sio = timed_server(cpu, started)
    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        sent_at = trio.current_time()
        await raw.send(f'421["work","big",0{PAD}]')
        await raw.expect('431["big"]')
    assert started[0][1] - sent_at == pytest.approx(0.03)
