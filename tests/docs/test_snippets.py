"""The guides' paired snippets, run as they stand, so that the pages cannot rot.

A page shows an example as a ``code-block`` captioned ``Server`` followed by one captioned
``Client (Python)`` (and one captioned ``Client (JavaScript)``, the browser's line). Each
pair runs here against each other, in memory and in virtual time:

- the server snippet runs as a module with ``sio = trio_sio.Server()`` defined (it may
  make its own ``sio``);
- the client snippet, with a ``client`` defined (it may make its own with
  ``trio_sio.Client(url, ...)``, which then connects through the test's network), runs up
  to its first top-level ``await`` before the client connects, the rest once
  ``async with client`` has connected;
- every ``print(...)`` must print what its comment says (``print(arg)  # world``), or its
  literal when it prints a string literal, and nothing else may be printed.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
import types
from typing import Any

import pytest
import trio
import trio.testing
from doc_snippets import DOCS, EXAMPLES, Example, expected_prints, recorder

import trio_sio
from trio_sio.testing import MemoryNetwork, SioClient, SioServe


def split_client(code: str) -> tuple[ast.Module, ast.Module]:
    """The client snippet up to its first top-level statement that awaits (run before
    connecting: the client, its handlers), and the rest (run once connected)."""
    tree = ast.parse(code)
    awaits = (ast.Await, ast.AsyncWith, ast.AsyncFor)
    first = len(tree.body)
    for index, node in enumerate(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if any(isinstance(inner, awaits) for inner in ast.walk(node)):
            first = index
            break
    return (
        ast.Module(tree.body[:first], type_ignores=[]),
        ast.Module(tree.body[first:], type_ignores=[]),
    )


def client_module(network: MemoryNetwork) -> types.ModuleType:
    """``trio_sio`` as a client snippet sees it: its ``trio_sio.Client(url, ...)`` connects
    through the test's in-memory network."""
    module = types.ModuleType("trio_sio")
    module.__dict__.update({name: getattr(trio_sio, name) for name in trio_sio.__all__})

    def client(url: str, **options: Any) -> trio_sio.Client:
        return trio_sio.Client(url, connector=network.connect, **options)

    module.Client = client  # type: ignore[attr-defined]
    return module


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
    server_globals = {**base, "sio": trio_sio.Server(), "print": recorder(server_out)}
    exec(compile(example.server, f"{example.id} server", "exec"), server_globals)
    network = await sio_serve(server_globals["sio"])  # the snippet may make its own
    client_globals = {**base, "client": sio_client(network), "print": recorder(client_out)}
    client_globals["trio_sio"] = client_module(network)
    before, after = split_client(example.client)
    exec(compile(before, f"{example.id} client", "exec"), client_globals)
    client = client_globals["client"]
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


def uncaptioned_python(page: str, marker: str) -> str:
    """The one uncaptioned ``python`` block of ``page`` that contains ``marker``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    pattern = r"^\.\. code-block:: python\n\n((?:   .*\n|\n)+)"
    found = [
        textwrap.dedent(block)
        for block in re.findall(pattern, text, re.MULTILINE)
        if marker in block
    ]
    assert len(found) == 1, f"expected one python block with {marker!r} in {page}"
    return found[0]


async def test_the_cookbooks_autojump_test_passes(
    sio_serve: SioServe, sio_client: SioClient, autojump_clock: trio.testing.MockClock
) -> None:
    code = uncaptioned_python("cookbook.rst", "autojump_clock")
    namespace: dict[str, Any] = {"__name__": "cookbook_test"}
    exec(compile(code, "cookbook.rst (testing)", "exec"), namespace)
    assert namespace["pytest_plugins"] == ["trio_sio.testing.pytest_plugin"]
    started = trio.current_time()
    await namespace["test_an_unanswered_question_times_out"](sio_serve, sio_client, autojump_clock)
    assert trio.current_time() - started >= 5
