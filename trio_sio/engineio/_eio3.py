"""Engine.IO v3 over WebSocket: a channel that speaks v3 frames to the client and v4 ones
to the session, so that the session and its transport stay v4 throughout."""

from __future__ import annotations

from ..protocol.engineio import (
    decode_packet as decode_v4,
)
from ..protocol.engineio import (
    decode_ws_message_v3,
    encode_packet,
    encode_ws_message_v3,
)
from .transports import WebSocketChannel

__all__ = ["Eio3Channel"]


class Eio3Channel:
    """A :class:`~trio_sio.engineio.transports.WebSocketChannel` for an Engine.IO v3 client.

    v3 differs from v4 on a WebSocket only in binary messages: a binary frame starts with
    the packet type byte, and a text frame may carry ``"b4"`` and base64. Messages are
    translated one by one; every write goes through :meth:`send_message` (no direct frame
    writes: v3 clients are few, and their frames are not shared with v4 ones).
    """

    def __init__(self, channel: WebSocketChannel) -> None:
        self._channel = channel
        self.bounded_close = channel.bounded_close

    async def get_message(self) -> str | bytes:
        """The next message, as a v4 client would have sent it.

        Raises:
            ConnectionClosed: the WebSocket is closed.
            RemoteProtocolError: the message is not a valid v3 packet.
        """
        packet = decode_ws_message_v3(await self._channel.get_message())
        return encode_packet(packet)

    async def send_message(self, message: str | bytes) -> None:
        """Send a v4 message (text, or the bytes of a binary MESSAGE) as v3."""
        await self._channel.send_message(encode_ws_message_v3(decode_v4(message)))

    async def aclose(self) -> None:
        """Close the WebSocket."""
        await self._channel.aclose()

    def frame_writer(self) -> None:
        """None: each message goes through :meth:`send_message`."""
        return None

    def message_ready(self) -> bool:
        """Whether the wrapped channel already holds the next message."""
        return self._channel.message_ready()
