"""The guides' paired snippets, run as they stand, so that the pages cannot rot.

A page shows an example as a ``code-block`` captioned ``Server`` followed by one captioned
``Client (Python)`` (and one captioned ``Client (JavaScript)``, the browser's line). Each
pair runs here against each other, in memory and in virtual time:

- the server snippet runs as a module with ``sio = trio_sio.Server()`` defined;
- the client snippet's definitions (functions, classes, imports) run before the client
  connects, the rest (top-level ``await`` allowed) once ``async with client`` has connected;
- every ``print(...)`` must print what its comment says (``print(arg)  # world``), or its
  literal when it prints a string literal, and nothing else may be printed.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_sio
from trio_sio.testing import SioClient, SioServe

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = ["emitting-events.rst"]

_DIRECTIVE = re.compile(r"^\.\. code-block:: (?P<lang>\w+)\s*$")
_CAPTION = re.compile(r"^\s+:caption: (?P<caption>.+?)\s*$")
_UNDERLINE = re.compile(r"^([=\-~^])\1{2,}\s*$")


@dataclass
class Example:
    page: str
    section: str
    line: int
    server: str = ""
    client: str = ""
    javascript: str = ""
    blocks: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line} ({self.section})"


def code_blocks(path: Path) -> list[tuple[str, int, str, str, str]]:
    """``(section, line, language, caption, code)`` for each captioned code block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    section = ""
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1]) and line.strip():
            section = line.strip()
        directive = _DIRECTIVE.match(line)
        if not directive:
            continue
        j = i + 1
        caption = ""
        while j < len(lines) and lines[j].strip().startswith(":"):
            option = _CAPTION.match(lines[j])
            if option:
                caption = option["caption"]
            j += 1
        body = []
        for text in lines[j:]:
            if text.strip() and not text.startswith("   "):
                break
            body.append(text[3:])
        if caption:
            found.append((section, i + 1, directive["lang"], caption, "\n".join(body).strip()))
    return found


def examples() -> list[Example]:
    found: list[Example] = []
    for page in PAGES:
        for section, line, _lang, caption, code in code_blocks(DOCS / page):
            if caption == "Server":
                found.append(Example(page, section, line, server=code))
                continue
            assert found and found[-1].page == page, f"{page}:{line}: a client before a server"
            example = found[-1]
            if caption == "Client (Python)":
                assert not example.client, f"{page}:{line}: two Python clients in a row"
                example.client = code
            elif caption == "Client (JavaScript)":
                example.javascript = code
    return found


EXAMPLES = examples()


def expected_prints(code: str) -> list[str]:
    """What each ``print`` call in ``code`` should print: its comment, or its literal."""
    lines = code.splitlines()
    expected = []
    for node in ast.walk(ast.parse(code)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id != "print":
            continue
        [arg, *rest] = node.args or [None]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not rest:
            expected.append(arg.value)
            continue
        _, _, comment = lines[node.lineno - 1].partition("  # ")
        assert comment, f"print without an expected output: {lines[node.lineno - 1]!r}"
        expected.append(comment.strip())
    return expected


def recorder(out: list[str]) -> Callable[..., None]:
    def fake_print(*args: Any, **kwargs: Any) -> None:
        out.append(" ".join(map(str, args)))

    return fake_print


def split_client(code: str) -> tuple[ast.Module, ast.Module]:
    """The client snippet's definitions (run before connecting) and the rest."""
    tree = ast.parse(code)
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    before = [node for node in tree.body if isinstance(node, definitions)]
    after = [node for node in tree.body if not isinstance(node, definitions)]
    return ast.Module(before, type_ignores=[]), ast.Module(after, type_ignores=[])


def test_every_example_has_both_sides_and_the_javascript_line() -> None:
    assert len(EXAMPLES) >= 8
    for example in EXAMPLES:
        assert example.client, f"{example.id}: no Python client snippet"
        assert example.javascript, f"{example.id}: no JavaScript client line"
        assert "socket" in example.javascript, example.id


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.id for example in EXAMPLES])
async def test_the_snippets_run_against_each_other(
    example: Example,
    sio_serve: SioServe,
    sio_client: SioClient,
    autojump_clock: trio.testing.MockClock,
) -> None:
    server_out: list[str] = []
    client_out: list[str] = []
    base = {"trio": trio, "trio_sio": trio_sio, "__name__": "snippet"}
    sio = trio_sio.Server()
    server_globals = {**base, "sio": sio, "print": recorder(server_out)}
    exec(compile(example.server, f"{example.id} server", "exec"), server_globals)
    network = await sio_serve(sio)
    client = sio_client(network)
    client_globals = {**base, "client": client, "print": recorder(client_out)}
    before, after = split_client(example.client)
    exec(compile(before, f"{example.id} client", "exec"), client_globals)
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    rest = compile(after, f"{example.id} client", "exec", flags=flags)
    expect_server = expected_prints(example.server)
    expect_client = expected_prints(example.client)
    async with client:
        result = eval(rest, client_globals)
        if inspect.iscoroutine(result):
            await result
        with trio.move_on_after(60):
            while len(server_out) < len(expect_server) or len(client_out) < len(expect_client):
                await trio.sleep(0.1)
        await trio.sleep(15)  # virtual time: anything else (a second print, an ack) shows
    assert sorted(server_out) == sorted(expect_server), "the server snippet's output"
    assert sorted(client_out) == sorted(expect_client), "the client snippet's output"
