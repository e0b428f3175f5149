"""Helpers shared by test modules across folders (``tests/`` is on ``sys.path``: pytest
puts it there for the top-level conftest.py)."""

from __future__ import annotations

import os
import socket
from typing import Any

import trio_sio


def make_server(*, echo: bool = False, **options: Any) -> trio_sio.Server:
    """A :class:`trio_sio.Server` with the JavaScript server's heartbeat (25 s / 20 s, also
    the defaults, pinned here so that the tests' timings do not move with them) and
    ``options``. With ``echo``, the ``echo`` event acks its argument back."""
    options.setdefault("ping_interval", 25)
    options.setdefault("ping_timeout", 20)
    sio = trio_sio.Server(**options)
    if echo:

        @sio.on("echo")
        def echo_handler(socket: trio_sio.Socket, value: Any) -> Any:
            return value

    return sio


def in_ci() -> bool:
    """Whether the ``CI`` environment variable says we run under CI (where a test that
    cannot find what it needs fails instead of skipping)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
