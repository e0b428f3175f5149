"""The guides' JavaScript lines, run with the official ``socket.io-client`` (Node) against
the page's Python server snippet, served over TCP: each line runs without an error, and the
server snippet prints what its comments say (so that a JavaScript emit or ack that does not
match the Python server fails here); a line ending with ``// output`` logs that output.

Needs ``node`` and ``npm ci`` in tests/interop (skipped without them, except under CI).
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio
from doc_snippets import EXAMPLES, Example, expected_prints, recorder
from sio_support import in_ci

import trio_sio

INTEROP = Path(__file__).resolve().parents[1] / "interop"
URL_IN_PAGES = "http://localhost:3000"

SCRIPT = """
import { createRequire } from "node:module";
const require = createRequire(%(anchor)s);
const { io } = require("socket.io-client");
const URL = process.argv[2];
const state = { room: "kitchen" };  // what the cookbook's graceful-deploy line reads
let socket = null;
try {
  %(preamble)s
  %(line)s
} catch (err) {
  console.error("ERROR", err);
  process.exit(1);
}
process.on("unhandledRejection", (err) => { console.error("ERROR", err); process.exit(1); });
"""


def node() -> str:
    found = shutil.which("node")
    reason = None
    if found is None:
        reason = "node is not installed"
    elif not (INTEROP / "node_modules" / "socket.io-client").is_dir():
        reason = "tests/interop/node_modules is missing (npm ci there)"
    if reason is not None:
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    assert found is not None
    return found


def python_client_auth(example: Example) -> Any:
    """The ``auth=`` literal of the Python client snippet's ``trio_sio.Client(...)``, if any,
    so that the JavaScript client presents the same."""
    for node_ in ast.walk(ast.parse(example.client)):
        if isinstance(node_, ast.Call) and getattr(node_.func, "attr", None) == "Client":
            for keyword in node_.keywords:
                if keyword.arg == "auth":
                    try:
                        return ast.literal_eval(keyword.value)
                    except ValueError:
                        return None
    return None


def script(example: Example) -> str:
    line = example.javascript.replace(f'"{URL_IN_PAGES}"', "URL")
    if line.startswith("const socket = "):
        line = line.replace("const socket = ", "socket = ", 1)
        preamble = ""
    else:
        auth = python_client_auth(example)
        options = f", {json.dumps({'auth': auth})}" if auth is not None else ""
        preamble = f"socket = io(URL{options});"
    anchor = json.dumps(str(INTEROP / "package.json"))
    body = f"(async () => {{\n{line}\n}})().catch((err) => {{ console.error('ERROR', err); }});"
    return SCRIPT % {"anchor": anchor, "preamble": preamble, "line": body}


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.id for example in EXAMPLES])
async def test_the_javascript_line_runs_against_the_python_server(
    example: Example, tmp_path: Path
) -> None:
    node_bin = node()
    server_out: list[str] = []
    server_globals: dict[str, Any] = {
        "trio": trio,
        "trio_sio": trio_sio,
        "__name__": "snippet",
        "sio": trio_sio.Server(),
        "print": recorder(server_out),
    }
    exec(compile(example.server, f"{example.id} server", "exec"), server_globals)
    expected = expected_prints(example.server)
    path = tmp_path / "client.mjs"
    path.write_text(script(example))
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(server_globals["sio"].serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        with (tmp_path / "stdout").open("wb") as stdout, (tmp_path / "stderr").open("wb") as stderr:
            process = await trio.lowlevel.open_process(
                [node_bin, str(path), url], stdout=stdout, stderr=stderr
            )
            try:
                with trio.move_on_after(20):
                    while len(server_out) < len(expected) and process.poll() is None:
                        await trio.sleep(0.05)
                await trio.sleep(0.5)  # a second print, or an error, would show now
                assert process.poll() is None, "the client script ended early"
            finally:
                process.kill()
                await process.wait()
        nursery.cancel_scope.cancel()
    errors = (tmp_path / "stderr").read_text()
    assert "ERROR" not in errors, errors
    assert sorted(server_out) == sorted(expected), errors
    # a line that says what the browser logs (``console.log(arg); // world``) logs it
    _, _, logged = example.javascript.partition("; // ")
    if logged:
        assert logged.strip() in (tmp_path / "stdout").read_text().splitlines()
