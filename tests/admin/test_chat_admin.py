"""The chat example's ``--admin``: its server speaks the Admin UI's protocol, with the
password of the command line (or of ``$CHAT_ADMIN_PASSWORD``), and serves the UI's page at
``/admin/`` when ``npm ci`` installed it in examples/chat."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import bcrypt
import pytest
import trio

import trio_sio
from trio_sio.testing import open_raw_client

from .test_admin import next_event

CHAT = Path(__file__).parents[2] / "examples" / "chat" / "server.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chat_server_admin", CHAT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


chat = _load()


def test_admin_needs_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAT_ADMIN_PASSWORD", raising=False)
    assert chat.main(["--admin", "--port", "0"]) == 1


def test_the_admin_page_is_served_when_installed() -> None:
    files = chat.static_files()
    if not chat.ADMIN_UI.is_dir():
        assert not any(path.startswith("/admin/") for path in files)
        pytest.skip("examples/chat/node_modules has no @socket.io/admin-ui (npm ci there)")
    assert files["/admin/"].name == "index.html"
    assert all(file.is_file() for file in files.values())
    assert not any(path.endswith(".map") for path in files if path.startswith("/admin/"))


@pytest.mark.parametrize("password", ["hunter2", "bcrypt"])
async def test_the_chat_is_instrumented(password: str) -> None:
    given = password
    if password == "bcrypt":  # a hash is taken as it is
        given = bcrypt.hashpw(b"bcrypt", bcrypt.gensalt(4)).decode()
    app = chat.Chat()
    chat.instrument(app.sio, "root", given)
    async with trio.open_nursery() as nursery:
        await nursery.start(app.sio.run)
        async with open_raw_client(app.sio) as admin, open_raw_client(app.sio) as user:
            with pytest.raises(trio_sio.SocketIOError, match="invalid credentials"):
                await admin.connect("/admin", auth={"username": "root", "password": "nope"})
            await admin.connect("/admin", auth={"username": "root", "password": password})
            await next_event(admin, "all_sockets")
            sid = await user.connect(auth={"nickname": "carol"})
            # (the chat has connection state recovery: its broadcasts carry an offset too)
            socket = (await next_event(admin, "socket_connected"))[0]
            assert socket["id"] == sid and socket["data"]["nickname"] == "carol"
        nursery.cancel_scope.cancel()
