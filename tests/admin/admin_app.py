"""What the Admin UI browser test drives: an instrumented trio_sio server, the Admin UI's
own built page (``@socket.io/admin-ui``'s ``ui/dist``, ``npm ci`` in this folder) served on a
second port (another origin, as https://admin.socket.io is), and two clients.

    ADMIN_PASSWORD=... python tests/admin/admin_app.py [--port 0] [--ui-port 0]

It prints, in this order::

    admin ui on http://127.0.0.1:<port>/
    server on http://127.0.0.1:<port>/
    client alice <socket id>
    client bob <socket id>

and then ``client <name> got <event> <JSON args>`` for every event a client receives, and
``client <name> disconnected`` when the server drops one. Stop it with Ctrl+C or a signal.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import bcrypt
import trio

import trio_sio

HERE = Path(__file__).resolve().parent
UI_DIST = HERE / "node_modules" / "@socket.io" / "admin-ui" / "ui" / "dist"
USERS = {"alice": ["lobby", "red"], "bob": ["lobby"]}


def ui_files(dist: Path = UI_DIST) -> dict[str, Path]:
    """Every file of the built UI by URL path, and ``/`` for its page."""
    files = {"/" + path.relative_to(dist).as_posix(): path for path in dist.rglob("*")}
    files = {url: path for url, path in files.items() if path.is_file()}
    files["/"] = dist / "index.html"
    return files


def make_server(
    ui_origin: str, username: str, password: str, server_id: str | None = None
) -> trio_sio.Server:
    """The application: its sockets join the rooms their name is given."""
    sio = trio_sio.Server(cors_allowed_origins=[ui_origin])

    @sio.use
    def named(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        socket.data["name"] = str(auth.get("name"))

    @sio.on("connection")
    def connected(socket: trio_sio.Socket) -> None:
        socket.join(USERS.get(socket.data["name"], []))

    password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    auth = {"type": "basic", "username": username, "password": password_hash}
    sio.instrument(auth=auth, server_id=server_id)
    return sio


def say(line: str) -> None:
    print(line, flush=True)


async def run_client(url: str, name: str, *, task_status: trio.TaskStatus[None]) -> None:
    client = trio_sio.Client(url, auth={"name": name}, reconnection=False)

    @client.on_any
    def got(event: str, *args: Any) -> None:
        say(f"client {name} got {event} {json.dumps(args)}")

    @client.on("disconnect")
    def gone(reason: str) -> None:
        say(f"client {name} disconnected")

    async with client:
        say(f"client {name} {client.id}")
        task_status.started()
        await trio.sleep_forever()


async def main(port: int, ui_port: int, username: str, password: str, server_id: str) -> None:
    async with trio.open_nursery() as nursery:
        page = trio_sio.Server(static_files=ui_files())  # the UI's files only
        [listener] = await nursery.start(page.serve, "127.0.0.1", ui_port)
        ui_origin = f"http://127.0.0.1:{listener.socket.getsockname()[1]}"
        say(f"admin ui on {ui_origin}/")
        sio = make_server(ui_origin, username, password, server_id)
        [listener] = await nursery.start(sio.serve, "127.0.0.1", port)
        url = f"http://127.0.0.1:{listener.socket.getsockname()[1]}"
        say(f"server on {url}/")
        for name in USERS:
            await nursery.start(run_client, url, name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ui-port", type=int, default=0)
    parser.add_argument("--username", default="admin")
    parser.add_argument("--server-id", default="trio-sio-test", help="the server's name in the UI")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    password = os.environ.get("ADMIN_PASSWORD", "")
    if not password:
        sys.exit("set ADMIN_PASSWORD")
    if not (UI_DIST / "index.html").is_file():
        sys.exit(f"the Admin UI is missing: run `npm ci` in {HERE}")
    try:
        trio.run(main, args.port, args.ui_port, args.username, password, args.server_id)
    except KeyboardInterrupt:
        pass
