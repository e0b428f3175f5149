"""The typed application of ``typed_app.py`` (checked by ``mypy --strict`` in
``nox -s typecheck``), run for real: its server and its client over ``trio_sio.testing``'s
in-memory network, in virtual time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
import typed_app

import trio_sio
from trio_sio.testing import MemoryNetwork

Serve = Callable[[trio_sio.Server], Awaitable[MemoryNetwork]]


async def test_a_chat_session_round_trip(
    sio_serve: Serve, autojump_clock: trio.testing.MockClock
) -> None:
    network = await sio_serve(typed_app.create_server())
    session = await typed_app.run_client(
        "http://testserver", user="alice", connector=network.connect
    )
    assert session.welcome == "alice"
    assert session.message_status == {"status": "ok"}
    assert session.renamed is True
    assert session.job_total == 6
    # the broadcasts reached the sender too (sio.to("lobby"), chat.to("general")); the
    # rename was on "/" only
    assert session.messages[0] == ("alice", "hello")
    assert session.said == [("alice", "hi all")]
    # the server's socket.timeout(5).emit("ping", callback=...) got the client's ack
    assert session.whoami == ("alice2", "pong")
    assert session.acked == [{"status": "ok"}]


async def test_a_bad_token_is_refused_by_the_middleware(
    sio_serve: Serve, autojump_clock: trio.testing.MockClock
) -> None:
    network = await sio_serve(typed_app.create_server())
    with pytest.raises(trio_sio.ConnectionRefused) as refused:
        await typed_app.run_client(
            "http://testserver", user="mallory", token="guess", connector=network.connect
        )
    assert refused.value.message == "unauthorized"
    assert refused.value.data == {"hint": "send a valid token"}
