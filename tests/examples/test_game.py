"""The game example (examples/game) in memory and in virtual time: real trio_sio clients
play against the game's server and tick loop through trio_sio.testing.MemoryNetwork."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.testing

import trio_sio
from trio_sio.testing import MemoryNetwork

GAME = Path(__file__).parents[2] / "examples" / "game"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


game = _load("game_server", GAME / "server.py")
bots = _load("game_bots", GAME / "bots.py")

RIGHT_WALL = game.WIDTH - game.PLAYER_RADIUS


class Player:
    """A test player: a trio_sio.Client that records what the game sends it."""

    def __init__(self, network: MemoryNetwork, name: str) -> None:
        self.client = trio_sio.Client(
            "http://test",
            transports=("websocket",),
            auth={"name": name},
            connector=network.connect,
        )
        self.id: int | None = None
        self.worlds: list[dict[str, Any]] = []
        self.roster: list[list[Any]] = []
        self.client.on("welcome", self._welcome)
        self.client.on("world", self.worlds.append)
        self.client.on("players", self._players)

    def _welcome(self, info: dict[str, Any]) -> None:
        self.id = info["id"]

    def _players(self, roster: list[list[Any]]) -> None:
        self.roster = roster

    @property
    def world(self) -> dict[str, Any]:
        return self.worlds[-1]

    def position(self, player_id: int | None) -> tuple[int, int]:
        """Where the last world received puts a player."""
        for pid, x, y, _score in self.world["p"]:
            if pid == player_id:
                return (x, y)
        raise AssertionError(f"player {player_id} is not in the world {self.world}")

    def ids(self) -> set[int]:
        return {entry[0] for entry in self.world["p"]}

    async def send(self, *args: Any) -> None:
        await self.client.emit("input", *args)


@asynccontextmanager
async def playing(network: MemoryNetwork, name: str) -> AsyncIterator[Player]:
    player = Player(network, name)
    async with player.client:
        with trio.fail_after(5):
            while player.id is None or not player.worlds or player.id not in player.ids():
                await trio.sleep(0.01)
        yield player


async def start_game(nursery: trio.Nursery, tick_rate: float = 30) -> MemoryNetwork:
    sio, run_tick_loop = game.build_game(tick_rate, seed=7)
    await nursery.start(sio.run)
    await nursery.start(run_tick_loop)
    return MemoryNetwork(nursery, sio)


async def test_worlds_at_tick_rate_and_inputs_move_players(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    network = await start_game(nursery)
    async with playing(network, "ada") as ada, playing(network, "bob") as bob:
        assert sorted(name for _id, name, _color in bob.roster) == ["ada", "bob"]
        bob_at = bob.position(bob.id)

        # Ada walks to the middle of the arena; both see her get there.
        await ada.send({"tx": 480, "ty": 270})
        ada.worlds.clear()
        bob.worlds.clear()
        await trio.sleep(10)
        # 30 worlds a second, to each player: none dropped, none extra.
        assert 298 <= len(ada.worlds) <= 302
        assert 298 <= len(bob.worlds) <= 302
        ticks = [world["t"] for world in bob.worlds]
        assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))
        x, y = bob.position(ada.id)
        assert abs(x - 480) <= 5 and abs(y - 270) <= 5
        assert ada.position(ada.id) == (x, y)

        # Holding "right" for a second: she runs right (at up to 260 px/s), not up or down.
        await ada.send({"x": 1, "y": 0})
        await trio.sleep(1)
        x2, y2 = bob.position(ada.id)
        assert 200 <= x2 - x <= 260 and y2 == y

        # Keys released: she slows down and stops.
        await ada.send({"x": 0, "y": 0})
        await trio.sleep(1)
        stopped = bob.position(ada.id)
        assert x2 < stopped[0] < x2 + 100
        await trio.sleep(0.5)
        assert bob.position(ada.id) == stopped

        # Diagonals are no faster; the wall stops her.
        await ada.send({"x": 1, "y": -1})
        await trio.sleep(0.5)
        x3, y3 = bob.position(ada.id)
        assert 0 < x3 - stopped[0] < 100 and 0 < stopped[1] - y3 < 100
        await ada.send({"x": 1, "y": 0})
        await trio.sleep(4)
        assert bob.position(ada.id)[0] == RIGHT_WALL

        # Bob never moved.
        assert bob.position(bob.id) == bob_at == ada.position(bob.id)


async def test_a_player_who_leaves_disappears(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    network = await start_game(nursery)
    async with playing(network, "ada") as ada:
        async with playing(network, "bob") as bob:
            await trio.sleep(0.5)
            assert ada.ids() == {ada.id, bob.id}
        bob_id = bob.id
        await trio.sleep(0.5)
        assert ada.ids() == {ada.id}
        assert [entry[0] for entry in ada.roster] == [ada.id]
        # The ids are not reused.
        async with playing(network, "bob") as bob_again:
            assert bob_again.id not in (ada.id, bob_id)


async def test_bad_input_is_ignored(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="game")
    network = await start_game(nursery)
    async with playing(network, "ada") as ada, playing(network, "eve") as eve:
        await trio.sleep(0.5)
        at = ada.position(eve.id)
        bad: list[tuple[Any, ...]] = [
            ("garbage",),
            (42,),
            (None,),
            ([1, 0],),
            ({"x": 2, "y": 0},),
            ({"x": True, "y": 0},),
            ({"x": "1", "y": 0},),
            ({"x": 1},),
            ({"tx": "10", "ty": 10},),
            ({"tx": 10**30, "ty": 10},),
            ({"tx": 1e300, "ty": 10},),
            ({"tx": [1], "ty": {"a": 1}},),
            ({"x": 1, "y": 0.5},),
            (),
        ]
        for args in bad:
            await eve.client.emit("input", *args)
        ada.worlds.clear()
        await trio.sleep(1)
        # The loop kept going and eve did not move.
        assert 29 <= len(ada.worlds) <= 31
        assert ada.position(eve.id) == at
        warnings = [r.getMessage() for r in caplog.records if r.name == "game"]
        # Rate-limited: one line per player and second, however much garbage comes.
        assert len(warnings) == 1 and "ignored bad input from player" in warnings[0]

        # Still in the game: good input works.
        await eve.send({"tx": at[0] + 100, "ty": at[1]})
        await trio.sleep(2)
        assert abs(ada.position(eve.id)[0] - (at[0] + 100)) <= 5


async def test_join_needs_a_name_and_room(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(game, "MAX_PLAYERS", 2)
    network = await start_game(nursery)
    for auth in (None, {}, {"name": "   "}, {"name": 7}):
        client = trio_sio.Client("http://test", auth=auth, connector=network.connect)
        with pytest.raises(trio_sio.ConnectionRefused, match="needs a name"):
            async with client:
                pass
    async with playing(network, "ada"), playing(network, "a very long name, cut short") as p:
        assert [name for _id, name, _color in p.roster] == ["ada", "a very long name"]
        client = trio_sio.Client("http://test", auth={"name": "cy"}, connector=network.connect)
        with pytest.raises(trio_sio.ConnectionRefused, match="full"):
            async with client:
                pass


async def test_bots(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    network = await start_game(nursery)
    stats = await bots.run_bots("http://test", 3, 5, connector=network.connect, seed=3)
    assert [s.name for s in stats] == ["bot-1", "bot-2", "bot-3"]
    for s in stats:
        assert s.error is None and s.id is not None
        assert 145 <= s.worlds <= 151
        assert 29 <= s.rate <= 31
    assert sum(s.score for s in stats) > 0  # the chasers got coins
    assert "total: 3/3 bots joined" in bots.summary(stats)
