"""python-socketio's asyncio client against ``sio_trio_server.py``: the scenarios of the
"emitting events" page, in both directions, where python-socketio supports them.

    python pysio_client.py <url> <mode>

``mode`` is ``websocket``, ``polling`` or ``default`` (no ``transports`` argument: polling
first, then python-engineio upgrades to WebSocket inside ``connect()``).

Prints one JSON line, the same shape as ``sio_node_client.mjs``::

    {"mode", "sids": {"a", "b", "admin"}, "results": {<scenario>: {"ok", ...}}}

A failed scenario has ``"ok": false`` and an ``"error"``; one python-socketio cannot express
has ``"skipped"`` (the reason). Binary values are written as ``{"$bytes": "<hex>"}``. Exits
1 if a scenario failed, 2 if the whole run took longer than ``RUN_LIMIT``. Set
``PYSIO_LOG=1`` for python-socketio's log on stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import socketio
from socketio import exceptions

MODES: dict[str, list[str] | None] = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "default": None,
}
WAIT = 3.0
#: per scenario: a few round trips each, in well under a second alone; generous, because
#: the whole suite shares the machine (and CI's is busy) while this runs
SCENARIO_LIMIT = 10.0
RUN_LIMIT = 25.0


def describe(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, list | tuple):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    return value


class Failure(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def equal(actual: Any, expected: Any, what: str) -> None:
    check(
        actual == expected,
        f"{what}: expected {json.dumps(describe(expected))}, "
        f"got {json.dumps(describe(actual), default=repr)}",
    )


class Recorder:
    """Every event a client receives in a namespace, recorded from before it connects."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[Any]]] = []
        self.changed = asyncio.Event()

    def add(self, event: str, args: tuple[Any, ...]) -> None:
        self.events.append((event, list(args)))
        self.changed.set()

    def all(self, event: str) -> list[list[Any]]:
        return [args for name, args in self.events if name == event]

    async def first(self, event: str, timeout: float = WAIT) -> list[Any]:
        async def wait() -> list[Any]:
            while True:
                found = self.all(event)
                if found:
                    return found[0]
                self.changed.clear()
                await self.changed.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise Failure(f'event "{event}": nothing after {timeout} s') from None


