"""Compression of HTTP long-polling responses (gzip or deflate), as the JS server's
``httpCompression``.

A polling response is compressed when compression is on, the body reaches the threshold, at
least one of its packets allows it (``socket.compress(False)`` emits do not), and the
request's ``Accept-Encoding`` accepts ``gzip`` or ``deflate`` (gzip preferred at equal
quality; no header means neither). Such a response carries ``Vary: Accept-Encoding`` whether
or not this request's coding allowed it. A large body is compressed in a worker thread (zlib
releases the GIL), so the event loop keeps serving the other connections meanwhile.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

import trio

from ..protocol.engineio import Packet, may_compress

__all__ = ["HttpCompression", "accepted_coding", "compress_poll_response"]

#: bodies from this size are compressed in a worker thread.
THREAD_FROM: Final = 128 * 1024
_WBITS: Final = {"gzip": 31, "deflate": 15}  # deflate is the zlib format (RFC 1950)


@dataclass(frozen=True, slots=True)
class HttpCompression:
    """The settings of ``EngineConfig.http_compression``.

    Attributes:
        threshold: bodies shorter than this many bytes are sent as they are.
        level: the zlib compression level, 0-9.
    """

    threshold: int = 1024
    level: int = 6

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError("http_compression threshold must be >= 0")
        if not 0 <= self.level <= 9:
            raise ValueError("http_compression level must be between 0 and 9")

    @classmethod
    def from_setting(cls, setting: bool | int | Mapping[str, int]) -> HttpCompression | None:
        """The settings for an ``http_compression`` value: False (off), True (defaults),
        a threshold in bytes, or ``{"threshold": ..., "level": ...}``.

        Raises:
            ValueError: an unknown key or a value out of range.
        """
        if setting is False:
            return None
        if setting is True:
            return cls()
        if isinstance(setting, int):
            return cls(threshold=setting)
        unknown = set(setting) - {"threshold", "level"}
        if unknown:
            raise ValueError(f"unknown http_compression options: {sorted(unknown)}")
        return cls(**setting)


def accepted_coding(accept_encoding: str | None) -> str | None:
    """``"gzip"``, ``"deflate"`` or None for an ``Accept-Encoding`` value, as the JS server
    chooses (its ``accepts(req).encodings(["gzip", "deflate"])``): the higher quality, gzip
    at equal quality; ``*`` stands for a coding not named; ``q=0`` refuses."""
    if not accept_encoding:
        return None
    quality: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        name = name.lower()
        if name:
            quality[name] = max(q, quality.get(name, q))
    star = quality.get("*", 0.0)
    gzip_q = quality.get("gzip", quality.get("x-gzip", star))
    deflate_q = quality.get("deflate", star)
    if gzip_q <= 0 and deflate_q <= 0:
        return None
    return "gzip" if gzip_q >= deflate_q else "deflate"


class _Response(Protocol):
    """What is compressed of a response (``config.HttpResponse`` is one)."""

    body: bytes
    headers: list[tuple[str, str]]


class _Head(Protocol):
    """What is read of a request (``config.RequestHead`` is one)."""

    @property
    def headers(self) -> Mapping[str, str]: ...


R = TypeVar("R", bound=_Response)


def _compress(body: bytes, coding: str, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, _WBITS[coding])
    return compressor.compress(body) + compressor.flush()


async def compress_poll_response(
    response: R,
    head: _Head,
    packets: Sequence[Packet],
    settings: HttpCompression | None,
) -> R:
    """``response`` (a polling GET's answer carrying ``packets``), compressed if it should be.

    Blocks: while a body of ``THREAD_FROM`` bytes or more is compressed in a worker thread
    (not cancellable; it takes milliseconds per megabyte).
    """
    body = response.body
    if settings is None or len(body) < settings.threshold:
        return response
    if not any(may_compress(packet) for packet in packets):
        return response
    response.headers.append(("Vary", "Accept-Encoding"))
    coding = accepted_coding(head.headers.get("accept-encoding"))
    if coding is None:
        return response
    if len(body) >= THREAD_FROM:
        response.body = await trio.to_thread.run_sync(_compress, body, coding, settings.level)
    else:
        response.body = _compress(body, coding, settings.level)
    response.headers.append(("Content-Encoding", coding))
    return response
