"""The default adapter: rooms in two dictionaries, broadcasts to this process only."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import trio

from ..protocol.socketio import Packet, PacketType
from .base import Adapter, BroadcastOptions, SocketRegistry
from .recovery import ConnectionStateRecovery, RecoveredSession, RecoveryStore, Session

__all__ = ["InMemoryAdapter"]


class InMemoryAdapter(Adapter):
    """Room → socket ids and socket id → rooms, kept in step."""

    def __init__(self, namespace: SocketRegistry) -> None:
        super().__init__(namespace)
        self._rooms: dict[str, set[str]] = {}
        self._sids: dict[str, set[str]] = {}
        #: sessions and packets kept for connection state recovery (None: off)
        self.recovery: RecoveryStore | None = None

    def add_all(self, sid: str, rooms: Iterable[str]) -> None:
        mine = self._sids.setdefault(sid, set())
        listener = self.room_listener
        for room in rooms:
            if listener is not None and room not in mine:
                listener(room, sid, True)
            mine.add(room)
            self._rooms.setdefault(room, set()).add(sid)

    def delete(self, sid: str, room: str) -> None:
        mine = self._sids.get(sid)
        if mine is not None:
            if self.room_listener is not None and room in mine:
                self.room_listener(room, sid, False)
            mine.discard(room)
        members = self._rooms.get(room)
        if members is not None:
            members.discard(sid)
            if not members:
                del self._rooms[room]

    def delete_all(self, sid: str) -> None:
        listener = self.room_listener
        for room in self._sids.pop(sid, ()):
            if listener is not None:
                listener(room, sid, False)
            members = self._rooms.get(room)
            if members is not None:
                members.discard(sid)
                if not members:
                    del self._rooms[room]

    def socket_rooms(self, sid: str) -> frozenset[str]:
        return frozenset(self._sids.get(sid, ()))

    def rooms(self) -> dict[str, frozenset[str]]:
        return {room: frozenset(members) for room, members in self._rooms.items()}

    def sids(self, options: BroadcastOptions) -> list[str]:
        excluded: set[str] = set()
        for room in options.except_rooms:
            excluded.update(self._rooms.get(room, ()))
        if options.rooms:
            chosen: set[str] = set()
            for room in options.rooms:
                chosen.update(self._rooms.get(room, ()))
            return [sid for sid in chosen if sid not in excluded]
        return [sid for sid in self._sids if sid not in excluded]

    # -- connection state recovery (sessions kept in this process only) -------------------
    def enable_recovery(self, options: ConnectionStateRecovery) -> None:
        self.recovery = RecoveryStore(options)

    async def broadcast(self, packet: Packet, options: BroadcastOptions) -> None:
        """Deliver ``packet`` (see :meth:`Adapter.broadcast`); with recovery on, an EVENT
        without ack id and not volatile is kept first, and sent with its offset."""
        if (
            self.recovery is not None
            and packet.type is PacketType.EVENT
            and packet.id is None
            and not options.volatile
        ):
            packet = self._record(packet, options)
        await super().broadcast(packet, options)

    async def record_packet(self, packet: Packet, options: BroadcastOptions) -> Packet:
        """Keep ``packet`` for recovery and return it with its offset. It does not yield,
        so the caller queues the packet before any other task can keep a later one."""
        if self.recovery is None:
            await trio.lowlevel.checkpoint()
            return packet
        return self._record(packet, options)

    def _record(self, packet: Packet, options: BroadcastOptions) -> Packet:
        assert self.recovery is not None
        return replace(packet, data=self.recovery.record(packet.data, options))

    def last_offset(self) -> str | None:
        return None if self.recovery is None else self.recovery.last_offset()

    async def persist_session(self, session: Session) -> None:
        if self.recovery is not None:
            self.recovery.persist(session)
        await trio.lowlevel.checkpoint()

    async def restore_session(self, pid: str, offset: str | None) -> RecoveredSession | None:
        """Take a session back (see :meth:`RecoveryStore.restore`). It yields before
        looking, never after: the caller joins the session's rooms before another packet
        can be kept."""
        await trio.lowlevel.checkpoint()
        return None if self.recovery is None else self.recovery.restore(pid, offset)

    def _kept_room(self, room: str) -> bool:
        """Whether a session kept for recovery is in ``room``."""
        return self.recovery is not None and self.recovery.has_room(room)
