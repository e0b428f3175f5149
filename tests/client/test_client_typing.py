"""A user app under ``mypy --strict``: the client's decorators and emit helpers are typed
(an ``Any`` there would be an "untyped decorator" error)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

APP = """
from collections.abc import Callable
from typing import assert_type

import trio_sio
from trio_sio import Ack
from trio_sio._emitter import SocketEmitter

client = trio_sio.Client("http://localhost:3000")
chat = client.of("/chat")


@client.on("news")
async def news(item: str) -> None: ...


@client.on("job", ordered=True)
async def job(spec: dict[str, int], *, ack: Ack) -> None:
    await ack("done")


@chat.on("message")
def message(text: str) -> str:
    return text


@client.on("reconnect_attempt")
def attempt(n: int) -> None: ...


plain: Callable[[int], int] = lambda x: x
decorator = client.on("z")

assert_type(client.on("x", plain), Callable[[int], int])
assert_type(chat.on("y", plain, ordered=True), Callable[[int], int])
assert_type(decorator(plain), Callable[[int], int])
assert_type(client.volatile, SocketEmitter)
assert_type(client.timeout(5), SocketEmitter)
assert_type(chat.volatile.timeout(1), SocketEmitter)
"""


def test_user_app_passes_mypy_strict(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(APP))
    stdout, stderr, status = api.run(
        [
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--config-file",
            "",
            str(app),
        ]
    )
    assert status == 0, stdout + stderr
