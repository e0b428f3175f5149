"""Redis outages, with a real redis-server killed and started again by the tests.

- Each outage is ridden out by re-subscribing within a second of Redis answering again, on
  the fifth outage as on the first (coredis's own pub/sub retry policy, whose back-off kept
  growing from one outage to the next, is not used).
- Messages to other nodes made during an outage wait in a bounded queue: the first
  ``publish_queue_size`` are published in order once the node is back, the rest are dropped
  and counted.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import coredis
import pytest
import trio
from interop.tcp_proxy import TcpProxy

import trio_sio
from trio_sio.adapters._redis_wire import decode_broadcast
from trio_sio.adapters.redis import RedisAdapterFactory, create_adapter
from trio_sio.adapters.redis_emitter import open_emitter
from trio_sio.testing import open_raw_client

from .conftest import RedisServer

OUTAGES = 5
OUTAGE_SECONDS = 2.0


def factory_of(sio: trio_sio.Server) -> RedisAdapterFactory:
    factory = sio.adapter_factory
    assert isinstance(factory, RedisAdapterFactory)
    return factory


async def wait_subscribed(factory: RedisAdapterFactory, subscribed: bool, limit: float) -> float:
    """Seconds until the node's subscriptions are (or are no longer) in place."""
    start = trio.current_time()
    with trio.fail_after(limit):
        while factory.statistics().subscribed is not subscribed:
            await trio.sleep(0.005)
    return trio.current_time() - start


async def test_five_outages_in_a_row_each_resubscribe_within_a_second(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    if redis_server.process is None:
        redis_server.start()
    key = "t" + secrets.token_hex(4)
    sio = trio_sio.Server(adapter=create_adapter(redis_server.url, key=key))
    factory = factory_of(sio)
    timings: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(sio.run)
        async with open_raw_client(sio) as raw:
            await raw.connect()
            for outage in range(1, OUTAGES + 1):
                redis_server.stop()
                await wait_subscribed(factory, False, 5)
                await trio.sleep(OUTAGE_SECONDS)  # the outage
                redis_server.start()  # returns once Redis answers PING
                timings.append(await wait_subscribed(factory, True, 5))
                assert factory.statistics().outages == outage
                # and the subscriptions work: an emitter's broadcast reaches the socket
                async with open_emitter(redis_server.url, key=key) as emitter:
                    await emitter.emit("back", outage)
                with trio.fail_after(5):
                    await raw.expect(f'42["back",{outage}]')
        nursery.cancel_scope.cancel()
    print("re-subscribed after", ", ".join(f"{t:.3f}" for t in timings), "s")
    assert len(timings) == OUTAGES
    assert max(timings) < 1.0, timings
    # an outage is a warning, never an error with a traceback
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_messages_queued_during_an_outage_are_bounded_and_published_in_order(
    redis_url: str,
) -> None:
    key = "t" + secrets.token_hex(4)
    port = int(redis_url.rsplit(":", 1)[1])
    observed: list[Any] = []
    with TcpProxy(port) as proxy:
        # the node reaches Redis through the proxy; the observer directly
        sio = trio_sio.Server(
            adapter=create_adapter(f"redis://127.0.0.1:{proxy.port}", key=key, publish_queue_size=5)
        )
        factory = factory_of(sio)
        async with (
            coredis.Redis.from_url(redis_url, decode_responses=False) as observer,
            observer.pubsub(ignore_subscribe_messages=True) as pubsub,
            trio.open_nursery() as nursery,
        ):
            await pubsub.psubscribe(f"{key}#/#*")
            await nursery.start(sio.run)
            proxy.down()
            await wait_subscribed(factory, False, 5)
            for n in range(8):
                await sio.emit("n", n)  # local delivery goes on; these wait for Redis
            stats = factory.statistics()
            assert (stats.queued, stats.dropped) == (5, 3)
            proxy.up()
            with trio.fail_after(5):
                while len(observed) < 5:
                    message = await pubsub.get_message()
                    if message is not None:
                        _, packet, _ = decode_broadcast(message["data"], "/")
                        observed.append(packet.data)
            with trio.move_on_after(0.5):
                extra = await pubsub.get_message()
                pytest.fail(f"more than the queue held: {extra!r}")
            assert observed == [["n", n] for n in range(5)]  # the first five, in order
            stats = factory.statistics()
            assert (stats.subscribed, stats.queued, stats.dropped) == (True, 0, 3)
            nursery.cancel_scope.cancel()
