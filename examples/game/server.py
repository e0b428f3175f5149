"""A small multiplayer game on trio_sio: a server-authoritative tick loop, volatile updates.

    npm ci --prefix examples/game          # once: fetches the official browser client
    python examples/game/server.py [--host 127.0.0.1] [--port 8001] [--tick-rate 30]

then open http://127.0.0.1:8001/ in a few browser windows (or add bots with bots.py).

How it works:

* A player joins with a name in the connection ``auth`` (``{"name": "ada"}``); the
  middleware refuses the connection when the arena is full (``MAX_PLAYERS``). Each player
  gets a small integer id, a color and a random spot.
* Clients send ``input`` events: ``{"x": dx, "y": dy}`` with ``dx, dy`` in -1, 0, 1 (the
  direction keys held) or ``{"tx": x, "ty": y}`` (walk to a point). The server only keeps the
  latest input of each player; anything else is ignored, with a log line.
* One task, the tick loop, runs at ``tick_rate`` Hz: it applies the inputs (acceleration,
  friction, a speed cap, walls), lets players pick up coins (one point each; a new coin
  appears elsewhere) and broadcasts the world with a **volatile** emit. A world superseded
  33 ms later is worthless once late, so a client whose connection cannot take it right now
  (a slow link, an upgrade in progress) simply misses that one instead of queueing stale
  states. The tick loop never waits for a client.
* Things that must arrive are sent with plain emits: ``welcome`` (your id and the arena's
  size) and ``players`` (the roster: ids, names and colors, sent again on each join and
  leave). The world itself is compact: integers and one-letter keys::

      {"t": tick, "p": [[id, x, y, score], ...], "c": [[x, y], ...]}

The state lives in memory. ``build_game()`` builds the server and the tick loop without
running them, for tests (``tests/examples/test_game.py`` runs them in virtual time).
"""

from __future__ import annotations

import argparse
import colorsys
import itertools
import logging
import math
import random
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

import trio_sio

log = logging.getLogger("game")

HERE = Path(__file__).resolve().parent
PUBLIC = HERE / "public"
CLIENT_DIST = HERE / "node_modules" / "socket.io-client" / "dist"

WIDTH, HEIGHT = 960, 540  # the arena, in pixels
PLAYER_RADIUS = 14
COIN_RADIUS = 8
COINS = 6
MAX_PLAYERS = 32
MAX_NAME = 16

MAX_SPEED = 260.0  # px/s
ACCELERATION = 1400.0  # px/s², towards the wanted velocity
FRICTION = 6.0  # 1/s: how fast a player with no input slows down
BOUNCE = 0.4  # what is left of the speed after hitting a wall
ARRIVED = 4.0  # px: a target point this close is reached
BAD_INPUT_LOG_EVERY = 1.0  # s: at most one log line per player and second for bad input


def static_files() -> dict[str, Path]:
    """The URL paths of the page and of the client bundle, and the files behind them."""
    return {
        "/": PUBLIC / "index.html",
        "/index.html": PUBLIC / "index.html",
        "/game.js": PUBLIC / "game.js",
        "/favicon.svg": PUBLIC / "favicon.svg",
        "/favicon.ico": PUBLIC / "favicon.svg",  # asked for by browsers that skip the <link>
        "/socket.io.min.js": CLIENT_DIST / "socket.io.min.js",
        "/socket.io.min.js.map": CLIENT_DIST / "socket.io.min.js.map",
    }


def color_of(player_id: int) -> str:
    """A color per id: hues a golden angle apart stay distinct for neighbouring ids; the
    coins' yellow is left out."""
    hue = (player_id * 137.508) % 360
    if 35 <= hue < 75:
        hue += 40
    r, g, b = colorsys.hls_to_rgb(hue / 360, 0.55, 0.75)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


@dataclass
class Player:
    id: int
    name: str
    color: str
    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0
    score: int = 0
    # The latest input: a direction (keys) or a point to walk to; None when neither.
    keys: tuple[int, int] = (0, 0)
    target: tuple[float, float] | None = None
    last_bad_input_log: float = -math.inf


Input = tuple[tuple[int, int], tuple[float, float] | None]


def parse_input(data: Any) -> Input | None:
    """An ``input`` payload as ``(keys, target)``: ``((dx, dy), None)`` for direction keys,
    ``((0, 0), (tx, ty))`` for a point to walk to; None if it is neither.

    Everything is checked here, so that the tick loop only ever sees sane numbers. Unknown
    keys are ignored (room for a later version of the page to send more).
    """
    if not isinstance(data, dict):
        return None
    if "x" in data and "y" in data:
        dx, dy = data["x"], data["y"]
        # type() rather than isinstance(): True is an int too.
        if all(type(v) is int and v in (-1, 0, 1) for v in (dx, dy)):
            return (dx, dy), None
        return None
    if "tx" in data and "ty" in data:
        tx, ty = _coordinate(data["tx"]), _coordinate(data["ty"])
        if tx is not None and ty is not None:
            # A point outside the arena means "go as far as you can that way".
            target = (
                min(max(tx, PLAYER_RADIUS), WIDTH - PLAYER_RADIUS),
                min(max(ty, PLAYER_RADIUS), HEIGHT - PLAYER_RADIUS),
            )
            return (0, 0), target
    return None


