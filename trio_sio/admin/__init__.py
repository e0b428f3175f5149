"""The server side of the Socket.IO Admin UI (https://admin.socket.io), as the Node package
``@socket.io/admin-ui`` speaks it: ``sio.instrument(auth=..., ...)``.

See :meth:`trio_sio.Server.instrument` and the Admin UI guide. Basic auth needs the
``admin`` extra (bcrypt); :class:`RedisSessionStore` the ``redis`` extra.
"""

from __future__ import annotations

from ._auth import InMemorySessionStore as InMemorySessionStore
from ._auth import RedisSessionStore as RedisSessionStore
from ._auth import SessionStore as SessionStore
from ._instrument import Instrumentation as Instrumentation

__all__ = ["InMemorySessionStore", "Instrumentation", "RedisSessionStore", "SessionStore"]
