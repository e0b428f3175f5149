"""Connection state recovery: what a server keeps of a socket whose connection dropped, and
of the packets broadcast meanwhile, so that the client can come back as if it never left.

The protocol (Socket.IO 4.6+, what ``socket.io-client`` implements):

- with recovery on, the server's CONNECT reply carries a private session id,
  ``{"sid": ..., "pid": ...}``;
- every EVENT the server keeps for recovery ends with one more argument, its *offset* (a
  string); the client remembers the last one it got;
- after a lost connection, the client's CONNECT carries ``{"pid": ..., "offset": ...}``
  besides its ``auth``; if the server still has the session, the socket gets its id, rooms
  and ``data`` back, the packets it missed are sent first (before the CONNECT reply, as the
  JS server does), and ``socket.recovered`` is true on both sides.

Kept are the EVENT packets broadcast without ack and not volatile, and, likewise, those
emitted to one socket: exactly the packets that carry an offset.

:class:`RecoveryStore` is the in-memory store behind :class:`~trio_sio.adapters.InMemoryAdapter`
(and, per node, the Redis adapter). Its memory is bounded: at most ``max_packets`` packets and
about ``max_bytes`` bytes of them, at most ``max_sessions`` sessions, and nothing older than
``max_disconnection_duration``. A session that needs a packet that is gone is not recovered:
the client then connects as a new socket (``recovered`` false), with no error.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import trio

from .base import BroadcastOptions

__all__ = [
    "RECOVERABLE_REASONS",
    "ConnectionStateRecovery",
    "RecoveredSession",
    "Session",
    "RecoveryStore",
]

#: The disconnect reasons after which a session is kept (those of the JS server): the
#: connection was lost, not closed on purpose by either side.
RECOVERABLE_REASONS = frozenset(
    {
        "transport error",
        "transport close",
        "forced close",
        "ping timeout",
        "server shutting down",
        "forced server close",
    }
)

#: Rooms whose last lost packet the store remembers one by one (beyond that, conservatively,
#: for all rooms at once).
_WATERMARK_ROOMS = 10_000
_ASCII_DIGITS = re.compile("[0-9]+")


@dataclass(frozen=True, slots=True)
class ConnectionStateRecovery:
    """The ``connection_state_recovery=`` option of :class:`~trio_sio.Server`.

    Attributes:
        max_disconnection_duration: seconds a session (and a kept packet) is kept after
            the connection dropped (2 minutes, as in JS).
        skip_middlewares: do not run the namespace's middlewares for a recovered socket
            (as in JS). With ``False`` they run, and may look at ``socket.recovered``.
        max_packets: packets kept per namespace, at most (the oldest go first).
        max_bytes: about how many bytes of packets are kept per namespace, at most.
        max_sessions: disconnected sessions kept per namespace, at most (the oldest go first).
    """

    max_disconnection_duration: float = 120.0
    skip_middlewares: bool = True
    max_packets: int = 10_000
    max_bytes: int = 16 * 1024 * 1024
    max_sessions: int = 100_000

    def __post_init__(self) -> None:
        if self.max_disconnection_duration <= 0:
            raise ValueError("max_disconnection_duration must be positive")
        if min(self.max_packets, self.max_bytes, self.max_sessions) < 1:
            raise ValueError("max_packets, max_bytes and max_sessions must be at least 1")


@dataclass(slots=True)
class Session:
    """What the server keeps of a socket whose connection dropped.

    Attributes:
        sid: the socket's id, given back on recovery.
        pid: the private session id the client presents to recover it.
        rooms: its rooms (its own id included).
        data: its ``data``.
        offset: the newest offset when the socket connected (or was recovered): where the
            missed packets start for a client that got no packet since.
    """

    sid: str
    pid: str
    rooms: frozenset[str]
    data: dict[str, Any]
    offset: str | None = None


@dataclass(slots=True)
class RecoveredSession(Session):
    """A session given back, with what the client missed.

    Attributes:
        missed_packets: the data of each missed EVENT (``[event, *args, offset]``), in order.
            ``offset`` is then the newest offset at the time of the restore.
    """

    missed_packets: list[list[Any]] = field(default_factory=list)


@dataclass(slots=True)
class _Kept:
    seq: int
    data: list[Any]
    rooms: frozenset[str]
    except_rooms: frozenset[str]
    at: float
    size: int

    def reaches(self, rooms: frozenset[str]) -> bool:
        """Whether a socket in ``rooms`` was among the packet's recipients."""
        included = not self.rooms or not self.rooms.isdisjoint(rooms)
        return included and self.except_rooms.isdisjoint(rooms)


