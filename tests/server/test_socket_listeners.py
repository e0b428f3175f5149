"""Per-socket listeners (``socket.on/once/off``, the any family in and out) and packet
middleware (``socket.use``, ``Namespace.use_packet``, ``RateLimit``), from the wire: raw
frames over memory, in virtual time."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
import trio
import trio.testing

import trio_sio
from trio_sio.testing import RawClient, open_raw_client


def make_server(**options: Any) -> trio_sio.Server:
    options.setdefault("ping_interval", 25)
    options.setdefault("ping_timeout", 20)
    return trio_sio.Server(**options)


async def quiet(raw: RawClient) -> None:
    """Assert that nothing more comes (within a virtual second)."""
    await trio.testing.wait_all_tasks_blocked()
    with trio.move_on_after(1):
        frame = await raw.receive()
        pytest.fail(f"unexpected frame {frame!r}")


@pytest.fixture
def no_errors(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.DEBUG, "trio_sio")
    yield caplog
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- socket.on / once / off / listeners ------------------------------------------------------


async def test_socket_listeners_run_after_the_namespace_handler_and_can_be_removed(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, no_errors: Any
) -> None:
    sio = make_server()
    calls: list[tuple[str, tuple[Any, ...]]] = []

    @sio.on("chat")
    def namespace_handler(socket: trio_sio.Socket, text: str) -> None:
        calls.append(("namespace", (text,)))

    def first(text: str) -> None:
        calls.append(("first", (text,)))

    async def second(text: str, extra: int = 0) -> None:
        calls.append(("second", (text, extra)))

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: Any) -> None:
        socket.on("chat", first)
        socket.on("chat", second)
        socket.once("chat", lambda text: calls.append(("once", (text,))))
        assert socket.listeners("chat")[:2] == [first, second]
        assert len(socket.listeners("chat")) == 3

        @socket.on("drop first")
        def drop() -> None:
            socket.off("chat", first)

        @socket.on("drop all")
        def drop_all() -> None:
            socket.off("chat")
            assert socket.listeners("chat") == []

    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send('42["chat","a"]')
        await raw.send('42["chat","b",7]')
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(2)
        assert calls == [
            ("namespace", ("a",)),
            ("first", ("a",)),
            ("second", ("a", 0)),
            ("once", ("a",)),
            ("namespace", ("b",)),
            ("first", ("b",)),
            ("second", ("b", 7)),
        ]
        calls.clear()
        await raw.send('42["drop first"]')
        await raw.send('42["chat","c"]')
        await trio.sleep(2)
        assert calls == [("namespace", ("c",)), ("second", ("c", 0))]
        calls.clear()
        await raw.send('42["drop all"]')
        await raw.send('42["chat","d"]')
        await trio.sleep(2)
        assert calls == [("namespace", ("d",))]


async def test_a_socket_listener_alone_handles_an_event_and_its_return_value_is_the_ack(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, no_errors: Any
) -> None:
    sio = make_server()

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: Any) -> None:
        socket.on("double", lambda x: x * 2)
        socket.on("nothing", lambda: None)

        @socket.on("later")
        async def later(x: int, *, ack: trio_sio.Ack) -> None:
            socket.start_soon(_ack_later, ack, x)

    async def _ack_later(ack: trio_sio.Ack, x: int) -> None:
        await trio.sleep(5)
        await ack(x, "done")

    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send('421["double",21]')
        await raw.expect("431[42]")
        await raw.send('422["nothing"]')
        await raw.expect("432[]")
        await raw.send('423["later",5]')
        await raw.expect('433[5,"done"]')
        await raw.send('42["double",1]')  # no ack asked: none sent
        await quiet(raw)


async def test_the_first_handler_to_acknowledge_wins(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, no_errors: Any
) -> None:
    sio = make_server()
    sio.on("a", lambda socket: None)  # returns nothing: the listener's value is the ack
    sio.on("b", lambda socket: "namespace")  # first value wins

    @sio.on("c")
    async def by_parameter(socket: trio_sio.Socket, *, ack: trio_sio.Ack) -> None:
        await ack("parameter")

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: Any) -> None:
        socket.on("a", lambda: "listener")
        socket.on("b", lambda: "listener")
        socket.on("c", lambda: "listener")

    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send('421["a"]')
        await raw.expect('431["listener"]')
        await raw.send('422["b"]')
        await raw.expect('432["namespace"]')
        await raw.send('423["c"]')
        await raw.expect('433["parameter"]')
        await quiet(raw)


async def test_socket_listeners_keep_the_concurrency_bound_and_ordering(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, no_errors: Any
) -> None:
    sio = make_server(max_concurrent_handlers=2)
    running = 0
    peak = 0
    order: list[int] = []

    async def slow(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1)
        running -= 1
        return i

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: Any) -> None:
        socket.on("slow", slow)
        socket.on("step", lambda i: order.append(i))

    sio.of("/").on("step", lambda socket, i: None, ordered=True)
    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        for i in range(6):
            await raw.send(f'42{i}["slow",{i}]')
        replies = {await raw.receive() for _ in range(6)}
        assert replies == {f"43{i}[{i}]" for i in range(6)}
        assert peak == 2
        for i in range(20):
            await raw.send(f'42["step",{i}]')
        await trio.sleep(1)
        assert order == list(range(20))


async def test_socket_listeners_are_made_only_when_first_used(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sio = make_server()
    sockets: list[trio_sio.Socket] = []
    sio.on("connection", lambda socket, auth: sockets.append(socket))
    sio.on("x", lambda socket: None)
    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send('421["x"]')
        await raw.expect("431[]")
        (socket,) = sockets
        assert socket._own is None
        assert socket.listeners("x") == [] and socket.listeners_any() == []
        socket.off("x")
        socket.off_any()
        socket.off_any_outgoing()
        assert socket._own is None  # reading and removing made nothing either


async def test_socket_disconnect_and_error_listeners_and_refused_names(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, no_errors: Any
) -> None:
    sio = make_server()
    seen: list[tuple[str, Any]] = []
    sockets: list[trio_sio.Socket] = []

    @sio.on("disconnecting")
    def namespace_disconnecting(socket: trio_sio.Socket, reason: str) -> None:
        seen.append(("ns disconnecting", reason))

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: Any) -> None:
        sockets.append(socket)
        socket.on("disconnecting", lambda reason: seen.append(("disconnecting", reason)))
        socket.on("disconnect", lambda reason: seen.append(("disconnect", reason)))
        socket.on("error", lambda err: seen.append(("error", err)))
        for name in ("connect", "connection", "connect_error"):
            with pytest.raises(ValueError):
                socket.on(name, print)

    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send('42["error","from the client"]')  # an event, not an error
        await trio.testing.wait_all_tasks_blocked()
        assert seen == []
        await raw.send("41")
        await trio.testing.wait_all_tasks_blocked()
    assert seen == [
        ("ns disconnecting", "client namespace disconnect"),
        ("disconnecting", "client namespace disconnect"),
        ("disconnect", "client namespace disconnect"),
    ]
    (socket,) = sockets
    assert socket._own is None  # dropped at the end: no cycle through the closures


# -- the any family ------------------------------------------------------------------------


async def test_any_listeners_in_and_out_on_the_socket_and_the_namespace(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, no_errors: Any
) -> None:
    sio = make_server()
    log: list[tuple[str, str, tuple[Any, ...]]] = []

    def ns_in(socket: trio_sio.Socket, event: str, *args: Any) -> None:
        log.append(("ns in", event, args))

    def ns_in_first(socket: trio_sio.Socket, event: str, *args: Any) -> None:
        log.append(("ns in first", event, args))

    def ns_out(socket: trio_sio.Socket, event: str, *args: Any) -> None:
        log.append(("ns out", event, args))

    sio.on_any(ns_in)
    sio.prepend_any(ns_in_first)
    sio.on_any_outgoing(ns_out)
    sio.prepend_any_outgoing(lambda socket, event, *args: log.append(("ns out first", event, args)))
    assert sio.listeners_any() == [ns_in_first, ns_in]
    assert len(sio.listeners_any_outgoing()) == 2

    def sock_in(event: str, *args: Any) -> None:
        log.append(("sock in", event, args))

    def sock_out(event: str, *args: Any) -> None:
        log.append(("sock out", event, args))

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: Any) -> None:
        socket.on_any(sock_in)
        socket.prepend_any(lambda event, *args: log.append(("sock in first", event, args)))
        socket.on_any_outgoing(sock_out)
        socket.prepend_any_outgoing(
            lambda event, *args: log.append(("sock out first", event, args))
        )
        assert socket.listeners_any()[1] is sock_in
        assert socket.listeners_any_outgoing()[1] is sock_out

        @socket.on("quiet")
        def go_quiet() -> None:
            socket.off_any(sock_in)
            socket.off_any_outgoing(sock_out)
            sio.off_any(ns_in)
            sio.off_any_outgoing(ns_out)

    @sio.on("echo")
    async def echo(socket: trio_sio.Socket, x: int) -> None:
        await socket.emit("echoed", x)

    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send('42["echo",1]')
        await raw.expect('42["echoed",1]')
        assert log == [
            ("ns in first", "echo", (1,)),
            ("ns in", "echo", (1,)),
            ("sock in first", "echo", (1,)),
            ("sock in", "echo", (1,)),
            ("ns out first", "echoed", (1,)),
            ("ns out", "echoed", (1,)),
            ("sock out first", "echoed", (1,)),
            ("sock out", "echoed", (1,)),
        ]
        await raw.send('42["quiet"]')
        await trio.testing.wait_all_tasks_blocked()
        log.clear()
        await raw.send('42["echo",2]')
        await raw.expect('42["echoed",2]')
        assert [entry[0] for entry in log] == [
            "ns in first",
            "sock in first",
            "ns out first",
            "sock out first",
        ]
        sio.off_any()
        sio.off_any_outgoing()
        assert sio.listeners_any() == [] == sio.listeners_any_outgoing()


async def test_outgoing_listeners_see_every_packet_including_broadcast_acks(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, no_errors: Any
) -> None:
    sio = make_server()
    ns_seen: list[tuple[str, str, tuple[Any, ...]]] = []
    own_seen: list[tuple[str, tuple[Any, ...]]] = []
    sio.on_any_outgoing(lambda socket, event, *args: ns_seen.append((socket.id, event, args)))
    sockets: list[trio_sio.Socket] = []

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: Any) -> None:
        sockets.append(socket)
        if len(sockets) == 1:
            socket.on_any_outgoing(lambda event, *args: own_seen.append((event, args)))

    await nursery.start(sio.run)
    async with open_raw_client(sio) as a, open_raw_client(sio) as b:
        ids = [await a.connect(), await b.connect()]

        async def answer(raw: RawClient, reply: str) -> None:
            frame = await raw.receive()
            assert isinstance(frame, str)
            match = re.fullmatch(r'42(\d+)\["question",1\]', frame)
            assert match, frame
            await raw.send(f'43{match[1]}["{reply}"]')

        async with trio.open_nursery() as answers:
            answers.start_soon(answer, a, "A")
            answers.start_soon(answer, b, "B")
            replies = await sio.timeout(5).emit_with_ack("question", 1)
        assert sorted(replies) == ["A", "B"]
        await sio.emit("news", 2)
        await a.expect('42["news",2]')
        await b.expect('42["news",2]')
        await trio.testing.wait_all_tasks_blocked()
        await sio.to(ids[0]).volatile.emit("volatile", 3)
        await a.expect('42["volatile",3]')
        await sockets[0].emit("direct", 4)
        await a.expect('42["direct",4]')
        async with trio.open_nursery() as answers:
            answers.start_soon(answer, a, "again")
            assert await sockets[0].emit_with_ack("question", 1) == "again"
    assert sorted(ns_seen[:2]) == sorted((i, "question", (1,)) for i in ids)
    assert own_seen == [
        ("question", (1,)),
        ("news", (2,)),
        ("volatile", (3,)),
        ("direct", (4,)),
        ("question", (1,)),
    ]
    # The namespace's count of sockets with outgoing listeners goes back to zero.
    await trio.testing.wait_all_tasks_blocked()
    assert sio.main._own_outgoing == 0


# -- packet middleware ---------------------------------------------------------------------


async def test_packet_middleware_passes_changes_and_refuses(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, no_errors: Any
) -> None:
    sio = make_server()
    seen: list[Any] = []
    errors: list[Exception] = []

    @sio.use_packet
    async def authorize(socket: trio_sio.Socket, event: str, args: list[Any]) -> Any:
        await trio.sleep(0.5)  # async middleware may wait
        if event.startswith("admin:") and not socket.data.get("admin"):
            raise trio_sio.PacketRefused("not authorized", {"event": event})
        if event == "shout":
            return [str(arg).upper() for arg in args]
        return None

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: Any) -> None:
        socket.data["admin"] = auth.get("admin", False)

        @socket.use
        def no_secrets(event: str, args: list[Any]) -> Exception | tuple[Any, ...] | None:
            if "secret" in args:
                return ValueError("no secrets")  # returning an error refuses too
            if event == "shout":
                return (*args, "!")
            return None

        @socket.on("error")
        async def on_error(err: Exception) -> None:
            errors.append(err)
            await socket.emit("refused", str(err))

    sio.on("shout", lambda socket, *words: seen.append(words) or "heard")
    sio.on("admin:reset", lambda socket: "reset")
    sio.on("say", lambda socket, *words: seen.append(words))

    await nursery.start(sio.run)
    async with open_raw_client(sio) as user, open_raw_client(sio) as admin:
        await user.connect()
        await admin.connect(auth={"admin": True})
        await user.send('421["shout","hi","there"]')
        await user.expect('431["heard"]')
        assert seen == [("HI", "THERE", "!")]
        await user.send('422["admin:reset"]')
        await user.expect('42["refused","not authorized"]')
        await admin.send('423["admin:reset"]')
        await admin.expect('433["reset"]')
        await user.send('424["say","a","secret"]')
        await user.expect('42["refused","no secrets"]')
        await quiet(user)  # no ack for refused events
    assert seen == [("HI", "THERE", "!")]
    assert [type(err) for err in errors] == [trio_sio.PacketRefused, ValueError]
    assert isinstance(errors[0], trio_sio.PacketRefused)
    assert errors[0].data == {"event": "admin:reset"}


async def test_a_refusal_without_error_listener_is_logged_below_error(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sio = make_server()
    sio.use_packet(lambda socket, event, args: RuntimeError("nope"))
    sio.on("x", lambda socket: "ran")
    await nursery.start(sio.run)
    with caplog.at_level(logging.DEBUG, "trio_sio"):
        async with open_raw_client(sio) as raw:
            await raw.connect()
            await raw.send('421["x"]')
            await quiet(raw)
    assert any("refused" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_middleware_returning_nonsense_is_a_bug_of_the_app(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sio = make_server()
    errors: list[Exception] = []
    sio.use_packet(lambda socket, event, args: 42)
    sio.on("connection", lambda socket, auth: socket.on("error", errors.append))
    sio.on("x", lambda socket: "ran")
    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect()
        await raw.send('421["x"]')
        await quiet(raw)
    assert len(errors) == 1 and isinstance(errors[0], TypeError)


async def test_parent_namespace_packet_middleware_reaches_its_children(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, no_errors: Any
) -> None:
    sio = make_server()
    parent = sio.of(re.compile(r"/room-\d+"))
    parent.on("x", lambda socket, *args: list(args))
    parent.use_packet(lambda socket, event, args: [*args, "parent"])
    await nursery.start(sio.run)
    async with open_raw_client(sio) as raw:
        await raw.connect("/room-1")
        child = parent.children["/room-1"]
        child.use_packet(lambda socket, event, args: [*args, "child"])
        await raw.send('42/room-1,1["x",0]')
        await raw.expect('43/room-1,1[[0,"parent","child"]]')
        parent.use_packet(lambda socket, event, args: [*args, "parent again"])
        await raw.send('42/room-1,2["x",0]')
        await raw.expect('43/room-1,2[[0,"parent","parent again","child"]]')


async def test_rate_limit_is_a_token_bucket_per_socket(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, no_errors: Any
) -> None:
    sio = make_server()
    limit = trio_sio.RateLimit(rate=0.5, burst=3, events={"msg"})
    sio.use_packet(limit)
    refused: list[str] = []
    sio.on("msg", lambda socket, i: i)
    sio.on("free", lambda socket, i: i)

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: Any) -> None:
        socket.on("error", lambda err: refused.append(f"{socket.id}:{err}"))

    async def burst(raw: RawClient, first: int, n: int, expect: list[int]) -> None:
        for i in range(first, first + n):
            await raw.send(f'42{i}["msg",{i}]')
        await trio.testing.wait_all_tasks_blocked()
        for i in expect:
            await raw.expect(f"43{i}[{i}]")
        await quiet(raw)

    await nursery.start(sio.run)
    async with open_raw_client(sio) as a, open_raw_client(sio) as b:
        sid_a = await a.connect()
        await b.connect()
        await burst(a, 0, 5, [0, 1, 2])  # the burst, then two refused
        assert refused == [f"{sid_a}:rate limit exceeded"] * 2
        await burst(b, 10, 3, [10, 11, 12])  # another socket: a bucket of its own
        await a.send('4299["free",99]')  # other events are not limited
        await a.expect("4399[99]")
        # Each quiet() waited a virtual second: 3 s since a's burst, 1.5 tokens back.
        await trio.sleep(1)
        await burst(a, 20, 3, [20])
        await trio.sleep(10)  # capped at the burst
        await burst(a, 30, 4, [30, 31, 32])
        assert len(limit._buckets) == 2
    with pytest.raises(ValueError):
        trio_sio.RateLimit(rate=0)
    with pytest.raises(ValueError):
        trio_sio.RateLimit(rate=1, burst=0)
