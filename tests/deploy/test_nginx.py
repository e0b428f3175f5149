"""Two trio_sio processes behind a real nginx, sharing broadcasts through a real Redis.

The set-up of docs/scaling.rst: two nodes (``cluster_app.py``, with the Redis adapter), nginx
in front with ``ip_hash`` (sticky sessions, which HTTP long-polling needs: every request of a
session must reach the node that holds it) and the WebSocket proxy headers (``Upgrade``,
``Connection``, ``proxy_http_version 1.1``).

Every test client comes from 127.0.0.1, so ``ip_hash`` sends all of them to the same node
(and a second loopback source such as 127.0.0.2 would not help: for IPv4, ``ip_hash`` keys on
the first three bytes of the address only). To prove that a broadcast crosses nodes anyway,
the test also connects clients to each node directly, next to the clients through nginx:
a broadcast made by the node nginx does *not* use reaches the clients behind nginx, and one
made by a client behind nginx reaches the clients of both nodes.

A second test shows why the stickiness matters: with nginx's default round-robin, a
polling client cannot even connect (its second request lands on the other node, which does
not know the session), while WebSocket-only clients, whose connection is one long request,
work on both nodes.

Needs nginx and redis-server (``apt-get install nginx redis-server``); skipped without them,
except under CI, where that is an error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

import trio_sio

from .conftest import Nginx, Node

WAIT = 10.0  # seconds for one expectation


class Peer:
    """A client and the ``news`` broadcasts it received."""

    def __init__(self, label: str, url: str, transports: Sequence[str]) -> None:
        self.label = label
        self.client = trio_sio.Client(
            url, transports=transports, reconnection=False, connect_timeout=WAIT
        )
        self.news: list[tuple[Any, str]] = []
        self._changed = trio.Event()

        @self.client.on("news")
        def news(payload: Any, node: str) -> None:
            self.news.append((payload, node))
            self._changed.set()
            self._changed = trio.Event()

    async def node(self) -> str:
        """Which node serves this client (asked over its current transport)."""
        with trio.fail_after(WAIT):
            answer = await self.client.emit_with_ack("whoami")
        return str(answer["node"])

    async def wait_news(self, count: int) -> None:
        with trio.fail_after(WAIT):
            while len(self.news) < count:
                await self._changed.wait()

    def __repr__(self) -> str:
        return f"<{self.label} on {self.client.transport}: {self.news}>"


@asynccontextmanager
async def connected(*peers: Peer) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for peer in peers:  # bounded by the clients' connect_timeout
            await stack.enter_async_context(peer.client)
        yield


async def wait_websocket(peer: Peer) -> None:
    """Wait for a polling client's upgrade to WebSocket."""
    with trio.fail_after(WAIT):
        while peer.client.transport != "websocket":
            await trio.sleep(0.02)


def assert_no_nginx_errors(nginx: Nginx) -> None:
    log = (nginx.workdir / "error.log").read_text()
    levels = ("[error]", "[crit]", "[alert]", "[emerg]")
    assert not any(level in log for level in levels), nginx.log()


async def test_broadcast_reaches_polling_and_websocket_clients_behind_nginx_and_both_nodes(
    nodes: dict[str, Node], sticky_nginx: Nginx
) -> None:
    via_nginx = [
        Peer("nginx/polling", sticky_nginx.url, ["polling"]),
        Peer("nginx/websocket", sticky_nginx.url, ["websocket"]),
        Peer("nginx/upgrade", sticky_nginx.url, ["polling", "websocket"]),
    ]
    direct = [
        Peer(f"{name}/{transport}", node.url, [transport])
        for name, node in nodes.items()
        for transport in ("polling", "websocket")
    ]
    everyone = via_nginx + direct
    async with connected(*everyone):
        # Direct clients are where they were sent; nginx sends every client from 127.0.0.1
        # to the same node, for every request: many polling requests ask, all reach it.
        for peer in direct:
            assert await peer.node() == peer.label.split("/")[0]
        behind = await via_nginx[0].node()
        for _ in range(5):
            for peer in via_nginx:
                assert await peer.node() == behind, peer
        await wait_websocket(via_nginx[2])
        assert await via_nginx[2].node() == behind
        (other,) = set(nodes) - {behind}
        assert via_nginx[0].client.transport == "polling"

        # The node nginx does not use broadcasts: the clients behind nginx get it via Redis.
        shouter = next(p for p in direct if p.label.startswith(other))
        with trio.fail_after(WAIT):
            assert await shouter.client.emit_with_ack("shout", {"n": 1}) == other
        for peer in everyone:
            await peer.wait_news(1)

        # A polling client behind nginx makes its node broadcast: both nodes deliver.
        with trio.fail_after(WAIT):
            assert await via_nginx[0].client.emit_with_ack("shout", {"n": 2}) == behind
        for peer in everyone:
            await peer.wait_news(2)

        await trio.sleep(0.3)  # anything extra (a duplicate) would have come by now
        for peer in everyone:
            assert peer.news == [({"n": 1}, other), ({"n": 2}, behind)], peer

    assert_no_nginx_errors(sticky_nginx)


async def test_without_sticky_sessions_polling_fails_and_websocket_only_works(
    nodes: dict[str, Node], round_robin_nginx: Nginx
) -> None:
    # One nginx worker, nothing else through it: round-robin alternates the two nodes.
    first = Peer("rr/websocket-1", round_robin_nginx.url, ["websocket"])
    second = Peer("rr/websocket-2", round_robin_nginx.url, ["websocket"])
    async with connected(first, second):
        assert {await first.node(), await second.node()} == set(nodes)
        with trio.fail_after(WAIT):
            await first.client.emit_with_ack("shout", "across")
        for peer in (first, second):
            await peer.wait_news(1)
            assert peer.news == [("across", await first.node())]

        # The handshake reaches one node, the next request of the session the other one,
        # which answers 400 "Session ID unknown".
        polling = Peer("rr/polling", round_robin_nginx.url, ["polling"])
        with pytest.raises(trio_sio.ConnectError):
            async with polling.client:
                await polling.node()  # pragma: no cover - the connection must fail

    access = (round_robin_nginx.workdir / "access.log").read_text()
    assert '" 400 ' in access, round_robin_nginx.log()
