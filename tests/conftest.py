"""Shared pytest configuration.

Tests that need a program from outside Python (Node.js and the official npm packages,
Chromium, redis-server, nginx, haproxy or tinyproxy) get the ``external`` marker here, by
where they live, so that ``pytest -m "not external"`` (``nox -s unit``) is the quick everyday run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["trio_sio.testing.pytest_plugin"]

TESTS = Path(__file__).resolve().parent

#: Directories and files (relative to tests/) whose tests need Node.js, Chromium,
#: redis-server or nginx.
EXTERNAL = (
    "adapters/",  # redis-server, and Node cluster peers
    "admin/test_admin_cluster.py",  # redis-server
    "admin/test_admin_interop.py",  # the Node Admin UI server
    "admin/test_chat_admin.py",  # the Admin UI's page from npm
    "asgi/test_asgi_frameworks.py",  # the Node client
    "asgi/test_hypercorn_node.py",
    "asgi/test_tls.py",
    "bench/",  # Node socket.io
    "browser/",  # Chromium
    "client/test_client_real_networks.py",  # haproxy, tinyproxy
    "deploy/",  # nginx
    "docs/test_snippets_js.py",  # the official Node client
    "engineio/test_client_node.py",
    "examples/test_processes.py",  # the examples' browser bundle from npm
    "interop/",  # Node socket.io, python-socketio in processes
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        where = item.path.relative_to(TESTS).as_posix() if item.path.is_relative_to(TESTS) else ""
        if where.startswith(EXTERNAL):
            item.add_marker(pytest.mark.external)
