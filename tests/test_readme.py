"""The README's code blocks, run as they stand.

- every ``python`` block compiles (the client one with its top-level ``async with``, as in
  an async REPL);
- the tour's server and client run against each other over TCP, only the port changed;
- the testing snippet passes under a real ``pytest`` run, with the configuration the README
  gives and the tour's server as ``app.py`` (set up as the README says).
"""

from __future__ import annotations

import ast
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

README = Path(__file__).resolve().parent.parent / "README.md"
TOUR_PORT = "3000"

_FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(lang: str) -> list[str]:
    """The README's fenced code blocks in ``lang``, in order."""
    text = README.read_text(encoding="utf-8")
    return [m["code"] for m in _FENCE.finditer(text) if m["lang"] == lang]


def block(lang: str, marker: str) -> str:
    """The one ``lang`` block that contains ``marker``."""
    found = [code for code in blocks(lang) if marker in code]
    assert len(found) == 1, f"expected one {lang} block with {marker!r} in the README"
    return found[0]


def snippet_server() -> str:
    return block("python", "trio_sio.Server(")


def snippet_client() -> str:
    return block("python", "trio_sio.open_client(")


def snippet_testing() -> str:
    return block("python", "pytest_plugins")


def compile_snippet(code: str, name: str) -> Any:
    """Compile a snippet as a module, allowing top-level ``await``/``async with``."""
    return compile(code, f"README.md ({name})", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def importable(code: str) -> str:
    """The tour's server as ``app.py``, as the README says: ``trio.run(main)`` under
    ``if __name__ == "__main__":``, so that importing it does not start serving."""
    if 'if __name__ == "__main__":' in code:
        return code
    lines = code.splitlines()
    assert lines.count("trio.run(main)") == 1, "the server snippet should end by running main"
    index = lines.index("trio.run(main)")
    lines[index : index + 1] = ['if __name__ == "__main__":', "    trio.run(main)"]
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_python_blocks_compile() -> None:
    codes = blocks("python")
    assert len(codes) >= 3
    for number, code in enumerate(codes, 1):
        compile_snippet(code, f"python block {number}")


async def test_the_tour_server_and_client_talk(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = str(free_port())
    server_code = snippet_server()
    client_code = snippet_client()
    assert TOUR_PORT in server_code
    assert TOUR_PORT in client_code
    # The snippets read as one script: the client block uses the server block's imports.
    namespace: dict[str, Any] = {"__name__": "__main__"}
    # We are in Trio already: keep what the snippet's `trio.run(main)` would run.
    mains: list[Any] = []
    monkeypatch.setattr(trio, "run", lambda fn, *args, **kwargs: mains.append(fn))
    exec(compile_snippet(server_code.replace(TOUR_PORT, port), "server"), namespace)
    assert len(mains) == 1
    monkeypatch.undo()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(mains[0])
            await trio.testing.wait_all_tasks_blocked()  # listening
            client = compile_snippet(client_code.replace(TOUR_PORT, port), "client")
            coroutine = eval(client, namespace)
            assert coroutine is not None  # it has a top-level `async with`
            await coroutine
            nursery.cancel_scope.cancel()

    out = capsys.readouterr().out.splitlines()
    assert "(1, '2', {'3': '4', '5': b'\\x06'})" in out  # the "hello" handler
    assert "{'status': 'ok'}" in out  # the ack of "update item"


def test_the_testing_snippet_passes_under_pytest(tmp_path: Path) -> None:
    config = block("toml", "[tool.pytest.ini_options]")
    (tmp_path / "pyproject.toml").write_text(config, encoding="utf-8")
    (tmp_path / "app.py").write_text(importable(snippet_server()), encoding="utf-8")
    (tmp_path / "test_app.py").write_text(snippet_testing(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_app.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "1 passed" in result.stdout, report
