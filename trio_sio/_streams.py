"""Small stream helpers: closing without ceremony, reading and writing a plain TCP socket
without waiting, reading and dropping what a client still sends."""

from __future__ import annotations

import os

import trio

__all__ = ["close_now", "drain_input", "read_now", "write_now"]

READ_SIZE = 64 * 1024


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


def write_now(sock: trio.socket.SocketType, data: bytes) -> int:
    """Write what the socket takes at once; return how many bytes that was (0 when its
    buffer is full or it is closed).

    Raises:
        OSError: the connection broke (a reset, ...).

    Never blocks, never checkpoints.
    """
    fd = sock.fileno()  # -1 once closed
    if fd < 0:
        return 0
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0


def read_now(stream: trio.abc.Stream) -> bytes | None:
    """What a plain TCP stream has received already (b"" at its end), or None if nothing
    is there yet, the stream is not a plain TCP stream, or the read failed (the ordinary
    read then meets the error). Never blocks, never checkpoints."""
    if type(stream) is not trio.SocketStream:
        return None
    fd = stream.socket.fileno()
    if fd < 0:
        return None
    try:
        return os.read(fd, READ_SIZE)
    except OSError:  # BlockingIOError included: nothing yet
        return None


async def drain_input(stream: trio.abc.ReceiveStream, budget: int) -> None:
    """Read and drop what the peer sends until it closes its side or ``budget`` bytes went
    by (what a linger does after our last answer, so that unread bytes do not make the
    kernel reset the connection before the peer read that answer).

    Blocks: until then; the caller bounds it in time. Stream errors end it quietly.
    """
    try:
        while budget > 0:
            data = await stream.receive_some(READ_SIZE)
            if not data:
                return
            budget -= len(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
        pass
