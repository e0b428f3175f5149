"""The Redis adapter's connection: one per server, shared by the adapters of its namespaces.

:class:`RedisAdapterFactory` makes one :class:`~trio_sio.adapters._redis_adapter.RedisAdapter`
per namespace and runs their Redis I/O: a client for publishing and commands, one pub/sub
connection for the subscriptions, and a bounded queue of messages to other nodes.

Outages. The pub/sub connection is made with no retry policy of the Redis client's own (whose
exponential back-off, never reset after a success, made each re-subscription slower than the
last); when it is lost, the whole session (client, subscriptions, publisher) ends and is made
again here, after 0.05 s, 0.1 s, ... at most ``max_reconnect_delay`` (0.5 s) between
attempts, counted from zero again after every successful session. So the subscriptions are
back within ``max_reconnect_delay`` plus one connection's set-up of Redis answering again, on
every outage.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit

import trio

try:
    import anyio
    import coredis
    from coredis.connection import TCPLocation
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the Redis adapter needs: pip install 'trio-sio[redis]'") from exc

from ..protocol.errors import SocketIOError
from ._redis_wire import new_id
from .base import SocketRegistry

if TYPE_CHECKING:
    from ._redis_adapter import RedisAdapter

__all__ = ["RedisAdapterFactory", "RedisConnection", "RedisStatistics", "RedisUnavailable"]

log = logging.getLogger("trio_sio.adapters.redis")

#: What a lost or refused Redis connection raises (the Redis client's clean-up of a
#: connection that is already gone raises some of these too).
_CONNECTION_ERRORS = (
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    OSError,
    coredis.exceptions.RedisError,
    trio.TooSlowError,
)


class RedisUnavailable(SocketIOError):
    """Redis could not be reached when the server started."""


@dataclass(frozen=True, slots=True)
class RedisStatistics:
    """The state of a Redis adapter's connection (:meth:`RedisAdapterFactory.statistics`).

    Attributes:
        subscribed: the subscriptions are in place (False during an outage).
        outages: connections lost since the server started.
        queued: messages to other nodes waiting for Redis.
        dropped: messages to other nodes dropped because the queue was full, since start.
    """

    subscribed: bool
    outages: int
    queued: int
    dropped: int


A = TypeVar("A")

#: A Redis client: one server (``coredis.Redis``) or a cluster (``coredis.RedisCluster``).
Client = coredis.Redis[bytes] | coredis.RedisCluster[bytes]

#: A message to other nodes: (channel, payload) for PUBLISH; a subclass may queue other
#: kinds (the Streams adapter: an entry for XADD) and write them in ``_write``.
Outgoing = tuple[str, Any]


class RedisConnection(Generic[A]):
    """The Redis I/O of a cluster adapter, shared by the adapters (of type ``A``) of the
    server's namespaces: the sessions and their renewal after an outage, the pub/sub
    subscriptions, the bounded queue of messages to other nodes.

    Subclasses say what to subscribe to (``_subscribe``), how to hand a pub/sub message to
    an adapter (``_dispatch``), what else runs in a session (``_session_tasks``) and how to
    write a queued message (``_write``). The server calls :meth:`run` while it serves.

    Attributes:
        url: where Redis is (for a client object given ready: its description).
        key: the channel prefix.
        uid: this node's id in the cluster.
    """

    def __init__(
        self,
        client: str | Client,
        *,
        key: str,
        requests_timeout: float,
        publish_queue_size: int,
        connect_timeout: float,
        max_reconnect_delay: float = 0.5,
        cluster: bool = False,
    ) -> None:
        #: a URL names one node of a Redis Cluster (a client given ready says it itself)
        self.cluster = cluster or isinstance(client, coredis.RedisCluster)
        if isinstance(client, str):
            self.url = client
            self._given: Client | None = None
        else:
            if client.decode_responses:
                raise ValueError("the Redis client must be made with decode_responses=False")
            self.url = repr(client)
            self._given = client
        self.key = key
        self.requests_timeout = requests_timeout
        self.connect_timeout = connect_timeout
        self.max_reconnect_delay = max_reconnect_delay
        self.uid = new_id()
        self._adapters: dict[str, A] = {}
        self._client: Client | None = None
        self._nursery: trio.Nursery | None = None
        self._out_send, self._out_recv = trio.open_memory_channel[Outgoing](publish_queue_size)
        # taken from the queue, not yet published: published first by the next session
        self._unsent: Outgoing | None = None
        # namespaces made while running, to subscribe to (all are subscribed at each start)
        self._new_send, self._new_recv = trio.open_memory_channel[A](math.inf)
        self._dropping = False
        self._dropped = 0
        self._dropped_in_outage = 0
        self._outages = 0
        self._subscribed = False

    def __call__(self, namespace: SocketRegistry) -> A:
        adapter = self._make_adapter(namespace)
        self._adapters[namespace.name] = adapter
        self._new_send.send_nowait(adapter)
        return adapter

    # -- what subclasses define -----------------------------------------------------------------
    def _make_adapter(self, namespace: SocketRegistry) -> A:
        raise NotImplementedError

    async def _subscribe(self, pubsub: Any, adapter: A) -> None:
        """Subscribe to the channels of ``adapter``'s namespace."""
        raise NotImplementedError

    async def _dispatch(self, message: Any) -> None:
        """Hand a pub/sub message to its adapter. Must not raise for bad input."""
        raise NotImplementedError

    def _session_tasks(self, nursery: trio.Nursery, client: Client, pubsub: Any) -> None:
        """Start the tasks of a session besides the subscriptions and the publisher."""

    async def _write(self, client: Client, message: Outgoing) -> None:
        """Write one queued message to Redis."""
        channel, data = message
        await client.publish(channel, data)

    def statistics(self) -> RedisStatistics:
        """The connection's state and the queue of messages to other nodes."""
        queued = self._out_send.statistics().current_buffer_used
        return RedisStatistics(
            subscribed=self._subscribed,
            outages=self._outages,
            queued=queued + (self._unsent is not None),
            dropped=self._dropped,
        )

    # -- running --------------------------------------------------------------------------------
    def _new_client(self) -> Client:
        if self._given is not None:
            return self._given  # entered by each session (coredis counts the entries)
        if self.cluster:
            # the start-up node given as coredis wants it (its from_url would warn otherwise)
            location = urlsplit(self.url)
            node = TCPLocation(location.hostname or "127.0.0.1", location.port or 6379)
            return coredis.RedisCluster.from_url(
                self.url, decode_responses=False, startup_nodes=[node]
            )
        return coredis.Redis.from_url(self.url, decode_responses=False)

    def _open_pubsub(self, client: Client) -> Any:
        """The subscriber of a session, with no retry policy of its own: a lost connection
        ends the session, and :meth:`run` makes it again at its pace."""
        return client.pubsub(ignore_subscribe_messages=True, retry_policy=None)

    async def _numsub(self, client: Client, channel: str) -> int:
        if isinstance(client, coredis.RedisCluster):
            # a (not sharded) subscription is known to the node it was made on only
            total = 0
            for node in client.primaries:
                async with node:
                    total += sum((await node.pubsub_numsub(channel)).values())
            return total
        counts = await client.pubsub_numsub(channel)
        return int(next(iter(counts.values()), 0))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, subscribe, and serve the cluster's messages until cancelled.

        Blocks until cancelled; ``task_status.started()`` once the subscriptions are in place.

        Raises:
            RedisUnavailable: Redis did not answer within ``connect_timeout`` at start.

        Later outages are ridden out: the connection is made again (see the module's
        docstring for how soon) and the subscriptions renewed.
        """
        failure: BaseException | None = None
        try:
            with trio.fail_after(self.connect_timeout):
                async with self._new_client() as client:
                    await client.ping()
        except* _CONNECTION_ERRORS as group:
            failure = group.exceptions[0]
        if failure is not None:
            raise RedisUnavailable(f"Redis at {self.url} is unreachable: {failure!r}")
        status: trio.TaskStatus[None] | None = task_status
        attempt = 0
        while True:
            try:
                await self._serve(status)
            except* _CONNECTION_ERRORS as group:
                # when cancelled, the Cancelled part still propagates from here
                log.debug("Redis connection ended: %r", group.exceptions)
            if self._subscribed:  # a session that served: an outage begins
                self._subscribed = False
                self._outages += 1
                attempt = 0
                status = None
                log.warning("Redis connection lost; reconnecting")
            attempt += 1
            await trio.sleep(min(0.05 * attempt, self.max_reconnect_delay))

    async def _serve(self, task_status: trio.TaskStatus[None] | None) -> None:
        async with self._new_client() as client:
            self._client = client
            pubsub = self._open_pubsub(client)
            async with pubsub, trio.open_nursery() as nursery:
                try:
                    for adapter in self._adapters.values():
                        await self._subscribe(pubsub, adapter)
                    self._nursery = nursery
                    self._subscribed = True
                    if self._outages:
                        log.warning("Redis is reachable again; subscriptions renewed")
                    nursery.start_soon(self._subscribe_later, pubsub)
                    nursery.start_soon(self._publisher, client)
                    self._session_tasks(nursery, client, pubsub)
                    if task_status is not None:
                        task_status.started()
                    while True:  # not `async for`: that ends while a lost connection is made again
                        message = await pubsub.get_message()
                        if message is not None:
                            await self._dispatch(message)
                finally:
                    self._client = None
                    self._nursery = None

    async def _subscribe_later(self, pubsub: Any) -> None:
        while True:  # namespaces made after the start (dynamic ones, or sio.of() later)
            adapter = await self._new_recv.receive()
            await self._subscribe(pubsub, adapter)

    async def _publisher(self, client: Client) -> None:
        """Publish the queued messages in order. A failure ends the session (an outage):
        the message is kept and published first by the next one."""
        while True:
            if self._unsent is None:
                self._unsent = await self._out_recv.receive()
            with trio.fail_after(self.requests_timeout):
                await self._write(client, self._unsent)
            self._unsent = None
            if self._dropping:
                self._dropping = False
                log.warning(
                    "publishing to other nodes resumed; %d messages were dropped meanwhile",
                    self._dropped_in_outage,
                )
                self._dropped_in_outage = 0

    def publish(self, channel: str, data: Any) -> None:
        """Queue a message for the other nodes; never blocks (drops it if the queue is full)."""
        try:
            self._out_send.send_nowait((channel, data))
        except trio.WouldBlock:
            self._dropped += 1
            self._dropped_in_outage += 1
            if not self._dropping:
                self._dropping = True
                log.warning(
                    "Redis is slow or unreachable and %d messages wait: messages to other "
                    "nodes are dropped",
                    self._out_send.statistics().current_buffer_used,
                )

    async def server_count(self, channel: str) -> int | None:
        """Nodes subscribed to ``channel`` (a request channel), this one included; None
        when Redis cannot tell (unreachable)."""
        client = self._client
        if client is None:
            await trio.lowlevel.checkpoint()
            return None
        try:
            with trio.fail_after(self.requests_timeout):
                count = await self._numsub(client, channel)
        except (trio.TooSlowError, OSError, coredis.exceptions.RedisError) as exc:
            log.debug("PUBSUB NUMSUB failed: %r", exc)
            return None
        except RuntimeError as exc:  # the session (and its client) ended meanwhile
            log.debug("PUBSUB NUMSUB cut short: %r", exc)
            return None
        return max(1, count)

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run a task for a message (a reply that must wait); dropped when not running."""
        if self._nursery is not None:
            self._nursery.start_soon(_guarded, fn, *args)


