"""The waiters of acks go on in the order the acks came, also when one read brings several
(Trio may run the tasks woken in one step in any order). Shared by server and client."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_sio._acks import AckRegistry, AckSlot
from trio_sio.protocol.errors import ConnectionClosed


async def _waiters(
    acks: AckRegistry, count: int, log: list[int], nursery: trio.Nursery
) -> tuple[list[int], list[trio.CancelScope]]:
    ids, scopes = [], []
    for n in range(count):
        ack_id, slot = acks.new()
        ids.append(ack_id)
        scope = trio.CancelScope()
        scopes.append(scope)

        async def wait(n: int = n, slot: AckSlot = slot, scope: trio.CancelScope = scope) -> None:
            with scope:
                try:
                    args = await slot.wait_in_turn()
                except ConnectionClosed:
                    log.append(-n - 1)
                    return
                log.append(args[0])

        nursery.start_soon(wait)
    await trio.testing.wait_all_tasks_blocked()
    return ids, scopes


async def _resolve_as_a_reader(acks: AckRegistry, ack_id: int, args: list[int]) -> None:
    """What a reader does with each ACK packet."""
    if acks.turn_pending:
        await trio.lowlevel.cancel_shielded_checkpoint()
    assert acks.resolve(ack_id, args)


@pytest.mark.parametrize("round_no", range(10))  # Trio's order of a step varies by run
async def test_waiters_go_on_in_the_order_the_acks_came(round_no: int) -> None:
    acks = AckRegistry()
    log: list[int] = []
    async with trio.open_nursery() as nursery:
        ids, _ = await _waiters(acks, 12, log, nursery)
        order = [5, 0, 11, 3, 1, 2, 4, 10, 9, 6, 8, 7]
        for n in order:  # the acks of one read
            await _resolve_as_a_reader(acks, ids[n], [n])
    assert log == order


async def test_a_reader_yields_only_while_a_woken_waiter_has_not_run() -> None:
    acks = AckRegistry()
    log: list[int] = []
    async with trio.open_nursery() as nursery:
        ids, _ = await _waiters(acks, 2, log, nursery)
        assert not acks.turn_pending
        acks.resolve(ids[0], [0])
        assert acks.turn_pending
        await trio.testing.wait_all_tasks_blocked()
        assert log == [0]
        assert not acks.turn_pending  # one ack a read: the next costs no yield
        acks.resolve(ids[1], [1])
    assert log == [0, 1]


async def test_a_cancelled_or_failed_waiter_leaves_no_turn_pending() -> None:
    acks = AckRegistry()
    log: list[int] = []
    async with trio.open_nursery() as nursery:
        ids, scopes = await _waiters(acks, 3, log, nursery)
        scopes[0].cancel()
        await trio.testing.wait_all_tasks_blocked()
        acks.fail({ids[1]}, "gone")  # a failure is no turn: the order of failures is free
        assert not acks.turn_pending
        await trio.testing.wait_all_tasks_blocked()  # so the log's order is fixed
        await _resolve_as_a_reader(acks, ids[2], [2])
    assert log == [-2, 2]
    assert not acks.turn_pending


async def test_an_ack_that_came_before_its_waiter_returns_at_once() -> None:
    acks = AckRegistry()
    ack_id, slot = acks.new()
    acks.resolve(ack_id, ["early"])
    assert await slot.wait() == ["early"]
    _, other = acks.new()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(other.wait)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await other.wait()
        nursery.cancel_scope.cancel()


async def test_plain_waiters_are_woken_together_and_leave_no_turn() -> None:
    """``emit_with_ack`` waits with :meth:`AckSlot.wait`: the waiters of one read's acks go
    on in the same step (the reader never yields for them)."""
    acks = AckRegistry()
    slots = [acks.new() for _ in range(4)]
    woke: list[int] = []
    async with trio.open_nursery() as nursery:
        for n, (_, slot) in enumerate(slots):

            async def wait(n: int = n, slot: AckSlot = slot) -> None:
                await slot.wait()
                woke.append(n)

            nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        for n, (ack_id, _) in enumerate(slots):
            acks.resolve(ack_id, [n])
            assert not acks.turn_pending
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(woke) == [0, 1, 2, 3]
        assert not acks.turn_pending
