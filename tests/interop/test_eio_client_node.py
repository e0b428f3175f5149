"""Our Engine.IO client against the official Node ``engine.io`` server (echo).

Real sockets and Trio's real clock; every test is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.lowlevel

from trio_sio.engineio.client import EngineClient, UpgradeError, open_engine_client
from trio_sio.protocol.errors import ConnectionClosed

pytestmark = pytest.mark.interop

MODES = {
    "polling": ("polling",),
    "websocket": ("websocket",),
    "upgrade": ("polling", "websocket"),
}
LIMIT = 5.0
EioServerFactory = Callable[..., int]  # see conftest.py


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _settle(client: EngineClient, mode: str) -> None:
    """For the upgrade mode, wait until the session runs on WebSocket."""
    if mode == "upgrade":
        await client.wait_upgraded()
        assert client.transport == "websocket"
    else:
        assert client.transport == MODES[mode][0]


async def test_text_and_binary_echo(eio_node_server: str, mode: str) -> None:
    with trio.fail_after(LIMIT):
        async with open_engine_client(eio_node_server, transports=MODES[mode]) as client:
            assert client.sid == client.open_info.sid
            for message in ("hello", "ünïcödé €", b"\x00\x01\xfe\xff", b""):
                await client.send(message)
                assert await client.receive() == message
            await _settle(client, mode)
            await client.send(b"after")
            assert await client.receive() == b"after"


async def test_many_messages_queued_at_once(eio_node_server: str, mode: str) -> None:
    sent: list[str | bytes] = [f"text {i}" if i % 2 else bytes([i]) * i for i in range(20)]
    with trio.fail_after(LIMIT):
        async with open_engine_client(eio_node_server, transports=MODES[mode]) as client:
            for message in sent:
                client.send_nowait(message)
            assert [await client.receive() for _ in sent] == sent


async def test_100kb_messages(eio_node_server: str, mode: str) -> None:
    text = "x€" * 50_000
    data = bytes(range(256)) * 400
    with trio.fail_after(LIMIT):
        async with open_engine_client(eio_node_server, transports=MODES[mode]) as client:
            await client.send(text)
            await client.send(data)
            assert await client.receive() == text
            assert await client.receive() == data


async def test_order_kept_across_upgrade(eio_node_server: str) -> None:
    with trio.fail_after(LIMIT):
        async with open_engine_client(eio_node_server) as client:
            assert client.transport == "polling"
            for i in range(25):
                await client.send(f"m{i}")
            await trio.lowlevel.checkpoint()
            for i in range(25, 50):
                client.send_nowait(f"m{i}" if i % 2 else f"m{i}".encode())
            expected = [f"m{i}" if i < 25 or i % 2 else f"m{i}".encode() for i in range(50)]
            assert [await client.receive() for _ in range(50)] == expected
            await client.wait_upgraded()
            assert client.transport == "websocket"
            await client.send("transport")
            assert await client.receive() == "transport:websocket"


async def test_burst_during_upgrade_in_order(eio_node_server: str) -> None:
    """Send while the probe is in flight and while polling pauses: nothing reorders."""
    with trio.fail_after(LIMIT):
        async with open_engine_client(eio_node_server) as client:
            received: list[str | bytes] = []

            async def reader() -> None:
                for _ in range(50):
                    received.append(await client.receive())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                for i in range(50):
                    await client.send(f"{i}")
                    await trio.sleep(0.004)
            assert client.transport == "websocket"
            assert received == [f"{i}" for i in range(50)]


async def test_server_close_gives_connection_closed(eio_node_server: str, mode: str) -> None:
    with trio.fail_after(LIMIT):
        async with open_engine_client(eio_node_server, transports=MODES[mode]) as client:
            await _settle(client, mode)
            await client.send("before")
            await client.send("close-me")
            assert await client.receive() == "before"
            with pytest.raises(ConnectionClosed) as info:
                await client.receive()
            assert info.value.reason == "transport close"
            assert client.close_reason == "transport close"
            with pytest.raises(ConnectionClosed):
                await client.send("too late")
            if mode == "upgrade":
                await client.wait_upgraded()  # it did upgrade before the close


async def test_client_close_is_clean(eio_node_server: str, mode: str) -> None:
    with trio.fail_after(LIMIT):
        async with open_engine_client(eio_node_server, transports=MODES[mode]) as client:
            await _settle(client, mode)
            sid = client.sid
            await client.aclose()
            assert client.close_reason == "forced close"
            with pytest.raises(ConnectionClosed):
                await client.send("x")
            with pytest.raises(ConnectionClosed):
                await client.receive()
            assert [m async for m in client] == []
            await client.aclose()  # idempotent
        # Ask the server, over a second session, why it thinks the first one ended.
        async with open_engine_client(eio_node_server, transports=("websocket",)) as other:
            await other.send(f"close-reason:{sid}")
            assert await other.receive() == "close-reason:transport close"


async def test_leaving_the_block_closes(eio_node_server: str, mode: str) -> None:
    with trio.fail_after(LIMIT):
        async with open_engine_client(eio_node_server, transports=MODES[mode]) as client:
            await _settle(client, mode)
            await client.send("queued before leaving")
        assert client.close_reason == "forced close"
        # The queued message was written before the CLOSE packet: its echo may or may not
        # have been read back before the session ended, but nothing else arrives.
        assert [m async for m in client] in ([], ["queued before leaving"])


async def test_body_exception_is_not_grouped(eio_node_server: str) -> None:
    with trio.fail_after(LIMIT), pytest.raises(KeyError):
        async with open_engine_client(eio_node_server):
            raise KeyError("mine")


async def test_heartbeat_keeps_session_alive(
    eio_node_server_factory: EioServerFactory, mode: str
) -> None:
    url = f"http://127.0.0.1:{eio_node_server_factory(200, 200)}"
    with trio.fail_after(LIMIT):
        async with open_engine_client(url, transports=MODES[mode]) as client:
            assert client.open_info.ping_interval == 200
            await trio.sleep(1.2)  # six pings, each to be answered within 200 ms
            assert client.close_reason is None
            await client.send("still here")
            assert await client.receive() == "still here"
            await _settle(client, mode)
            await trio.sleep(0.5)
            await client.send("transport")
            assert await client.receive() == f"transport:{client.transport}"


async def test_no_upgrade_when_disabled(eio_node_server: str) -> None:
    with trio.fail_after(LIMIT):
        async with open_engine_client(eio_node_server, upgrade=False) as client:
            with pytest.raises(UpgradeError):
                await client.wait_upgraded()
            assert client.transport == "polling"
        async with open_engine_client(eio_node_server, transports=("polling",)) as client:
            with pytest.raises(UpgradeError):
                await client.wait_upgraded()
