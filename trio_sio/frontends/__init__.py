"""Front ends: how HTTP requests and WebSockets reach an Engine.IO server.

Both drive the same :class:`~trio_sio.engineio.EngineServer` request handling; the engine
imports neither.

- :mod:`trio_sio.frontends.standalone`: a TCP (or TLS) server on h11, what
  ``trio_sio.Server.serve`` runs.
- :mod:`trio_sio.frontends.asgi`: :class:`~trio_sio.frontends.asgi.ASGIApp`, an ASGI 3
  application for Hypercorn's trio worker (alone, or around / inside a Quart-Trio or
  Starlette app).
"""

from __future__ import annotations
