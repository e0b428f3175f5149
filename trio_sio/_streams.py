"""Closing streams without ceremony."""

from __future__ import annotations

import trio

__all__ = ["close_now"]


async def close_now(stream: trio.abc.AsyncResource) -> None:
    """Close ``stream`` at once, without any closing handshake: what
    ``trio.aclose_forcefully`` does. A plain TCP stream is closed directly: its ``aclose``
    would end with a checkpoint in an already cancelled scope, which costs an exception and
    its traceback, for every connection.

    Never blocks; not even cancellation stops the close (other streams are closed in a
    shielded scope). Closing twice is harmless.
    """
    if type(stream) is trio.SocketStream:
        stream.socket.close()
        return
    with trio.CancelScope(shield=True):
        await trio.aclose_forcefully(stream)
