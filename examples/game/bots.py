"""Bot players for the game example, each a ``trio_sio.Client`` in its own task.

    python examples/game/bots.py --url http://127.0.0.1:8001 --count 5 [--duration 30]

Half of the bots chase the nearest coin, the others wander to random points. Each sends
its target ten times a second as a volatile emit (a target that cannot be sent right away
is superseded 100 ms later anyway) and counts the worlds it receives. At the end they
leave, and a summary shows what each bot got: worlds, their rate, its score.

The exit status is 1 if a bot could not join or received no world at all.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import random
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

import trio_sio

log = logging.getLogger("bots")

INPUT_INTERVAL = 0.1  # s between two inputs
WANDER_EVERY = 2.0  # s a wandering bot keeps its target

# What a Client's ``connector`` is: tests pass trio_sio.testing.MemoryNetwork.connect.
Connector = Callable[[str, int, ssl.SSLContext | None], Awaitable[trio.abc.Stream]]


@dataclass
class BotStats:
    """What one bot saw."""

    name: str
    id: int | None = None
    worlds: int = 0
    score: int = 0
    seconds: float = 0.0  # connected for this long
    error: str | None = None

    @property
    def rate(self) -> float:
        """Worlds per second while connected."""
        return self.worlds / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Bot:
    name: str
    url: str
    chaser: bool
    rng: random.Random
    connector: Connector | None = None
    stats: BotStats = field(init=False)
    world: dict[str, Any] | None = None
    arena: tuple[int, int] = (960, 540)
    target: tuple[float, float] | None = None
    target_since: float = -math.inf

    def __post_init__(self) -> None:
        self.stats = BotStats(self.name)

    async def play(self, until: float) -> None:
        """Join, play until ``until`` (``trio.current_time()``), leave. Never raises."""
        client = trio_sio.Client(
            self.url,
            transports=("websocket",),
            auth={"name": self.name},
            connector=self.connector,
            reconnection_attempts=3,
        )
        client.on("welcome", self._welcome)
        client.on("world", self._world)
        try:
            async with client:
                joined = trio.current_time()
                # The deadline is inside the ``async with``: leaving it is then an orderly
                # goodbye, not a cancellation.
                with trio.move_on_at(until):
                    while True:
                        await self._steer(client)
                        await trio.sleep(INPUT_INTERVAL)
                self.stats.seconds = trio.current_time() - joined
        except (trio_sio.ConnectionRefused, trio_sio.ConnectError) as exc:
            self.stats.error = f"{type(exc).__name__}: {exc}"
            log.warning("%s could not join: %s", self.name, exc)
        if self.stats.id is None and self.stats.error is None:
            self.stats.error = "never joined"

    def _welcome(self, info: dict[str, Any]) -> None:
        self.stats.id = info["id"]
        self.arena = (info["w"], info["h"])

    def _world(self, world: dict[str, Any]) -> None:
        self.world = world
        self.stats.worlds += 1
        for player_id, _x, _y, score in world["p"]:
            if player_id == self.stats.id:
                self.stats.score = score

    async def _steer(self, client: trio_sio.Client) -> None:
        me = self._me()
        if me is None:
            return
        now = trio.current_time()
        if self.chaser and self.world and self.world["c"]:
            # The nearest coin.
            self.target = min(self.world["c"], key=lambda c: math.dist(c, me))
        elif self.target is None or now - self.target_since > WANDER_EVERY:
            width, height = self.arena
            self.target = (self.rng.uniform(0, width), self.rng.uniform(0, height))
            self.target_since = now
        assert self.target is not None
        await client.volatile.emit("input", {"tx": self.target[0], "ty": self.target[1]})

    def _me(self) -> tuple[float, float] | None:
        if self.world is None:
            return None
        for player_id, x, y, _score in self.world["p"]:
            if player_id == self.stats.id:
                return (x, y)
        return None


async def run_bots(
    url: str,
    count: int,
    duration: float,
    *,
    connector: Connector | None = None,
    seed: int | None = None,
) -> list[BotStats]:
    """Run ``count`` bots against the game at ``url`` for ``duration`` seconds."""
    rng = random.Random(seed)
    bots = [
        Bot(
            f"bot-{n}", url, chaser=n % 2 == 1, rng=random.Random(rng.random()), connector=connector
        )
        for n in range(1, count + 1)
    ]
    until = trio.current_time() + duration
    async with trio.open_nursery() as nursery:
        for bot in bots:
            nursery.start_soon(bot.play, until)
    return [bot.stats for bot in bots]


def summary(stats: list[BotStats]) -> str:
    lines = [f"{'bot':<10} {'id':>4} {'worlds':>7} {'rate/s':>7} {'score':>6}"]
    for s in stats:
        if s.error is not None:
            lines.append(f"{s.name:<10} {'-':>4} {s.worlds:>7} {'-':>7} {'-':>6}  {s.error}")
        else:
            lines.append(f"{s.name:<10} {s.id:>4} {s.worlds:>7} {s.rate:>7.1f} {s.score:>6}")
    worlds = sum(s.worlds for s in stats)
    joined = sum(s.error is None for s in stats)
    lines.append(f"total: {joined}/{len(stats)} bots joined, {worlds} worlds")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8001", help="the game server")
    parser.add_argument("--count", type=int, default=5, help="number of bots (1-32)")
    parser.add_argument("--duration", type=float, default=30, help="seconds to play")
    parser.add_argument("--seed", type=int, default=None, help="seed the bots' choices")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 32:
        parser.error("--count must be between 1 and 32")
    if args.duration <= 0:
        parser.error("--duration must be positive")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    stats = None
    try:
        stats = trio.run(
            functools.partial(run_bots, seed=args.seed), args.url, args.count, args.duration
        )
    except* KeyboardInterrupt:
        pass  # trio raises it in a group when the bots' nursery is running
    if stats is None:
        return 130  # stopped with Ctrl+C: no summary
    print(summary(stats), flush=True)
    return 0 if all(s.error is None and s.worlds > 0 for s in stats) else 1


if __name__ == "__main__":
    sys.exit(main())