class RecoveryStore:
    """Sessions and kept packets of one namespace, in memory. Nothing here blocks.

    Offsets are ``"<store id>-<sequence number>"``: an offset of another store (another
    namespace, another process) is never mistaken for one of this store's.

    Args:
        options: the limits.
        clock: the time in seconds (default: Trio's clock, so tests can use virtual time).
    """

    def __init__(
        self, options: ConnectionStateRecovery, clock: Callable[[], float] = trio.current_time
    ) -> None:
        self.options = options
        self._clock = clock
        self._prefix = secrets.token_hex(4) + "-"
        self._seq = 0  # the last sequence number given
        self._packets: deque[_Kept] = deque()
        self._bytes = 0
        self._sessions: dict[str, tuple[Session, float]] = {}  # by pid, oldest first
        self._session_rooms: dict[str, int] = {}  # room -> kept sessions in it
        # The highest sequence number dropped (expired or over a bound) that reached every
        # room, and per room the highest one that reached it.
        self._lost_everywhere = 0
        self._lost: OrderedDict[str, int] = OrderedDict()

    # -- packets --------------------------------------------------------------------------
    def last_offset(self) -> str:
        """The offset of the newest packet (also when nothing was kept yet)."""
        return f"{self._prefix}{self._seq}"

    def record(self, data: list[Any], options: BroadcastOptions) -> list[Any]:
        """Keep an EVENT's data sent to the sockets ``options`` selects; returns the data
        with its offset appended (what is sent)."""
        self._seq += 1
        stamped = [*data, f"{self._prefix}{self._seq}"]
        size = _approx_size(stamped)
        now = self._clock()
        self._packets.append(
            _Kept(self._seq, stamped, options.rooms, options.except_rooms, now, size)
        )
        self._bytes += size
        self._expire(now)
        limits = self.options
        while len(self._packets) > limits.max_packets or (
            self._bytes > limits.max_bytes and len(self._packets) > 1
        ):
            self._drop_oldest()
        return stamped

    def _drop_oldest(self) -> None:
        kept = self._packets.popleft()
        self._bytes -= kept.size
        if not kept.rooms:
            self._lost_everywhere = kept.seq
            return
        lost = self._lost
        for room in kept.rooms:
            lost[room] = kept.seq
            lost.move_to_end(room)
        while len(lost) > _WATERMARK_ROOMS:
            _, seq = lost.popitem(last=False)
            self._lost_everywhere = max(self._lost_everywhere, seq)

    # -- sessions -------------------------------------------------------------------------
    def persist(self, session: Session) -> None:
        """Keep a session for ``max_disconnection_duration`` (replacing one with its pid)."""
        now = self._clock()
        self._expire(now)
        self._pop(session.pid)
        self._sessions[session.pid] = (session, now)
        for room in session.rooms:
            self._session_rooms[room] = self._session_rooms.get(room, 0) + 1
        while len(self._sessions) > self.options.max_sessions:
            self._pop(next(iter(self._sessions)))

    def restore(self, pid: str, offset: str | None) -> RecoveredSession | None:
        """Take the session ``pid`` back, with the packets it missed since ``offset`` (the
        last one its client got; None: none since it connected).

        Returns None if the session is unknown or expired, if ``offset`` is not one of this
        store's, or if a packet the session missed is no longer kept. A session is given
        back once; an offset that is not one of this store's leaves it kept (a wrong guess
        cannot destroy it), any other failure drops it. Any strings are fine: nothing is
        raised for malformed input.
        """
        self._expire(self._clock())
        entry = self._sessions.get(pid) if type(pid) is str else None
        if entry is None:
            return None
        session = entry[0]
        start = self._seq_of(offset) if offset is not None else None
        base = self._seq_of(session.offset) if session.offset is not None else None
        if offset is not None and (start is None or start > self._seq):
            # Not an offset this store gave: the client's position is unknown. The session
            # stays (whoever sent this may not be its client, and the client may still come).
            return None
        if start is None or (base is not None and base > start):
            start = base  # nothing before the socket (re)connected was meant for it
        self._pop(pid)
        if start is None or start > self._seq:
            return None
        lost = self._lost
        if self._lost_everywhere > start or any(lost.get(r, 0) > start for r in session.rooms):
            return None  # something it missed is gone
        first = self._packets[0].seq if self._packets else self._seq + 1
        missed = [
            kept.data
            for kept in islice(self._packets, max(start + 1 - first, 0), None)
            if kept.reaches(session.rooms)
        ]
        return RecoveredSession(
            session.sid, session.pid, session.rooms, session.data, self.last_offset(), missed
        )

    def has_room(self, room: str) -> bool:
        """Whether a kept session is in ``room`` (its packets must be kept too)."""
        return room in self._session_rooms

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(packets, approximate bytes, sessions) kept now."""
        return len(self._packets), self._bytes, len(self._sessions)

    # -- helpers --------------------------------------------------------------------------
    def _seq_of(self, offset: str) -> int | None:
        if not offset.startswith(self._prefix):
            return None
        digits = offset[len(self._prefix) :]
        # ASCII digits only: str.isdigit() also takes "²" or "٣", which int() refuses or
        # reads as another number.
        if not 0 < len(digits) < 20 or not _ASCII_DIGITS.fullmatch(digits):
            return None
        return int(digits)

    def _pop(self, pid: str) -> Session | None:
        entry = self._sessions.pop(pid, None)
        if entry is None:
            return None
        session = entry[0]
        counts = self._session_rooms
        for room in session.rooms:
            left = counts.get(room, 1) - 1
            if left:
                counts[room] = left
            else:
                counts.pop(room, None)
        return session

    def _expire(self, now: float) -> None:
        threshold = now - self.options.max_disconnection_duration
        packets = self._packets
        while packets and packets[0].at < threshold:
            self._drop_oldest()
        sessions = self._sessions
        while sessions:
            pid, (_, since) = next(iter(sessions.items()))
            if since >= threshold:
                break
            self._pop(pid)


def _approx_size(value: Any) -> int:
    """About how many bytes ``value`` takes once encoded (cheap: no encoding)."""
    size = 0
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes):
            size += len(item) + 2
        elif isinstance(item, list):
            size += 2 + len(item)
            stack.extend(item)
        elif isinstance(item, dict):
            size += 2 + len(item)
            for key, child in item.items():
                size += len(key) + 3
                stack.append(child)
        else:
            size += 8
    return size
