"""A long-polling GET whose connection closes while it is parked ends its session at once.

The server keeps a polling client's GET waiting until it has packets to send (up to
``ping_interval``). If the client goes away meanwhile (a closed tab, a FIN or a reset), the
session would otherwise last until the heartbeat gives up, up to ``ping_interval +
ping_timeout`` seconds, holding its socket, rooms and queue. Both front ends therefore
watch the connection of a parked GET, and end the session with ``"transport close"`` as soon
as it closes, as the JavaScript server does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Awaitable, Callable

import trio

from ..engineio.config import HttpResponse, RequestHead
from ..engineio.server import EngineServer
from ..protocol.engineio import CloseReason, Transport

__all__ = ["answer_poll", "is_poll"]

log = logging.getLogger("trio_sio.frontends")


def is_poll(head: RequestHead) -> bool:
    """Whether ``head`` is a GET of an open polling session (one that may be parked)."""
    return head.method == "GET" and "sid" in head.query


async def answer_poll(
    server: EngineServer,
    head: RequestHead,
    body: AsyncIterable[bytes],
    content_length: int | None,
    client_gone: Callable[[], Awaitable[bool]],
) -> HttpResponse | None:
    """Answer a polling GET with ``server.handle_http`` while ``client_gone()`` watches its
    connection.

    Args:
        client_gone: blocks until the client closed its connection (returns True) or until
            watching is no longer possible or needed (returns False: the GET is then simply
            answered).

    Returns:
        The response, or None if the client went away first: the GET was then cancelled
        (it took no packets) and its session is closed as ``"transport close"``, at once
        and without a graceful close (nobody is left to read it).

    Blocks: as long as the GET is parked. Cancellation cancels both.
    """
    response: HttpResponse | None = None
    gone = False
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            nonlocal gone
            if await client_gone():
                gone = True
                nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        response = await server.handle_http(head, body, content_length)
        nursery.cancel_scope.cancel()
    if gone and response is None:
        socket = server.started_session(head.query["sid"])
        if socket is not None and socket.transport is Transport.POLLING:
            log.debug("session %s: its parked GET's connection closed", socket.sid)
            socket._request_close(CloseReason.TRANSPORT_CLOSE, graceful=False)
    return response