def _coordinate(value: Any) -> float | None:
    """A JSON number as a float; None for anything else, or beyond ±1e6 (or NaN)."""
    if type(value) not in (int, float) or not -1e6 <= value <= 1e6:
        return None
    return float(value)


class Game:
    """The game's state, its Socket.IO handlers and its tick loop.

    Args:
        tick_rate: simulation steps (and world broadcasts) per second.
        seed: seeds the spawn points and coin positions (for tests).
    """

    def __init__(self, tick_rate: float = 30, seed: int | None = None) -> None:
        if not 1 <= tick_rate <= 120:
            raise ValueError("the tick rate must be between 1 and 120 Hz")
        self.tick_rate = tick_rate
        self.random = random.Random(seed)
        self.players: dict[int, Player] = {}
        self.coins: list[tuple[float, float]] = [self._free_spot(COIN_RADIUS) for _ in range(COINS)]
        self.tick = 0
        self._ids = itertools.count(1)

        self.sio = sio = trio_sio.Server(static_files=static_files())
        sio.use(self.admit)
        sio.on("connection", self.joined)
        sio.on("disconnect", self.left)
        sio.on("input", self.input)

    def _free_spot(self, margin: float) -> tuple[float, float]:
        return (
            self.random.uniform(margin + 20, WIDTH - margin - 20),
            self.random.uniform(margin + 20, HEIGHT - margin - 20),
        )

    # -- joining and leaving ---------------------------------------------------------------
    def admit(self, socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        """Middleware: check the name and that there is room."""
        name = auth.get("name")
        if not isinstance(name, str) or not name.strip():
            raise trio_sio.ConnectionRefused("a player needs a name: auth = {name: '...'}")
        if len(self.players) >= MAX_PLAYERS:
            raise trio_sio.ConnectionRefused(f"the game is full ({MAX_PLAYERS} players)")
        socket.data["name"] = " ".join(name.split())[:MAX_NAME]

    async def joined(self, socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        if len(self.players) >= MAX_PLAYERS:  # others joined since the middleware ran
            await socket.disconnect()
            return
        player_id = next(self._ids)
        x, y = self._free_spot(PLAYER_RADIUS)
        player = Player(player_id, socket.data["name"], color_of(player_id), x, y)
        self.players[player_id] = player
        socket.data["player"] = player
        log.info("%s joined as player %d (%d playing)", player.name, player_id, len(self.players))
        welcome = {
            "id": player_id,
            "w": WIDTH,
            "h": HEIGHT,
            "r": PLAYER_RADIUS,
            "cr": COIN_RADIUS,
            "hz": self.tick_rate,
        }
        await socket.emit("welcome", welcome)
        await self._send_roster()

    async def left(self, socket: trio_sio.Socket, reason: str) -> None:
        player = socket.data.pop("player", None)
        if player is None:
            return
        del self.players[player.id]
        log.info("%s (player %d) left: %s", player.name, player.id, reason)
        await self._send_roster()

    async def _send_roster(self) -> None:
        roster = [[p.id, p.name, p.color] for p in self.players.values()]
        await self.sio.emit("players", roster)

    # -- input -----------------------------------------------------------------------------
    # Inputs may arrive as plain or volatile emits. The page sends a plain emit when the keys
    # it holds change: losing "keys released" would leave a player running, and it is only a
    # few events a second. The bots send volatile emits ten times a second: each supersedes
    # the last, so one that could not be sent at once is better dropped than sent late.
    def input(self, socket: trio_sio.Socket, data: Any = None) -> None:
        player: Player | None = socket.data.get("player")
        if player is None:
            return
        parsed = parse_input(data)
        if parsed is None:
            now = trio.current_time()
            if now - player.last_bad_input_log >= BAD_INPUT_LOG_EVERY:
                player.last_bad_input_log = now
                log.warning("ignored bad input from player %d: %.80r", player.id, data)
            return
        player.keys, player.target = parsed

    # -- the simulation --------------------------------------------------------------------
    def step(self, dt: float) -> None:
        """Advance the world by ``dt`` seconds."""
        self.tick += 1
        for player in self.players.values():
            self._move(player, dt)
            self._collect(player)

    def _move(self, p: Player, dt: float) -> None:
        # The velocity the input asks for.
        wx = wy = 0.0
        if p.target is not None:
            dx, dy = p.target[0] - p.x, p.target[1] - p.y
            distance = math.hypot(dx, dy)
            if distance > ARRIVED:
                # Slow down when close, so as to stop on the point instead of orbiting it.
                speed = min(MAX_SPEED, distance * 4)
                wx, wy = dx / distance * speed, dy / distance * speed
        elif p.keys != (0, 0):
            norm = math.hypot(*p.keys)
            wx, wy = p.keys[0] / norm * MAX_SPEED, p.keys[1] / norm * MAX_SPEED
        if wx or wy:
            # Accelerate towards it, at most ACCELERATION.
            ax, ay = wx - p.vx, wy - p.vy
            change = math.hypot(ax, ay)
            limit = ACCELERATION * dt
            if change > limit:
                ax, ay = ax / change * limit, ay / change * limit
            p.vx += ax
            p.vy += ay
        else:
            damping = max(0.0, 1 - FRICTION * dt)
            p.vx *= damping
            p.vy *= damping
            if math.hypot(p.vx, p.vy) < 2:
                p.vx = p.vy = 0.0
        speed = math.hypot(p.vx, p.vy)
        if speed > MAX_SPEED:
            p.vx, p.vy = p.vx / speed * MAX_SPEED, p.vy / speed * MAX_SPEED
        p.x += p.vx * dt
        p.y += p.vy * dt
        # The walls.
        low, high_x, high_y = PLAYER_RADIUS, WIDTH - PLAYER_RADIUS, HEIGHT - PLAYER_RADIUS
        if p.x < low or p.x > high_x:
            p.x = min(max(p.x, low), high_x)
            p.vx = -p.vx * BOUNCE
        if p.y < low or p.y > high_y:
            p.y = min(max(p.y, low), high_y)
            p.vy = -p.vy * BOUNCE

    def _collect(self, p: Player) -> None:
        reach = PLAYER_RADIUS + COIN_RADIUS
        for i, (cx, cy) in enumerate(self.coins):
            if math.hypot(cx - p.x, cy - p.y) <= reach:
                p.score += 1
                self.coins[i] = self._free_spot(COIN_RADIUS)

    def world(self) -> dict[str, Any]:
        """The world as broadcast: integers only, one-letter keys."""
        return {
            "t": self.tick,
            "p": [[p.id, round(p.x), round(p.y), p.score] for p in self.players.values()],
            "c": [[round(x), round(y)] for x, y in self.coins],
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The tick loop: step the world and broadcast it, ``tick_rate`` times a second.

        Ticks are scheduled on absolute times, so they do not drift; a loop that falls far
        behind (a stalled machine) skips the missed ticks instead of running them in a burst.
        Runs until cancelled.
        """
        period = 1 / self.tick_rate
        next_tick = trio.current_time()
        task_status.started()
        while True:
            next_tick += period
            await trio.sleep_until(next_tick)
            late = trio.current_time() - next_tick
            if late > 5 * period:
                log.warning("the tick loop is %.0f ms late; skipping ticks", late * 1000)
                next_tick = trio.current_time()
            self.step(period)
            if self.players:
                # Never blocks: a client that cannot take it right now misses this one.
                await self.sio.volatile.emit("world", self.world())


def build_game(
    tick_rate: float = 30, seed: int | None = None
) -> tuple[trio_sio.Server, Callable[..., Awaitable[None]]]:
    """The game's server and its tick loop, not yet running.

    Run both in one nursery: ``nursery.start_soon(run_tick_loop)`` next to
    ``nursery.start(sio.serve, host, port)`` (or ``sio.run`` with trio_sio.testing).
    """
    game = Game(tick_rate, seed)
    return game.sio, game.run


async def stop_on_signals(
    cancel_scope: trio.CancelScope, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Cancel ``cancel_scope`` (the server's nursery) on Ctrl+C (SIGINT) or SIGTERM, so that
    the server closes its connections and the process exits with 0 instead of a
    ``KeyboardInterrupt`` traceback. Blocks until a signal arrives or it is cancelled."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            log.info("%s: stopping", signal.Signals(signum).name)
            cancel_scope.cancel()
            return


async def serve(host: str, port: int, tick_rate: float) -> None:
    sio, run_tick_loop = build_game(tick_rate)
    async with trio.open_nursery() as nursery:
        await nursery.start(stop_on_signals, nursery.cancel_scope)
        listeners = await nursery.start(sio.serve, host, port)
        await nursery.start(run_tick_loop)
        bound = listeners[0].socket.getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        log.info("game server on http://%s:%d/ (%g ticks/s)", shown, bound[1], tick_rate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8001, help="port (0: any free port)")
    parser.add_argument("--tick-rate", type=float, default=30, help="ticks per second (1-120)")
    parser.add_argument("--debug", action="store_true", help="log trio_sio's debug messages")
    args = parser.parse_args(argv)
    if not 1 <= args.tick_rate <= 120:
        parser.error("--tick-rate must be between 1 and 120")
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not (CLIENT_DIST / "socket.io.min.js").is_file():
        log.error("the Socket.IO browser client is missing: run `npm ci` in %s", HERE)
        return 1
    try:
        trio.run(serve, args.host, args.port, args.tick_rate)
    except* KeyboardInterrupt:
        pass  # Ctrl+C before stop_on_signals was listening (or after it stopped)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