class RedisAdapterFactory(RedisConnection["RedisAdapter"]):
    """Creates one adapter per namespace (classic pub/sub, ``@socket.io/redis-adapter``)
    and runs their shared Redis I/O.

    Use :func:`trio_sio.adapters.redis.create_adapter`. The server calls :meth:`run` while it
    serves.

    Attributes:
        url: where Redis is (for a client object given ready: its description).
        key: the channel prefix.
        uid: this node's id in the cluster.
    """

    def _make_adapter(self, namespace: SocketRegistry) -> RedisAdapter:
        from ._redis_adapter import RedisAdapter  # noqa: PLC0415 - the two modules refer to each other

        return RedisAdapter(namespace, self)

    async def _subscribe(self, pubsub: Any, adapter: RedisAdapter) -> None:
        channels = adapter.channels
        await pubsub.psubscribe(channels.broadcast + "*")
        await pubsub.subscribe(channels.request, channels.response, channels.specific_response)

    async def _dispatch(self, message: Any) -> None:
        try:
            channel = _text(message.get("channel"))
            data = message.get("data")
            if not isinstance(data, bytes):
                return
            adapter = self._adapter_for(channel)
            if adapter is None:
                return
            if message.get("type") == "pmessage":
                await adapter.on_broadcast(channel, data)
            elif channel.startswith(adapter.channels.response):
                adapter.on_response(data)
            else:
                adapter.on_request(data)
        except ValueError as exc:
            log.debug("dropped a malformed cluster message: %s", exc)
        except Exception:
            log.exception("a cluster message could not be handled")

    def _adapter_for(self, channel: str) -> RedisAdapter | None:
        for prefix in (f"{self.key}#", f"{self.key}-request#", f"{self.key}-response#"):
            if channel.startswith(prefix):
                rest = channel[len(prefix) :]
                end = rest.find("#")
                adapter = self._adapters.get(rest[:end]) if end >= 0 else None
                if adapter is not None:
                    return adapter
                # a namespace name with '#' in it: find it by its full prefix
                for candidate in self._adapters.values():
                    if channel.startswith(prefix + candidate.namespace.name + "#"):
                        return candidate
                return None
        return None


async def _guarded(fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
    try:
        await fn(*args)
    except Exception:
        log.exception("a cluster task failed")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
