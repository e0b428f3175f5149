"""Small stream helpers: closing without ceremony, reading and writing a plain TCP socket
without waiting, reading and dropping what a client still sends."""

from __future__ import annotations

import os

import trio

__all__ = ["close_now", "drain_input", "read_now", "read_socket", "write_now"]

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


async def read_socket(sock: trio.socket.SocketType, wait_first: bool) -> bytes:
    """What ``trio.SocketStream.receive_some(READ_SIZE)`` does, with a shorter stack while
    it waits: parked in ``receive_some``, a task holds the stream's, the error
    translation's, the socket method's and the non-blocking helper's frames, 1.6 KiB more
    than parked in ``wait_readable`` (measured), in every idle connection.

    The same scheduling as ``receive_some``: a checkpoint when data is there at once
    (cancellation checked before reading, shielded after), none after waiting.

    With ``wait_first`` (the previous read emptied the socket's buffer: the next one would
    most likely fail), it waits for the socket to be readable before reading instead of
    trying first, which saves a failing system call per message.

    Raises:
        trio.ClosedResourceError: the socket is closed (by another task, meanwhile).
        trio.BrokenResourceError: the connection broke (a reset, ...).

    Cancellation: if cancelled, nothing was read.
    """
    if wait_first:
        await trio.lowlevel.wait_readable(sock)
    else:
        await trio.lowlevel.checkpoint_if_cancelled()
    waited = wait_first
    while True:
        fd = sock.fileno()  # -1 once closed: a closed socket's number is never read
        if fd < 0:
            raise trio.ClosedResourceError("the socket was closed")
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            data = None  # wait outside the except clause, which would keep the exception
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
        if data is None:
            await trio.lowlevel.wait_readable(sock)
            waited = True
            continue
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data


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
