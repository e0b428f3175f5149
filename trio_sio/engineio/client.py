"""Engine.IO v4 client on Trio: HTTP long-polling, WebSocket, and the probe upgrade.

Use :func:`open_engine_client`::

    async with open_engine_client("http://localhost:3000") as client:
        await client.send("hello")
        async for message in client:
            ...

Each client runs its own tasks, all inside the ``async with`` block: a receive loop (the GET
loop, while on polling), a send loop (POST batches, or frames that could not be written at
once), a heartbeat watchdog, and, when upgrading, the upgrade task. Leaving the block closes
the session and ends every one of them.

On WebSocket, a message sent while nothing else is being written goes out at once, from the
sending task. With ``read_in_receive`` there is no receive task either:
:meth:`EngineClient.receive` reads the WebSocket in the calling task, every packet one read
brought at once, answering pings on the way. So a message then costs no task switch either
way.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import trio

from ._client_session import ConnectError, EngineClient, UpgradeError
from ._client_transports import Endpoint
from ._cookies import CookieJar
from ._exceptions import single_leaf
from ._http_client import Connector
from ._proxy import ProxySetting

__all__ = ["ConnectError", "EngineClient", "UpgradeError", "open_engine_client"]


@asynccontextmanager
async def open_engine_client(
    url: str,
    *,
    path: str = "/engine.io/",
    transports: Sequence[str] = ("polling", "websocket"),
    upgrade: bool = True,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    message_queue_size: int = 64,
    send_queue_size: int = 64,
    connect_timeout: float = 20.0,
    connector: Connector | None = None,
    proxy: ProxySetting = None,
    cookies: CookieJar | bool = True,
    per_message_deflate: bool = True,
    read_in_receive: bool = False,
) -> AsyncIterator[EngineClient]:
    """Open an Engine.IO v4 session; closing the block closes it.

    The first name in ``transports`` is the transport the session starts on. Starting on
    polling, the client probes a WebSocket when ``upgrade`` is true, ``"websocket"`` is
    in ``transports`` and the server offers it; if the probe fails it stays on polling.

    Args:
        url: ``http(s)://`` or ``ws(s)://`` address of the server. Its path is ignored
            (``path`` is used); its query is sent with every request.
        path: the Engine.IO path (``"/socket.io/"`` under Socket.IO).
        transports: ``"polling"`` and/or ``"websocket"``, in order of preference.
        upgrade: whether a polling session may move to WebSocket.
        query: extra query parameters for every request.
        headers: extra HTTP header fields for every request and the WebSocket handshake.
        ssl_context: TLS settings for https/wss (default: verified, system trust store).
        message_queue_size: received messages kept for :meth:`EngineClient.receive`; when
            full the client stops reading (and so stops answering pings: read promptly).
        send_queue_size: messages :meth:`EngineClient.send` may queue before blocking.
        connect_timeout: seconds allowed for the handshake (and for the upgrade probe).
        connector: ``async connector(host, port, ssl_context) -> trio.abc.Stream`` used
            instead of TCP (+TLS); ``trio_sio.testing`` uses it to connect in memory.
        proxy: an ``http://[user:password@]host:port`` proxy that every connection
            tunnels through with ``CONNECT``; None (the default) reads ``HTTPS_PROXY``
            (https/wss) or ``HTTP_PROXY`` (http/ws) and ``NO_PROXY`` from the environment;
            False uses no proxy.
        cookies: keep the cookies responses set and send them back with later requests
            and the WebSocket handshake (a cookie-sticky load balancer needs that): True
            (the default) for a jar of this session, a :class:`CookieJar` to share one
            (across reconnections, say), or False for none.
        per_message_deflate: offer permessage-deflate on the WebSocket (as
            socket.io-client does); used if the server accepts it
            (:attr:`EngineClient.deflate`). A message that inflates beyond 16 MiB closes
            the WebSocket.
        read_in_receive: on WebSocket, read in the task that calls
            :meth:`EngineClient.receive` (when nothing is queued) instead of a task of the
            client's: no task switch per message, but pings are answered only while someone
            receives, so use it only when a task receives all the time (the Socket.IO
            client does).

    Yields:
        The connected client.

    Raises:
        ConnectError: the handshake failed or timed out (cause chained).
        ValueError: an invalid argument (a ``proxy`` that is not an ``http://`` URL, say).

    Leaving the block calls :meth:`EngineClient.aclose` and ends every task. An exception
    from the block propagates unchanged; an ``ExceptionGroup`` escapes only when several
    exceptions happen at once (e.g. the block fails while a background task crashes).

    Cancellation:
        Cancelling during the handshake abandons it (no session is left behind). Being
        cancelled while inside the block closes the session without the goodbye.
    """
    names = tuple(transports)
    if not names or any(n not in ("polling", "websocket") for n in names):
        raise ValueError(f"transports must be 'polling' and/or 'websocket', not {names!r}")
    if message_queue_size < 0 or send_queue_size < 1:
        raise ValueError("message_queue_size must be >= 0 and send_queue_size >= 1")
    jar = CookieJar() if cookies is True else (None if cookies is False else cookies)
    endpoint = Endpoint.from_url(
        url,
        path,
        query,
        headers,
        ssl_context,
        connector=connector,
        proxy=proxy,
        cookies=jar,
        deflate=per_message_deflate,
    )
    client = EngineClient(
        endpoint,
        transports=names,
        upgrade=upgrade,
        message_queue_size=message_queue_size,
        send_queue_size=send_queue_size,
        connect_timeout=connect_timeout,
        read_in_receive=read_in_receive,
    )
    single: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(client._run)
            try:
                await client._connect()
                yield client
            finally:
                await client.aclose()
    except BaseExceptionGroup as group:
        single = single_leaf(group)
        if single is None:
            raise
    if single is not None:
        raise single
