"""The seed page's examples (examples/emitting_events.py), run both ways in virtual time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_sio
from trio_sio.testing import MemoryNetwork

_PATH = Path(__file__).parents[2] / "examples" / "emitting_events.py"
_spec = importlib.util.spec_from_file_location("emitting_events", _PATH)
assert _spec is not None and _spec.loader is not None
examples = importlib.util.module_from_spec(_spec)
sys.modules["emitting_events"] = examples
_spec.loader.exec_module(examples)

TRANSPORTS = [("websocket",), ("polling",), ("polling", "websocket")]


async def run(
    name: str, transports: tuple[str, ...], nursery: trio.Nursery
) -> list[tuple[Any, ...]]:
    reports: list[tuple[Any, ...]] = []
    sio, client_handlers = examples.EXAMPLES[name](lambda *args: reports.append(args))
    await nursery.start(sio.run)
    network = MemoryNetwork(nursery, sio)
    client = trio_sio.Client("http://test", transports=transports, connector=network.connect)
    client_handlers(client)
    async with client:
        await trio.sleep(12)
    return reports


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_basic_emit(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, transports: tuple[str, ...]
) -> None:
    assert await run("basic emit", transports, nursery) == [
        ("client got", "world"),
        ("server got", "world"),
    ]


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_many_arguments(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, transports: tuple[str, ...]
) -> None:
    assert await run("many arguments", transports, nursery) == [
        ("client got", 1, "2", {"3": "4", "5": b"\x06"}),
        ("server got", 1, "2", {"3": "4", "5": b"\x06"}),
    ]


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_special_values(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, transports: tuple[str, ...]
) -> None:
    reports = await run("special values", transports, nursery)
    assert reports[0][0] == "refused" and "set" in reports[0][1]
    assert ("client got", {"hp": 42}, "1970-01-01T00:00:00.000Z", {"x": 1, "y": 2}) in reports
    assert ("client got tags", ["brave", "fast"]) in reports
    assert ("server got", {"hp": 42}, "1970-01-01T00:00:00.000Z") in reports


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_acknowledgements(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, transports: tuple[str, ...]
) -> None:
    assert await run("acknowledgements", transports, nursery) == [
        ("server got", "1", {"name": "updated"}),
        ("client got ack", "ok"),
        ("client got", "2", {"name": "again"}),
        ("server got ack", {"status": "ok"}),
    ]


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_with_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, transports: tuple[str, ...]
) -> None:
    reports = await run("with timeout", transports, nursery)
    assert sorted(reports, key=repr) == sorted(
        [
            ("client callback", None, ("response",)),
            ("server callback", "AckTimeoutError", ()),
            ("server timed out",),
        ],
        key=repr,
    )


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_volatile_events(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, transports: tuple[str, ...]
) -> None:
    reports = await run("volatile events", transports, nursery)
    assert [r for r in reports if r[0] == "server got"] == [
        ("server got", 1),
        ("server got", 2),
        ("server got", 3),
    ]
    # the server's volatile hello is sent only if the connection could take it at once
    assert all(
        r == ("client got", "might or might not be received")
        for r in reports
        if r[0] == "client got"
    )
