"""Traffic counters for the Admin UI's ``server_stats`` (its "aggregated events")."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..protocol.engineio import Packet as EnginePacket

__all__ = ["Traffic"]


def _second() -> int:
    """The current second, in milliseconds since the epoch (the events' timestamp)."""
    return int(time.time()) * 1000


def _size(data: str | bytes) -> int:
    """Bytes on the wire, as Node's ``Buffer.byteLength`` counts them (UTF-8 for text)."""
    if isinstance(data, str) and not data.isascii():
        return len(data.encode("utf-8"))
    return len(data)


class Traffic:
    """Counts connections and messages per second, until :meth:`take` empties the counts.

    The server's connections call it (see ``Connection``) while the server is instrumented:
    every call is a dictionary update, no I/O.
    """

    def __init__(self) -> None:
        # (second in ms, type, subType) -> count
        self._counts: dict[tuple[int, str, str | None], int] = {}

    def _add(self, second: int, kind: str, sub_type: str | None, count: int) -> None:
        key = (second, kind, sub_type)
        self._counts[key] = self._counts.get(key, 0) + count

    def opened(self) -> None:
        """An Engine.IO session opened."""
        self._add(_second(), "rawConnection", None, 1)

    def closed(self, reason: str) -> None:
        """An Engine.IO session ended, for ``reason`` (``"transport close"``, ...)."""
        self._add(_second(), "rawDisconnection", reason, 1)

    def received(self, message: str | bytes) -> None:
        """One message came from a client."""
        second = _second()
        self._add(second, "packetsIn", None, 1)
        self._add(second, "bytesIn", None, _size(message))

    def sent(self, group: Sequence[EnginePacket]) -> None:
        """Messages were queued for a client."""
        second = _second()
        self._add(second, "packetsOut", None, len(group))
        self._add(second, "bytesOut", None, sum(_size(packet.data) for packet in group))

    def take(self) -> list[dict[str, Any]]:
        """The counts since the last call, as ``server_stats.aggregatedEvents`` lists them."""
        counts, self._counts = self._counts, {}
        events: list[dict[str, Any]] = []
        for (timestamp, kind, sub_type), count in counts.items():
            event: dict[str, Any] = {"timestamp": timestamp, "type": kind, "count": count}
            if sub_type is not None:
                event["subType"] = sub_type
            events.append(event)
        return events
