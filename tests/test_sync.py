"""Slots: a FIFO counting semaphore (what trio.Semaphore does, for less memory)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_sio._sync import Slots


async def test_slots_are_handed_over_in_waiting_order() -> None:
    slots = Slots(2)
    slots.acquire_nowait()
    await slots.acquire()
    assert slots.value == 0
    with pytest.raises(trio.WouldBlock):
        slots.acquire_nowait()
    got: list[int] = []

    async def waiter(i: int) -> None:
        await slots.acquire()
        got.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(waiter, i)
            await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.WouldBlock):
            slots.acquire_nowait()  # a newcomer never overtakes a waiter
        for _ in range(3):
            slots.release()
            await trio.testing.wait_all_tasks_blocked()
    assert got == [0, 1, 2]
    assert slots.value == 0
    slots.release()
    slots.release()
    assert slots.value == 2
    with pytest.raises(ValueError, match="released more"):
        slots.release()


async def test_a_cancelled_waiter_takes_nothing() -> None:
    slots = Slots(1)
    slots.acquire_nowait()
    with trio.move_on_after(0.01):
        await slots.acquire()
    slots.release()
    assert slots.value == 1
    with trio.CancelScope() as scope:
        scope.cancel()
        await slots.acquire()  # cancelled before taking anything
    assert slots.value == 1
