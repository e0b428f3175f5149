"""A Redis adapter that speaks the wire format of the official ``@socket.io/redis-adapter``.

trio_sio nodes and Node.js socket.io nodes (with ``@socket.io/redis-adapter`` 8.x, classic
pub/sub) can share one cluster: broadcasts, ``fetch_sockets``, ``sockets_join``/``leave``,
``disconnect_sockets``, server-side emits and broadcasts with acks cross between them::

    from trio_sio.adapters.redis import create_adapter

    sio = trio_sio.Server(adapter=create_adapter("redis://127.0.0.1:6379"))

The server runs the adapter's background work (:meth:`RedisAdapterFactory.run`) while it
serves: one Redis connection for publishing and commands, one for the subscriptions.

Local delivery never waits on Redis: a broadcast is delivered to this node's sockets at once,
and what goes to the other nodes waits in a bounded queue (``publish_queue_size`` messages)
for a publisher task. While Redis is unreachable the queue keeps the first
``publish_queue_size`` messages, in order, and publishes them once this node's subscriptions
are back; messages beyond it are dropped (counted in :meth:`RedisAdapterFactory.statistics`,
with one warning per outage). The subscriptions are made again within
``max_reconnect_delay`` of Redis answering, on every outage. Operations that
wait for other nodes (``fetch_sockets``, server-side emits with acks, broadcasts with acks)
end at their timeout with what came, as an error that carries it (:class:`ClusterTimeoutError`,
or ``AckTimeoutError.replies``); while Redis is unreachable they end at once the same way,
with this node's part only.

The module is split by role: :mod:`._redis_factory` (the connection, shared by the
namespaces), :mod:`._redis_adapter` (one namespace), :mod:`._redis_wire` (the messages).
"""

from __future__ import annotations

try:
    import coredis
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the Redis adapter needs: pip install 'trio-sio[redis]'") from exc

from ._redis_adapter import ClusterTimeoutError, RedisAdapter
from ._redis_factory import RedisAdapterFactory, RedisStatistics, RedisUnavailable

__all__ = [
    "ClusterTimeoutError",
    "RedisAdapter",
    "RedisAdapterFactory",
    "RedisStatistics",
    "RedisUnavailable",
    "coredis",
    "create_adapter",
]


def create_adapter(
    client: str | coredis.Redis[bytes] | coredis.RedisCluster[bytes] = "redis://127.0.0.1:6379",
    *,
    key: str = "socket.io",
    requests_timeout: float = 5.0,
    publish_queue_size: int = 1000,
    connect_timeout: float = 5.0,
    max_reconnect_delay: float = 0.5,
    cluster: bool = False,
) -> RedisAdapterFactory:
    """The adapter factory to pass as ``Server(adapter=...)``.

    Args:
        client: the Redis server, as a URL: ``redis://[[user]:password@]host:port[/db]``
            (``rediss://`` for TLS; ``?ssl_cert_reqs=none`` and the other query options of
            ``coredis.Redis.from_url``), or a ready ``coredis.Redis`` client made with
            ``decode_responses=False`` (the adapter enters it while the server serves), or
            a ``coredis.RedisCluster``.
        key: the channel prefix; every node of a cluster must use the same.
        requests_timeout: seconds to wait for other nodes' answers (``fetch_sockets``...),
            and for Redis to take one published message (longer: an outage).
        publish_queue_size: messages to other nodes that may wait while Redis is slow or
            unreachable; beyond that they are dropped.
        connect_timeout: seconds ``serve()`` waits for Redis at start before failing.
        max_reconnect_delay: the longest pause between two attempts to reconnect during an
            outage (the first ones come sooner: 0.05 s, 0.1 s, ...).
        cluster: the URL names one node of a Redis Cluster (classic pub/sub over a cluster:
            every message reaches every node of it; see the sharded adapter for better).
    """
    return RedisAdapterFactory(
        client,
        key=key,
        requests_timeout=requests_timeout,
        publish_queue_size=publish_queue_size,
        connect_timeout=connect_timeout,
        max_reconnect_delay=max_reconnect_delay,
        cluster=cluster,
    )
