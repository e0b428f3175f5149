"""The default adapter: rooms in two dictionaries, broadcasts to this process only."""

from __future__ import annotations

from collections.abc import Iterable

from .base import Adapter, BroadcastOptions, SocketRegistry

__all__ = ["InMemoryAdapter"]


class InMemoryAdapter(Adapter):
    """Room → socket ids and socket id → rooms, kept in step."""

    def __init__(self, namespace: SocketRegistry) -> None:
        super().__init__(namespace)
        self._rooms: dict[str, set[str]] = {}
        self._sids: dict[str, set[str]] = {}

    def add_all(self, sid: str, rooms: Iterable[str]) -> None:
        mine = self._sids.setdefault(sid, set())
        for room in rooms:
            mine.add(room)
            self._rooms.setdefault(room, set()).add(sid)

    def delete(self, sid: str, room: str) -> None:
        mine = self._sids.get(sid)
        if mine is not None:
            mine.discard(room)
        members = self._rooms.get(room)
        if members is not None:
            members.discard(sid)
            if not members:
                del self._rooms[room]

    def delete_all(self, sid: str) -> None:
        for room in self._sids.pop(sid, ()):
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
