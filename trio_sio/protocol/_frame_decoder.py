"""The decoder shared by parsers that send every packet as one binary frame (CBOR, msgpack)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .errors import RemoteProtocolError
from .socketio import NEED_DATA, NeedData, Packet

__all__ = ["WholeFrameDecoder"]


class WholeFrameDecoder:
    """Decodes the frames of one connection (see :class:`~trio_sio.protocol.socketio.Decoder`).

    Every binary frame is one whole packet; a text frame is an error. As with the default
    decoder, errors are final: after :meth:`feed` has raised, it raises for every frame.

    Args:
        decode_frame: turns one frame into a packet, raising ``RemoteProtocolError``.
        format_name: the format's name, for the error a text frame gets.
    """

    __slots__ = ("_decode_frame", "_error", "_format", "_ready")

    def __init__(self, decode_frame: Callable[[bytes], Packet], format_name: str) -> None:
        self._decode_frame = decode_frame
        self._format = format_name
        self._ready: deque[Packet] = deque()
        self._error: str | None = None

    def feed(self, frame: str | bytes | bytearray | memoryview) -> None:
        """Take one frame.

        Raises:
            RemoteProtocolError: a text frame, an undecodable frame, or an invalid packet; or
                an earlier frame was invalid.
            TypeError: ``frame`` is neither text nor bytes-like (a bug in the caller).
        """
        if self._error is not None:
            raise RemoteProtocolError(f"decoder already failed: {self._error}")
        try:
            if isinstance(frame, str):
                raise RemoteProtocolError(f"the {self._format} parser expects binary frames only")
            if not isinstance(frame, (bytes, bytearray, memoryview)):
                raise TypeError(f"a frame is str or bytes, not {type(frame).__name__}")
            self._ready.append(self._decode_frame(bytes(frame)))
        except RemoteProtocolError as exc:
            self._error = str(exc)
            raise

    def next_packet(self) -> Packet | NeedData:
        """Return the next decoded packet, or :data:`NEED_DATA`."""
        if self._ready:
            return self._ready.popleft()
        return NEED_DATA
