"""Accepting connections for the standalone front end: back-off when the process runs out
of file descriptors, and the ``max_connections`` cap."""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable, Sequence

import trio

from .._streams import close_now
from ..engineio.server import EngineServer

__all__ = ["accept_connections"]

# The standalone front end's logger: these lines are part of what it reports.
log = logging.getLogger("trio_sio.frontends.standalone")

_Handler = Callable[[EngineServer, trio.abc.Stream], Awaitable[None]]

#: seconds to wait before retrying ``accept()`` when the process is out of resources; the
#: wait doubles on each failure up to ``ACCEPT_BACKOFF_MAX``.
ACCEPT_BACKOFF_FIRST = 0.1
ACCEPT_BACKOFF_MAX = 1.0
#: ``accept()`` errors that mean "out of file descriptors or memory": retried after a wait.
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class _Admission:
    """Shared by the accept loops of one :func:`accept_connections`: the connections being
    served against ``max_connections``, and the current episode of failing ``accept()``."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0
        self.failures = 0

    def admit(self) -> bool:
        """Count a new connection in, or return False when the limit is reached."""
        if self.limit is not None and self.open >= self.limit:
            if not self.refused:
                log.warning("max_connections (%d) reached: closing new ones at once", self.open)
            self.refused += 1
            return False
        if self.refused:
            log.info("accepting connections again; %d were refused", self.refused)
            self.refused = 0
        self.open += 1
        return True


async def accept_connections(
    server: EngineServer,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    serve: _Handler,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The accept loops of :func:`~trio_sio.frontends.standalone.serve_listeners` (see
    there for what they do)."""
    admission = _Admission(server.config.max_connections)
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_loop, server, listener, serve, admission, nursery)
        task_status.started()


async def _accept_loop(
    server: EngineServer,
    listener: trio.abc.Listener[trio.abc.Stream],
    serve: _Handler,
    admission: _Admission,
    nursery: trio.Nursery,
) -> None:
    delay = ACCEPT_BACKOFF_FIRST
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRNOS:
                    raise
                if not admission.failures:
                    log.warning("cannot accept connections (%s): retrying with back-off", exc)
                admission.failures += 1
                await trio.sleep(delay)
                delay = min(delay * 2, ACCEPT_BACKOFF_MAX)
                continue
            delay = ACCEPT_BACKOFF_FIRST
            if admission.failures:
                log.info("accepting connections again after %d failures", admission.failures)
                admission.failures = 0
            if admission.admit():
                nursery.start_soon(_serve_connection, serve, server, stream, admission)
            else:
                await trio.aclose_forcefully(stream)


async def _serve_connection(
    serve: _Handler, server: EngineServer, stream: trio.abc.Stream, admission: _Admission
) -> None:
    try:
        await serve(server, stream)
    except Exception:  # handle_stream catches its own; this guards the accept loop
        log.exception("HTTP connection handler failed")
    finally:
        admission.open -= 1
        await close_now(stream)  # shielded
