"""Connection state recovery with the Redis adapter: sessions are kept by the node the
client was connected to, and that node keeps the broadcasts of every node meanwhile."""

from __future__ import annotations

import json
import secrets
from typing import Any

import trio

import trio_sio
from trio_sio.adapters.redis import create_adapter
from trio_sio.testing import RawClient, open_raw_client


def make_node(url: str, key: str) -> trio_sio.Server:
    sio = trio_sio.Server(
        adapter=create_adapter(url, key=key, requests_timeout=1.0),
        connection_state_recovery=True,
    )

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        if not socket.recovered:
            socket.join("red")

    sio.on("sync", lambda socket: True)
    return sio


async def connect(raw: RawClient, auth: dict[str, Any] | None = None) -> tuple[list[str], dict]:
    """CONNECT; the events received before the reply, and the reply."""
    await raw.send("40" + (json.dumps(auth) if auth else ""))
    before: list[str] = []
    with trio.fail_after(5):
        while True:
            frame = str(await raw.receive())
            if frame.startswith("40"):
                break
            before.append(frame)
        await raw.send('4299["sync"]')  # answered once the connection handlers have run
        assert await raw.receive() == "4399[true]"
    return before, json.loads(frame[2:])


async def test_a_node_keeps_what_other_nodes_broadcast_to_its_kept_sessions(
    redis_url: str,
) -> None:
    key = "t" + secrets.token_hex(4)
    a, b = make_node(redis_url, key), make_node(redis_url, key)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        async with open_raw_client(b) as raw:
            _, reply = await connect(raw)
            await a.to("red").emit("first")
            with trio.fail_after(5):
                frame = str(await raw.receive())
            name, offset = json.loads(frame[2:])
            assert name == "first"
        with trio.fail_after(5):
            while b.main.sockets:
                await trio.sleep(0.01)
        # "red" has no socket on b now, only a kept session: b must still keep these
        await a.to("red").emit("missed", 1)
        await a.to("blue").emit("not-for-it")
        await a.emit("missed", 2)
        await trio.sleep(0.5)  # through Redis
        async with open_raw_client(b) as raw:
            before, again = await connect(raw, {"pid": reply["pid"], "offset": offset})
            assert again == reply
            assert [json.loads(f[2:])[:-1] for f in before] == [["missed", 1], ["missed", 2]]
        nursery.cancel_scope.cancel()