def make_client(name: str, namespaces: list[str]) -> tuple[socketio.AsyncClient, Recorder]:
    """A client answering the server's questions as ``sio_node_client.mjs`` does."""
    sio = socketio.AsyncClient(
        reconnection=False,
        handle_sigint=False,
        logger=bool(os.environ.get("PYSIO_LOG")),
        engineio_logger=bool(os.environ.get("PYSIO_LOG")),
    )
    rec = Recorder()

    def recording(
        event: str, answer: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        async def handler(*args: Any) -> Any:
            rec.add(event, args)
            return await answer(*args)

        return handler

    async def question(*args: Any) -> Any:
        if args and args[0] == "single":
            return "only"
        return ("answer", *args)

    async def ignored(*args: Any) -> None:
        # python-socketio always acknowledges an event that asked for it (with the return
        # value, [] for None): "never answering" is answering later than the server waits.
        await asyncio.sleep(0.6)

    async def poll(room: str) -> str:
        return name

    async def poll_some(room: str) -> str | None:
        if name != "A":
            await asyncio.sleep(0.8)  # later than the server's 0.5 s
            return None
        return name

    sio.on("question", recording("question", question))
    sio.on("ignored", recording("ignored", ignored))
    sio.on("poll", recording("poll", poll))
    sio.on("poll-some", recording("poll-some", poll_some))

    def catch_all(event: str, *args: Any) -> None:
        rec.add(event, args)

    for namespace in namespaces:
        sio.on("*", catch_all, namespace=namespace)
    return sio, rec


async def main(url: str, mode: str) -> int:
    transports = MODES[mode]
    output: dict[str, Any] = {"mode": mode, "transports": transports, "sids": {}, "results": {}}
    results: dict[str, Any] = output["results"]
    clients: list[socketio.AsyncClient] = []
    suffix = secrets.token_hex(4)
    room, muted = f"room-{suffix}", f"muted-{suffix}"

    async def scenario(name: str, fn: Callable[[], Awaitable[Any]]) -> None:
        started = time.monotonic()
        try:
            data = await asyncio.wait_for(fn(), SCENARIO_LIMIT)
        except TimeoutError:
            results[name] = {"ok": False, "error": f"{name}: not done in {SCENARIO_LIMIT} s"}
        except Exception as exc:
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        else:
            results[name] = {"ok": True, "data": describe(data)}
        results[name]["ms"] = round((time.monotonic() - started) * 1000)

    def skipped(name: str, reason: str) -> None:
        results[name] = {"ok": True, "skipped": reason}

    async def connect(sio: socketio.AsyncClient, query: str, **kwargs: Any) -> None:
        await sio.connect(url + query, transports=transports, wait_timeout=WAIT, **kwargs)

    # A: "/" and "/admin" on one connection (python-socketio sends the same auth to both).
    a, rec_a = make_client("A", ["/", "/admin"])
    clients.append(a)
    auth_a = {"token": "secret", "user": "py-a"}

    async def call(sio: socketio.AsyncClient, event: str, *args: Any, ns: str = "/") -> Any:
        return await sio.call(event, args, namespace=ns, timeout=WAIT)

    async def s_connect() -> Any:
        await connect(a, "?q=1", auth=auth_a, namespaces=["/", "/admin"])
        output["sids"]["a"] = a.get_sid("/")
        output["sids"]["admin"] = a.get_sid("/admin")
        who = await call(a, "whoami")
        equal(who["nsp"], "/", "whoami.nsp")
        equal(who["sid"], a.get_sid("/"), "whoami.sid")
        equal(who["auth"], auth_a, "whoami.auth")
        equal(who["query"], {"q": "1"}, "whoami.query")
        return {"sid": who["sid"], "transport": a.transport()}

    await scenario("connect", s_connect)

    async def s_server_emit_basic() -> Any:
        args = await rec_a.first("hello")
        equal(args, ["world"], "hello")
        equal(await rec_a.first("nothing"), [], "an event without args")
        return args

    async def s_server_emit_multi() -> Any:
        args = await rec_a.first("hello-multi")
        equal(args, [1, "2", {"3": "4", "5": b"\x06"}], "hello-multi")
        check(type(args[2]["5"]) is bytes, "binary arrives as bytes")
        return args

    async def s_server_emit_date() -> Any:
        epoch, later = await rec_a.first("dates")
        equal(epoch, "1970-01-01T00:00:00.000Z", "epoch string")
        equal(datetime.fromisoformat(epoch).timestamp(), 0.0, "epoch")
        equal(later, "2024-05-06T07:08:09.123Z", "later string (UTC, milliseconds)")
        return [epoch, later]

    async def s_server_emit_hook() -> Any:
        args = await rec_a.first("hero")
        equal(args, [{"hp": 42}], "hero")
        return args

    async def s_server_emit_dataclass() -> Any:
        args = await rec_a.first("point")
        equal(args, [{"x": 1, "y": 2, "label": "p"}], "point")
        return args

    async def s_transport() -> Any:
        expected = "polling" if mode == "polling" else "websocket"
        equal(a.transport(), expected, "client transport")
        server = await call(a, "transport")
        equal(server, expected, "server's view of the transport")
        return {"client": a.transport(), "server": server}

    async def s_client_emit_basic() -> Any:
        await a.emit("hello", "world")
        equal(await call(a, "sync"), "sync", "sync")

    async def s_client_emit_multi() -> Any:
        await a.emit("hello-multi", (1, "2", {3: "4", 5: b"\x06"}))
        await a.emit("types", ({"nested": [b"\x07"]}, b"\x01\x02\x03", [["k", 1]], ["s"]))
        equal(await call(a, "sync"), "sync", "sync")

    async def s_echo() -> Any:
        sent = (1, "2", {"3": "4", "5": b"\x06"}, [b"", None, True])
        ack = await call(a, "echo", *sent)
        echoed = await rec_a.first("echoed")
        equal(list(ack), list(sent), "ack (several args)")
        equal(echoed, list(sent), "echoed")
        return {"ack": ack, "echoed": echoed}

    async def s_ack_client_to_server() -> Any:
        got: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        await a.emit(
            "update item", ("1", {"name": "updated"}), callback=lambda *r: got.set_result(r)
        )
        via_callback = await asyncio.wait_for(got, WAIT)
        equal(via_callback, ({"status": "ok"},), "emit(callback=)")
        via_call = await call(a, "update item", "1", {"name": "updated"})
        equal(via_call, {"status": "ok"}, "call()")
        return {"via_callback": via_callback, "via_call": via_call}

    async def s_ack_client_timeout() -> Any:
        started = time.monotonic()
        try:
            reply = await a.call("no-answer", 1, timeout=0.5)
        except exceptions.TimeoutError:
            elapsed = time.monotonic() - started
            check(elapsed >= 0.45, f"timed out too early ({elapsed:.3f} s)")
            return {"error": "TimeoutError", "elapsed_ms": round(elapsed * 1000)}
        raise Failure(f"call('no-answer') returned {reply!r} instead of timing out")

    async def s_ack_server_to_client() -> Any:
        multi = await call(a, "ask", "q1", b"\x07\x08")
        equal(multi, {"reply": ["answer", "q1", b"\x07\x08"]}, "multi reply")
        single = await call(a, "ask", "single")
        equal(single, {"reply": ["only"]}, "single-arg reply")
        within = await call(a, "ask-within", "w1")
        equal(within, {"reply": ["answer", "w1"]}, "emit_with_ack(timeout=2) answered")
        return {"multi": multi, "single": single, "within": within}

    async def s_ack_server_timeout() -> Any:
        result = await call(a, "ask-timeout")
        equal(result.get("error"), "AckTimeoutError", "server emit_with_ack(timeout=0.3)")
        return result

    async def s_ack_server_callback() -> Any:
        ok = await call(a, "ask-callback", "cb1")
        equal(ok, {"err": None, "args": ["answer", "cb1"]}, "timeout(2).emit(callback) answered")
        late = await call(a, "ask-callback-timeout")
        equal(late, {"err": "AckTimeoutError", "args": []}, "timeout(0.3).emit(callback)")
        plain = await call(a, "ask-callback-plain", "p1")
        equal(plain, {"args": ["answer", "p1"]}, "emit(callback) without timeout")
        return {"ok": ok, "late": late, "plain": plain}

    async def s_volatile_server() -> Any:
        await a.emit("volatile-burst", 5)
        await rec_a.first("volatile-done")
        got = rec_a.all("position")
        xs = [p[0] for p in got]
        check(1 <= len(got) <= 5, f"1 to 5 positions expected, got {got}")
        check(all(p == [x, 2 * x] and 0 <= x < 5 for p, x in zip(got, xs, strict=True)), f"{got}")
        check(xs == sorted(set(xs)), f"positions in order: {xs}")
        return {"received": len(xs), "positions": xs}

    async def s_server_set_typeerror() -> Any:
        result = await call(a, "emit-set")
        equal(result.get("error"), "TypeError", "emitting a set")
        equal(rec_a.all("set-event"), [], "nothing was sent")
        return result

    for name, fn in [
        ("server_emit_basic", s_server_emit_basic),
        ("server_emit_multi", s_server_emit_multi),
        ("server_emit_date", s_server_emit_date),
        ("server_emit_hook", s_server_emit_hook),
        ("server_emit_dataclass", s_server_emit_dataclass),
        ("transport", s_transport),
        ("client_emit_basic", s_client_emit_basic),
        ("client_emit_multi", s_client_emit_multi),
        ("echo", s_echo),
        ("ack_client_to_server", s_ack_client_to_server),
        ("ack_client_timeout", s_ack_client_timeout),
        ("ack_server_to_client", s_ack_server_to_client),
        ("ack_server_timeout", s_ack_server_timeout),
        ("ack_server_callback", s_ack_server_callback),
        ("volatile_server", s_volatile_server),
    ]:
        await scenario(name, fn)
    skipped("volatile_client", "python-socketio's client has no volatile emit")
    await scenario("server_set_typeerror", s_server_set_typeerror)

    # B: a second client, for the rooms.
    b, rec_b = make_client("B", ["/"])
    clients.append(b)

    async def s_rooms() -> Any:
        await connect(b, "", auth={"token": "t-b", "user": "py-b"})
        output["sids"]["b"] = b.get_sid("/")
        equal(await call(a, "join", room), [room], "A's rooms")
        equal(await call(b, "join", room), [room], "B's rooms")
        equal(await call(b, "join", muted), sorted([muted, room]), "B's rooms")

        equal(await call(a, "to-room", room, "n1", b"\x09"), "sent", "to-room")
        equal(await rec_b.first("room-news"), ["n1", b"\x09"], "B got room-news")
        equal(rec_a.all("room-news"), [], "the sender gets no room-news")

        equal(await call(a, "to-room-except", room, muted, "n2"), "sent", "to-room-except")
        equal(await rec_a.first("room-news2"), ["n2"], "A got room-news2")
        equal(await call(b, "sync"), "sync", "B sync")
        equal(rec_b.all("room-news2"), [], "B (muted) gets no room-news2")

        equal(await call(a, "broadcast", "n3"), "sent", "broadcast")
        equal(await rec_b.first("all-news"), ["n3"], "B got all-news")
        equal(rec_a.all("all-news"), [], "the sender gets no all-news")

        equal(await call(b, "leave", muted), [room], "B's rooms after leave")
        return {"room": room, "muted": muted}

    async def s_broadcast_ack() -> Any:
        every = await call(a, "poll-room", room, "poll", 2)
        equal(every, {"replies": ["A", "B"]}, "every client answered")
        some = await call(a, "poll-room", room, "poll-some", 0.5)
        equal(some, {"error": "AckTimeoutError", "replies": ["A"]}, "B answered too late")
        started = time.monotonic()
        none = await call(a, "poll-room", f"empty-{suffix}", "poll", 2)
        equal(none, {"replies": []}, "an empty room")
        check(time.monotonic() - started < 1, "an empty room answers at once, not at the timeout")
        return {"all": every, "some": some, "none": none}

    async def s_namespace_admin() -> Any:
        equal(await rec_a.first("admin-hello"), [{"welcome": "py-a"}], "admin-hello")
        who = await call(a, "whoami", ns="/admin")
        equal(who["nsp"], "/admin", "whoami.nsp")
        equal(who["sid"], a.get_sid("/admin"), "whoami.sid")
        equal(who["auth"], auth_a, "whoami.auth")
        ack = await call(a, "echo", "x", b"\x01", ns="/admin")
        equal(ack, ("x", b"\x01"), "admin echo")
        return {"who": who}

    async def s_namespace_refused() -> Any:
        # Its client and engine logs go to stderr, which a failing test shows: this
        # scenario once ran out of time under load, and the logs say where it waited.
        refused = socketio.AsyncClient(
            reconnection=False, handle_sigint=False, logger=True, engineio_logger=True
        )
        for name in ("socketio.client", "engineio.client"):
            logging.getLogger(name).setLevel(logging.INFO)
        clients.append(refused)
        errors: list[Any] = []
        refused.on("connect_error", lambda *data: errors.append(data), namespace="/admin")
        try:
            await connect(refused, "", auth={"token": "bad"}, namespaces=["/admin"])
        except exceptions.ConnectionError as exc:
            message = str(exc)
        else:
            raise Failure("connected instead of being refused")
        check("/admin" in message, f"the error names the namespace: {message!r}")
        equal(
            errors,
            [({"message": "not authorized", "data": {"code": 403, "reason": "bad token"}},)],
            "connect_error data",
        )
        payload = errors[0][0]
        return {"exception": message, "message": payload["message"], "data": payload["data"]}

    async def s_disconnect() -> Any:
        await a.disconnect()
        await b.disconnect()
        check(not a.connected and not b.connected, "disconnected")

    await scenario("rooms", s_rooms)
    await scenario("broadcast_ack", s_broadcast_ack)
    await scenario("namespace_admin", s_namespace_admin)
    await scenario("namespace_refused", s_namespace_refused)
    await scenario("disconnect", s_disconnect)

    for sio in clients:
        if sio.connected:
            await sio.disconnect()
    print(json.dumps(output), flush=True)
    failed = {name: r["error"] for name, r in results.items() if not r["ok"]}
    for name, error in failed.items():
        print(f"FAILED {name}: {error}", file=sys.stderr)
    return 1 if failed else 0


async def bounded(url: str, mode: str) -> int:
    try:
        return await asyncio.wait_for(main(url, mode), RUN_LIMIT)
    except TimeoutError:
        print(json.dumps({"mode": mode, "error": f"run longer than {RUN_LIMIT} s"}), flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(asyncio.run(bounded(sys.argv[1], sys.argv[2])))
