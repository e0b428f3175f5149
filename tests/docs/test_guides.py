"""The guides' other code: what cannot run as it stands (fragments such as ``await
lookup(...)``) is checked so that it cannot rot silently.

- every Python block of the tutorial, the server and client guides, the cookbook and the
  migration guides compiles (top-level ``await`` allowed, as in an async REPL);
- every method or attribute those blocks use on ``sio``, ``socket`` and ``client`` exists
  on :class:`trio_sio.Server`, the server's :class:`trio_sio.Socket` (the client's
  :class:`trio_sio.ClientSocket` in the client guide) and :class:`trio_sio.Client`;
- the trio_sio column of the migration guides' tables names only what exists (``sio.``,
  ``socket.``, ``client.`` followed by a name);
- the tutorial's server and client, run as two programs over TCP (only the port changed),
  print what the tutorial says.
"""

from __future__ import annotations

import ast
import inspect
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sio_support import free_port

import trio_sio

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDES = [
    "tutorial.rst",
    "server.rst",
    "client.rst",
    "cookbook.rst",
    "emitting-events.rst",
    "testing.rst",
]
_BLOCK = re.compile(r"^(?:\.\. code-block:: python\n(?:   :.*\n)*|.*::)\n((?:   .*\n|\n)+)", re.M)


def python_blocks(page: str) -> list[str]:
    """The page's ``code-block:: python`` blocks, and its ``::`` literal blocks that parse
    as Python (others are shell, JSON or prose)."""
    text = (DOCS / page).read_text(encoding="utf-8")
    found = []
    for match in _BLOCK.finditer(text):
        code = textwrap.dedent(match[1]).strip() + "\n"
        explicit = match[0].startswith(".. code-block:: python")
        try:
            compile(code, page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError:
            if explicit:
                raise
            continue
        found.append(code)
    return found


def owners(page: str) -> dict[str, type]:
    return {
        "sio": trio_sio.Server,
        "socket": trio_sio.ClientSocket if page == "client.rst" else trio_sio.Socket,
        "client": trio_sio.Client,
    }


def has(cls: type, attribute: str) -> bool:
    """Whether instances of ``cls`` have ``attribute``: on the class, or assigned to
    ``self`` in an ``__init__`` of its MRO."""
    if hasattr(cls, attribute):
        return True
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or not hasattr(init, "__code__"):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and isinstance(node.ctx, ast.Store)
                and node.attr == attribute
            ):
                return True
    return False


def used_attributes(code: str) -> set[tuple[str, str]]:
    """``(name, attribute)`` for each ``name.attribute`` with ``name`` a bare name."""
    tree = ast.parse(code)
    return {
        (node.value.id, node.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    }


@pytest.mark.parametrize("page", GUIDES)
def test_the_python_blocks_compile_and_use_what_exists(page: str) -> None:
    blocks = python_blocks(page)
    assert blocks, f"no Python block found in {page}"
    types = owners(page)
    missing = set()
    for code in blocks:
        # ``sio``/``socket``/``client`` made otherwise in a block are not ours to check
        for name, attribute in used_attributes(code):
            if name in types and not has(types[name], attribute):
                missing.add(f"{name}.{attribute}")
    assert not missing, f"{page} uses what does not exist: {sorted(missing)}"


def trio_sio_column(page: str) -> str:
    """The right-hand column of a two-column ``list-table``: trio_sio's side."""
    text = (DOCS / page).read_text(encoding="utf-8")
    cells = re.findall(r"^     - (.*\n(?:       .*\n)*)", text, re.M)
    return "\n".join(cells)


@pytest.mark.parametrize("page", ["from-python-socketio.rst", "from-node.rst"])
def test_the_migration_tables_name_what_exists(page: str) -> None:
    column = trio_sio_column(page)
    assert "emit_with_ack" in column
    types = owners(page)
    named = set(re.findall(r"\b(sio|socket|client)\.([a-z_]+)", column))
    assert len(named) >= 15
    missing = [f"{name}.{attr}" for name, attr in named if not has(types[name], attr)]
    assert not missing, f"{page} names what does not exist: {sorted(missing)}"


def test_the_tutorials_server_and_client_talk(tmp_path: Path) -> None:
    server_code, client_code = python_blocks("tutorial.rst")
    assert "trio_sio.Server(" in server_code and "trio_sio.Client(" in client_code
    port = str(free_port())
    (tmp_path / "server.py").write_text(server_code.replace("3000", port))
    (tmp_path / "client.py").write_text(client_code.replace("3000", port))
    server = subprocess.Popen(
        [sys.executable, "server.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "no server"
                time.sleep(0.1)
        client = subprocess.run(
            [sys.executable, "client.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.splitlines() == ["server says world", "ack: stored"]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            output, _ = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    printed = [line for line in output.splitlines() if line.startswith(("connected:", "gone:"))]
    assert len(printed) == 2, output
    assert printed[0].startswith("connected: ") and printed[0].endswith("{'name': 'ada'}")
    assert printed[1].startswith("gone: ") and printed[1].endswith("client namespace disconnect")
