"""Opening the client's Engine.IO connection: the transports to try, in order."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from ..engineio._cookies import CookieJar
from ..engineio.client import ConnectError, EngineClient, open_engine_client
from ._options import ClientOptions

__all__ = ["Transports", "open_engine"]

log = logging.getLogger("trio_sio.client")


class Transports:
    """Which transports a client tries (``try_all_transports``), and which it starts on
    (``remember_upgrade``: WebSocket, once a connection ran on it)."""

    def __init__(self, options: ClientOptions) -> None:
        self._names = options.transports
        self._try_all = options.try_all_transports
        self._remember = options.remember_upgrade
        self.websocket_worked = False

    def plans(self) -> list[tuple[str, ...]]:
        """The ``transports`` lists to try, in order."""
        names = self._names
        if self._remember and self.websocket_worked and "websocket" in names:
            names = ("websocket", *(n for n in names if n != "websocket"))
        if not self._try_all:
            return [names]
        return [names[i:] for i in range(len(names))]


@asynccontextmanager
async def open_engine(
    options: ClientOptions, transports: Transports, cookies: CookieJar | None
) -> AsyncIterator[EngineClient]:
    """Open the Engine.IO connection, trying the next transport if one fails.

    Raises:
        ConnectError: every transport failed (the last error).

    Cancellation: as :func:`~trio_sio.engineio.client.open_engine_client`.
    """
    plans = transports.plans()
    async with AsyncExitStack() as stack:
        for i, names in enumerate(plans):
            try:
                engine = await stack.enter_async_context(
                    open_engine_client(
                        options.url,
                        path=options.path,
                        transports=names,
                        query=options.query,
                        headers=options.headers,
                        ssl_context=options.ssl_context,
                        connect_timeout=options.connect_timeout,
                        connector=options.connector,
                        proxy=options.proxy,
                        cookies=cookies if cookies is not None else False,
                        per_message_deflate=options.per_message_deflate,
                        read_in_receive=True,
                    )
                )
            except ConnectError as exc:
                if names[0] == "websocket":
                    transports.websocket_worked = False
                if i + 1 == len(plans):
                    raise
                log.info("over %s: %s; trying %s", names[0], exc, plans[i + 1][0])
                continue
            break
        yield engine
