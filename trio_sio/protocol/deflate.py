"""WebSocket permessage-deflate (RFC 7692), sans-IO: the server side, and the client side at
the end.

What the server needs and no more: the negotiation of the extension in the handshake, the
compression of one message, and the bounded inflation of what a client sends.

The server always asks for ``server_no_context_takeover``: each message it sends is
compressed on its own, with a fresh compressor, so the compressed frame depends on the
message only and is computed once for every recipient of a broadcast (see
``Packet.deflate_cache``). Keeping the compression context from one message to the next
(context takeover) compresses a stream of small, similar messages better, but costs a
compressor per connection (about 256 KiB with zlib's default memory level) and one
compression per recipient instead of one per broadcast.

For what clients send, ``client_no_context_takeover`` is asked by default too: a message is
then inflated with a decompressor made for it and dropped after it, so an idle connection
holds no inflate state (about 40 KiB with a 32 KiB window) whatever it sent before. Allowing
context takeover (``client_no_context_takeover=False``) keeps one decompressor per
connection that ever sent a compressed message, and lets clients compress small messages
better.

Inflation is bounded by the message size limit: a message that inflates past it is refused
with close status 1009 as soon as the limit is passed, having allocated about the limit and
a few 64 KiB steps (see :meth:`Inflater.inflate`), whatever the compression ratio.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .websocket import WebSocketError

__all__ = [
    "CLIENT_OFFER",
    "ClientDeflate",
    "DeflateOptions",
    "DeflateParams",
    "Inflater",
    "accept_client_deflate",
    "deflate_message",
    "negotiate_deflate",
    "parse_extensions",
]

#: what a sync flush ends with; RFC 7692 strips it from the wire and the receiver adds it back.
_TAIL: Final = b"\x00\x00\xff\xff"
_NAME: Final = "permessage-deflate"
_PARAMS: Final = frozenset(
    {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
)


@dataclass(frozen=True, slots=True)
class DeflateOptions:
    """The server's permessage-deflate settings (``EngineConfig.per_message_deflate``).

    Attributes:
        threshold: messages shorter than this many bytes (encoded) are sent uncompressed.
        level: the zlib compression level, 0-9 (6, zlib's default, as the JS server's).
        client_no_context_takeover: ask clients to compress each message on its own (see
            the module's notes on memory).
    """

    threshold: int = 1024
    level: int = 6
    client_no_context_takeover: bool = True

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError("per_message_deflate threshold must be >= 0")
        if not 0 <= self.level <= 9:
            raise ValueError("per_message_deflate level must be between 0 and 9")

    @classmethod
    def from_setting(cls, setting: bool | Mapping[str, Any]) -> DeflateOptions | None:
        """The options for a ``per_message_deflate`` setting (None when it is off).

        Raises:
            ValueError: an unknown key or a value out of range.
            TypeError: a value of the wrong type.
        """
        if setting is False:
            return None
        if setting is True:
            return cls()
        unknown = set(setting) - {"threshold", "level", "client_no_context_takeover"}
        if unknown:
            raise ValueError(f"unknown per_message_deflate options: {sorted(unknown)}")
        return cls(**setting)


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """What was agreed with one client.

    Attributes:
        header: the ``Sec-WebSocket-Extensions`` value of the 101 response.
        server_window_bits: the window our messages are compressed with (the client may
            ask for less than 15).
        client_no_context_takeover: the client compresses each message on its own.
        threshold: from the options.
        level: from the options.
    """

    header: str
    server_window_bits: int = 15
    client_no_context_takeover: bool = True
    threshold: int = 1024
    level: int = 6

    @property
    def cacheable(self) -> bool:
        """True when our compressed messages are the ones every default client gets (the
        full window), so they can be computed once per packet."""
        return self.server_window_bits == 15

    def inflater(self) -> Inflater:
        """A decompressor for the messages this client sends."""
        return Inflater(self.client_no_context_takeover)


def parse_extensions(header: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """The offers of a ``Sec-WebSocket-Extensions`` header: ``[(name, [(param, value)])]``,
    names and parameters in lower case, quoted values unquoted. Empty parts are skipped."""
    offers: list[tuple[str, list[tuple[str, str | None]]]] = []
    for part in header.split(","):
        items = [item.strip() for item in part.split(";")]
        if not items[0]:
            continue
        params: list[tuple[str, str | None]] = []
        for item in items[1:]:
            if not item:
                continue
            name, sep, value = item.partition("=")
            text = value.strip() if sep else None
            if text is not None and len(text) >= 2 and text[0] == text[-1] == '"':
                text = text[1:-1]
            params.append((name.strip().lower(), text))
        offers.append((items[0].lower(), params))
    return offers


def _window_bits(value: str | None) -> int | None:
    if value is None or not value.isdigit() or len(value) > 2 or value.startswith("0"):
        return None
    bits = int(value)
    return bits if 8 <= bits <= 15 else None


def _accept(params: list[tuple[str, str | None]], options: DeflateOptions) -> DeflateParams | None:
    """The agreement for one permessage-deflate offer, or None to decline it."""
    names = [name for name, _ in params]
    if len(set(names)) != len(names) or not set(names) <= _PARAMS:
        return None  # a repeated or unknown parameter: the offer must be declined
    given = dict(params)
    if given.get("server_no_context_takeover") is not None:
        return None
    if given.get("client_no_context_takeover") is not None:
        return None
    reply = [_NAME, "server_no_context_takeover"]
    client_fresh = options.client_no_context_takeover or "client_no_context_takeover" in given
    if client_fresh:
        reply.append("client_no_context_takeover")
    server_bits = 15
    if "server_max_window_bits" in given:
        bits = _window_bits(given["server_max_window_bits"])
        if bits is None or bits < 9:  # zlib cannot compress with a 256-byte window
            return None
        server_bits = bits
        reply.append(f"server_max_window_bits={bits}")
    if "client_max_window_bits" in given:
        value = given["client_max_window_bits"]
        if value is not None:
            bits = _window_bits(value)
            if bits is None:
                return None
            reply.append(f"client_max_window_bits={bits}")  # we inflate with any window
    return DeflateParams(
        "; ".join(reply), server_bits, client_fresh, options.threshold, options.level
    )


def negotiate_deflate(header: str | None, options: DeflateOptions) -> DeflateParams | None:
    """Accept the first acceptable permessage-deflate offer of a client's
    ``Sec-WebSocket-Extensions`` header, or None (no offer, or none acceptable: the
    WebSocket then works uncompressed)."""
    if not header:
        return None
    for name, params in parse_extensions(header):
        if name == _NAME:
            agreed = _accept(params, options)
            if agreed is not None:
                return agreed
    return None


def deflate_message(data: bytes, level: int = 6, window_bits: int = 15) -> bytes:
    """One message compressed on its own (no context kept), as a frame carries it."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -window_bits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(_TAIL) else out


class Inflater:
    """Inflates the compressed messages of one client.

    Args:
        no_context_takeover: each message is compressed on its own: a decompressor is made
            per message and dropped after it. Otherwise one is kept for the connection.
    """

    __slots__ = ("_decoder", "_fresh")

    def __init__(self, no_context_takeover: bool = True) -> None:
        self._fresh = no_context_takeover
        self._decoder: zlib._Decompress | None = None

    def inflate(self, data: bytes | bytearray, max_size: int) -> bytes:
        """The message ``data`` (a compressed payload) stands for.

        Inflated in steps of at most :data:`STEP` bytes in and out, stopping as soon as the
        output passes ``max_size``: whatever the compression ratio, the allocations peak
        at about ``max_size`` (the output so far) plus a few steps, and twice ``max_size``
        for an accepted message as large as the limit (its pieces, then the joined
        message).

        Raises:
            WebSocketError: the message inflates past ``max_size`` (1009), or is not valid
                deflate data (1007).
        """
        decoder = self._decoder
        if decoder is None:
            decoder = zlib.decompressobj(-15)  # the largest window inflates any smaller one
        pieces: list[bytes] = []
        room = max_size + 1  # output allowed before the limit is passed
        try:
            with memoryview(data) as view:
                for start in range(0, len(view), STEP):
                    room = _inflate_step(decoder, view[start : start + STEP], room, pieces)
            room = _inflate_step(decoder, _TAIL, room, pieces)
        except zlib.error:
            raise WebSocketError("invalid compressed message", 1007) from None
        # A message ending in a final block ends the stream: the next one starts afresh.
        self._decoder = None if self._fresh or decoder.eof else decoder
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


#: the most bytes fed to, or taken from, the decompressor at a time.
STEP: Final = 64 * 1024


def _inflate_step(
    decoder: zlib._Decompress, data: bytes | memoryview, room: int, pieces: list[bytes]
) -> int:
    """Inflate ``data`` into ``pieces``, taking at most ``STEP`` bytes out at a time;
    return the room left.

    Raises:
        WebSocketError: the output passed the limit (1009).
        zlib.error: not deflate data.
    """
    pending: bytes | memoryview = data
    while pending:
        out = decoder.decompress(pending, min(STEP, room))
        if out:
            room -= len(out)
            if room <= 0:
                raise WebSocketError("message too big (inflated)", 1009)
            pieces.append(out)
        elif len(decoder.unconsumed_tail) == len(pending):
            break  # no progress (the stream ended): what is left is not ours to read
        pending = decoder.unconsumed_tail
    return room


# -- the client side ---------------------------------------------------------------------------

#: what the client offers, as socket.io-client's ``ws`` does: any window for our messages.
CLIENT_OFFER: Final = "permessage-deflate; client_max_window_bits"


@dataclass(frozen=True, slots=True)
class ClientDeflate:
    """What a server agreed to, seen from the client.

    Attributes:
        client_window_bits: the window our messages may use (8-15).
        server_no_context_takeover: the server compresses each message on its own (we
            then inflate each with a fresh decompressor).
    """

    client_window_bits: int = 15
    server_no_context_takeover: bool = False

    def inflater(self) -> Inflater:
        """A decompressor for the messages the server sends."""
        return Inflater(self.server_no_context_takeover)

    def deflate(self, data: bytes, level: int = 6) -> bytes | None:
        """``data`` compressed on its own (valid with or without context takeover), or None
        when the agreed window is too small for zlib to honour (then send it plain)."""
        if self.client_window_bits < 9:
            return None
        return deflate_message(data, level, self.client_window_bits)


def accept_client_deflate(header: str | None) -> ClientDeflate | None:
    """Read a server's ``Sec-WebSocket-Extensions`` answer to :data:`CLIENT_OFFER`.

    Returns:
        None when the server accepted no extension.

    Raises:
        WebSocketError: the answer is not one the offer allows (the client must then fail
            the connection, RFC 7692 section 5).
    """
    if not header:
        return None
    offers = parse_extensions(header)
    if len(offers) != 1 or offers[0][0] != _NAME:
        raise WebSocketError(f"the server agreed to extensions not offered: {header!r}")
    params = offers[0][1]
    names = [name for name, _ in params]
    if len(set(names)) != len(names) or not set(names) <= _PARAMS:
        raise WebSocketError(f"invalid permessage-deflate parameters: {header!r}")
    given = dict(params)
    client_bits = 15
    if "client_max_window_bits" in given:
        bits = _window_bits(given["client_max_window_bits"])
        if bits is None:
            raise WebSocketError(f"invalid client_max_window_bits: {header!r}")
        client_bits = bits
    if "server_max_window_bits" in given and _window_bits(given["server_max_window_bits"]) is None:
        raise WebSocketError(f"invalid server_max_window_bits: {header!r}")
    for flag in ("server_no_context_takeover", "client_no_context_takeover"):
        if given.get(flag) is not None:
            raise WebSocketError(f"{flag} takes no value: {header!r}")
    return ClientDeflate(client_bits, "server_no_context_takeover" in given)
