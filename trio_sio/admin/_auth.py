"""The Admin UI's login: basic auth against a bcrypt hash, and the sessions it hands out."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import Any, Protocol

import trio

__all__ = ["BasicAuth", "InMemorySessionStore", "RedisSessionStore", "SessionStore", "parse_auth"]

#: A bcrypt hash as bcrypt (``$2b$``), bcryptjs (``$2a$``) or htpasswd (``$2y$``) writes it.
_BCRYPT_HASH = re.compile(r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}")

#: bcrypt only reads the first 72 bytes of a password (bcryptjs ignores the rest silently).
_BCRYPT_MAX = 72


class SessionStore(Protocol):
    """Where the ids of the sessions given to logged-in Admin UIs are kept.

    A UI that has logged in once reconnects with ``auth = {"sessionId": id}`` (after a page
    reload, or to another node of a cluster) instead of its password.
    """

    async def exists(self, session_id: str) -> bool:
        """Whether ``session_id`` was saved and has not expired."""
        ...

    async def save(self, session_id: str) -> None:
        """Remember a new session id."""
        ...


class InMemorySessionStore:
    """Sessions in this process only (the default).

    Args:
        duration: seconds a session id stays valid.
        max_sessions: the oldest sessions are forgotten beyond this many.
    """

    def __init__(self, duration: float = 86_400.0, max_sessions: int = 10_000) -> None:
        self.duration = duration
        self.max_sessions = max_sessions
        self._expiries: dict[str, float] = {}  # insertion order: oldest first

    async def exists(self, session_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        expiry = self._expiries.get(session_id)
        if expiry is None:
            return False
        if expiry <= trio.current_time():
            del self._expiries[session_id]
            return False
        return True

    async def save(self, session_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._expiries[session_id] = trio.current_time() + self.duration
        while len(self._expiries) > self.max_sessions:
            del self._expiries[next(iter(self._expiries))]


class RedisSessionStore:
    """Sessions in Redis, shared by every node of a cluster; the keys and values are those of
    the Node server's ``RedisStore`` (``socket.io-admin#<id>``), so Node and Python nodes
    accept each other's sessions. Needs the ``redis`` extra (coredis).

    Args:
        url: the Redis server, ``redis://[:password@]host:port[/db]``.
        prefix: the key prefix.
        duration: seconds a session id stays valid.

    Each call opens a connection of its own (logins are rare).
    """

    def __init__(self, url: str, prefix: str = "socket.io-admin", duration: int = 86_400) -> None:
        self.url = url
        self.prefix = prefix
        self.duration = duration

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}#{session_id}"

    async def exists(self, session_id: str) -> bool:
        import coredis  # noqa: PLC0415 - the `redis` extra is optional

        async with coredis.Redis.from_url(self.url, decode_responses=True) as client:
            return bool(await client.exists([self._key(session_id)]))

    async def save(self, session_id: str) -> None:
        import coredis  # noqa: PLC0415 - the `redis` extra is optional

        async with coredis.Redis.from_url(self.url, decode_responses=True) as client:
            await client.set(self._key(session_id), "true", ex=self.duration)


class BasicAuth:
    """A username and the bcrypt hash of its password.

    bcrypt checks run in a worker thread (about 0.1 s of CPU each at the usual cost), at most
    two at a time, so that a flood of logins cannot starve the event loop.
    """

    def __init__(self, username: str, password_hash: str) -> None:
        self.username = username
        self.password_hash = password_hash.encode("ascii")
        self._limiter: trio.CapacityLimiter | None = None

    async def check(self, username: Any, password: Any) -> bool:
        """Whether these credentials match (the hash is checked even when the username does
        not, so that timing does not tell which was wrong).

        Blocks: for the bcrypt check, in a worker thread; not cancellable once started.
        """
        if not isinstance(username, str) or not isinstance(password, str):
            await trio.lowlevel.checkpoint()
            return False
        import bcrypt  # noqa: PLC0415 - checked by parse_auth

        if self._limiter is None:
            self._limiter = trio.CapacityLimiter(2)
        secret = password.encode("utf-8")[:_BCRYPT_MAX]
        good_password = await trio.to_thread.run_sync(
            bcrypt.checkpw, secret, self.password_hash, limiter=self._limiter
        )
        good_user = hmac.compare_digest(username.encode("utf-8"), self.username.encode("utf-8"))
        return good_user and good_password


def parse_auth(auth: Any) -> BasicAuth | None:
    """The ``auth`` option of ``instrument()``: ``False`` (no login) or
    ``{"type": "basic", "username": ..., "password": <bcrypt hash>}``.

    Raises:
        ValueError: anything else, or a password that is not a bcrypt hash.
        ImportError: basic auth without the ``bcrypt`` package (the ``admin`` extra).
    """
    if auth is False:
        return None
    if not isinstance(auth, Mapping) or auth.get("type") != "basic":
        raise ValueError(
            "invalid `auth` option: False, or "
            '{"type": "basic", "username": ..., "password": <bcrypt hash>}'
        )
    username, password = auth.get("username"), auth.get("password")
    if not isinstance(username, str):
        raise ValueError("the `username` field must be a string")
    if isinstance(password, bytes):
        password = password.decode("ascii", "replace")
    if not isinstance(password, str) or not _BCRYPT_HASH.fullmatch(password):
        raise ValueError("the `password` field must be a valid bcrypt hash")
    try:
        import bcrypt  # noqa: F401, PLC0415
    except ImportError as exc:
        raise ImportError(
            "basic auth for the Admin UI needs bcrypt: pip install 'trio-sio[admin]'"
        ) from exc
    return BasicAuth(username, password)
