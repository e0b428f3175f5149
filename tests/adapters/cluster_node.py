"""A trio_sio node of a Redis cluster as a separate process, and the driver of such peers.

As a script::

    python tests/adapters/cluster_node.py --redis URL --port 0 [--key KEY] [--name NAME]
                                          [--requests-timeout SECONDS]

serves Socket.IO on 127.0.0.1 with the Redis adapter, prints its port on the first line of
stdout, then one JSON object per line. It speaks the same lines as ``node_cluster_server.mjs``
(the Node node of the mixed-cluster tests), so tests drive either the same way:

- on connection, ``socket.data["name"] = auth["name"]`` and the socket joins ``auth["rooms"]``;
  ``{"ev": "connection", "sid", "auth"}`` and ``{"ev": "disconnect", "sid", "reason"}``;
- server-side handlers: ``whoami`` answers the node's name, ``hello(x)`` answers
  ``"NAME:x"``, ``silent`` never answers; each logs ``{"ev": "server-side", "event", "args"}``;
- commands ``{"id": n, "cmd": ..., ...}`` on stdin, answered by ``{"ev": "result", "id", ...}``
  (``"error"`` when one failed): ``emit``, ``emitWithAck`` (``timeout`` in ms; a partial
  answer has ``timedOut``), ``fetchSockets``, ``socketsJoin``, ``socketsLeave``,
  ``disconnectSockets``, ``remote``, ``serverSideEmit``, ``serverSideEmitWithAck`` (waiting
  ``--requests-timeout``, as the Node adapter's ``requestsTimeout``), ``serverCount``,
  ``allRooms``, ``rooms``, ``info`` (see ``node_cluster_server.mjs``).

Bytes travel in the JSON as ``{"$bytes": "<hex>"}``. The node exits when its stdin closes.

Imported (by the tests), it gives :class:`Peer`, which runs such a process (or the Node peers)
and talks to it, :func:`open_client` for trio_sio clients of a node, and :func:`to_json` /
:func:`from_json` for the ``$bytes`` convention.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

import trio_sio
from trio_sio.adapters.base import RemoteSocket
from trio_sio.adapters.redis import create_adapter

START_TIMEOUT = 20.0
WAIT = 5.0


def to_json(value: Any) -> Any:
    """``value`` with bytes as ``{"$bytes": hex}`` (and tuples, sets as lists)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(to_json(v) for v in value)
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    """The reverse of :func:`to_json`: ``{"$bytes": hex}`` becomes bytes."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$bytes"} and isinstance(value["$bytes"], str):
            return bytes.fromhex(value["$bytes"])
        return {k: from_json(v) for k, v in value.items()}
    return value


class PeerError(Exception):
    """A peer answered a command with an error, or went away."""


class Peer:
    """A process speaking JSON lines: ``cluster_node.py``, ``node_cluster_server.mjs`` or
    ``node_emitter.mjs``. Open it with :meth:`start`.

    Attributes:
        port: the port it printed first.
        log: every JSON line it printed since, decoded (bytes restored).
        stderr: its standard error, line by line.
    """

    def __init__(self, process: trio.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.port: int | None = None
        self.log: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self.ended = False
        self._changed = trio.Event()
        self._next_id = 0

    @classmethod
    @asynccontextmanager
    async def start(
        cls, argv: Sequence[str], *, cwd: Path | None = None, name: str | None = None
    ) -> AsyncIterator[Peer]:
        """Run ``argv``; yield once it printed its port; close its stdin (and kill it if it
        does not end) at exit."""
        process = await trio.lowlevel.open_process(
            list(argv),
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        peer = cls(process, name or Path(argv[1]).name)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(peer._read_stdout)
                nursery.start_soon(peer._read_stderr)
                with trio.fail_after(START_TIMEOUT):
                    while peer.port is None:
                        if peer.ended:
                            raise PeerError(f"{peer.name} did not start: {peer.stderr[-20:]}")
                        await peer._wait_change()
                yield peer
                await peer._stop()
                nursery.cancel_scope.cancel()
        finally:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
                for stream in (process.stdin, process.stdout, process.stderr):
                    if stream is not None:
                        await stream.aclose()

    async def _stop(self) -> None:
        assert self.process.stdin is not None
        try:
            await self.process.stdin.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        with trio.move_on_after(5):
            await self.process.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_change(self) -> None:
        await self._changed.wait()

    async def _lines(self, stream: trio.abc.ReceiveStream | None) -> AsyncIterator[str]:
        assert stream is not None
        buffer = b""
        while data := await stream.receive_some():
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.decode()

    async def _read_stdout(self) -> None:
        try:
            async for line in self._lines(self.process.stdout):
                if self.port is None:
                    if line.strip().isdigit():
                        self.port = int(line)
                elif line.strip():
                    self.log.append(from_json(json.loads(line)))
                self._notify()
        finally:
            self.ended = True
            self._notify()

    async def _read_stderr(self) -> None:
        async for line in self._lines(self.process.stderr):
            self.stderr.append(line)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def entries(self, **match: Any) -> list[dict[str, Any]]:
        """The log entries whose fields equal ``match``."""
        return [e for e in self.log if all(e.get(k) == v for k, v in match.items())]

    async def wait_for(
        self, count: int = 1, *, timeout: float = WAIT, **match: Any
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` log entries match (at most ``timeout`` seconds); return them."""
        with trio.fail_after(timeout):
            while len(found := self.entries(**match)) < count:
                if self.ended:
                    raise PeerError(f"{self.name} exited: {self.stderr[-20:]}")
                await self._wait_change()
        return found

    async def wait_until(
        self, predicate: Callable[[list[dict[str, Any]]], bool], *, timeout: float = WAIT
    ) -> None:
        """Wait until ``predicate(log)`` holds."""
        with trio.fail_after(timeout):
            while not predicate(self.log):
                if self.ended:
                    raise PeerError(f"{self.name} exited: {self.stderr[-20:]}")
                await self._wait_change()

    async def call(self, cmd: str, *, timeout: float = WAIT, **fields: Any) -> dict[str, Any]:
        """Send a command and return its result (bytes restored).

        Raises:
            PeerError: the peer answered with an error.
        """
        self._next_id += 1
        request_id = self._next_id
        line = json.dumps({"id": request_id, "cmd": cmd, **to_json(fields)}) + "\n"
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line.encode())
        (result,) = await self.wait_for(ev="result", id=request_id, timeout=timeout)
        if "error" in result:
            raise PeerError(f"{self.name} {cmd}: {result['error']}")
        return result


class Inbox:
    """What a trio_sio client (or a node's server-side handlers) received, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[Any]]] = []
        self._changed = trio.Event()

    def add(self, event: str, *args: Any) -> None:
        self.events.append((event, list(args)))
        self._changed.set()
        self._changed = trio.Event()

    def args(self, event: str) -> list[list[Any]]:
        """The arguments of each ``event`` received."""
        return [args for name, args in self.events if name == event]

    async def wait_for(self, event: str, count: int = 1, timeout: float = WAIT) -> list[list[Any]]:
        """Wait until ``count`` ``event`` came (at most ``timeout`` seconds); their arguments."""
        with trio.fail_after(timeout):
            while len(found := self.args(event)) < count:
                await self._changed.wait()
        return found


@dataclasses.dataclass
class TrioClient:
    """A connected client of :func:`open_client`."""

    name: str
    sid: str
    inbox: Inbox
    client: trio_sio.Client


@asynccontextmanager
async def open_client(
    port: int, name: str, rooms: Iterable[str] = (), *, ack: Any = None, namespace: str = "/"
) -> AsyncIterator[TrioClient]:
    """A ``trio_sio.Client`` over WebSocket to ``127.0.0.1:port``, connected with auth
    ``{name, rooms}``. Every event (and ``disconnect``, with its reason) goes to its inbox;
    it answers ``poll`` with ``ack`` when that is not None (else never)."""
    client = trio_sio.Client(
        f"http://127.0.0.1:{port}",
        namespaces=[namespace],
        transports=["websocket"],
        auth={"name": name, "rooms": list(rooms)},
        reconnection=False,
    )
    socket = client.of(namespace)
    inbox = Inbox()
    socket.on_any(inbox.add)
    socket.on("disconnect", lambda reason: inbox.add("disconnect", reason))
    if ack is not None:
        socket.on("poll", lambda *args: ack)
    async with client:
        assert socket.id is not None
        yield TrioClient(name, socket.id, inbox, client)


# -- the node -----------------------------------------------------------------------------------


def _write(entry: Any) -> None:
    sys.stdout.write(json.dumps(to_json(entry)) + "\n")
    sys.stdout.flush()


def _describe(socket: trio_sio.Socket | RemoteSocket) -> dict[str, Any]:
    handshake = dataclasses.asdict(socket.handshake)  # one shape, local or remote
    return {
        "id": socket.id,
        "rooms": sorted(socket.rooms),
        "data": socket.data,
        "handshake": handshake,
        "local": not isinstance(socket, RemoteSocket),
    }


class _Node:
    def __init__(self, sio: trio_sio.Server, name: str, requests_timeout: float) -> None:
        self.sio = sio
        self.name = name
        self.requests_timeout = requests_timeout

    def _operator(self, cmd: dict[str, Any]) -> Any:
        op = self.sio.of(cmd.get("nsp", "/")).to(*cmd.get("to", []))
        if cmd.get("except"):
            op = op.except_(*cmd["except"])
        if cmd.get("local"):
            op = op.local
        if cmd.get("volatile"):
            op = op.volatile
        return op

    async def run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        kind = cmd.get("cmd")
        args = from_json(cmd.get("args", []))
        ns = self.sio.of(cmd.get("nsp", "/"))
        if kind == "emit":
            await self._operator(cmd).emit(cmd["event"], *args)
        elif kind == "emitWithAck":
            op = self._operator(cmd).timeout(cmd.get("timeout", 2000) / 1000)
            try:
                return {"replies": await op.emit_with_ack(cmd["event"], *args)}
            except trio_sio.AckTimeoutError as exc:
                return {"timedOut": str(exc), "replies": exc.replies}
        elif kind == "fetchSockets":
            return {"sockets": [_describe(s) for s in await self._operator(cmd).fetch_sockets()]}
        elif kind == "socketsJoin":
            await self._operator(cmd).sockets_join(*cmd["rooms"])
        elif kind == "socketsLeave":
            await self._operator(cmd).sockets_leave(*cmd["rooms"])
        elif kind == "disconnectSockets":
            await self._operator(cmd).disconnect_sockets(bool(cmd.get("close")))
        elif kind == "remote":
            return await self._remote(ns, cmd, args)
        elif kind == "serverSideEmit":
            await ns.server_side_emit(cmd["event"], *args)
        elif kind == "serverSideEmitWithAck":
            try:
                replies = await ns.server_side_emit_with_ack(
                    cmd["event"], *args, timeout=self.requests_timeout
                )
                return {"replies": replies}
            except trio_sio.AckTimeoutError as exc:
                return {"timedOut": str(exc), "replies": exc.replies}
        elif kind == "serverCount":
            return {"count": await ns.server_count()}
        elif kind == "allRooms":
            return {"rooms": sorted(await ns.adapter.all_rooms())}
        elif kind == "rooms":
            socket = ns.sockets.get(cmd["sid"])
            return {"rooms": None if socket is None else sorted(socket.rooms)}
        elif kind == "info":
            return {"uid": getattr(ns.adapter, "uid", None)}
        else:
            raise ValueError(f"unknown command {kind!r}")
        return {}

    async def _remote(self, ns: Any, cmd: dict[str, Any], args: list[Any]) -> dict[str, Any]:
        found = [s for s in await ns.fetch_sockets() if s.id == cmd["sid"]]
        if not found:
            raise ValueError(f"no socket {cmd['sid']}")
        socket = found[0]
        op = cmd["op"]
        if op == "emit":
            await socket.emit(cmd["event"], *args)
        elif op == "join":
            socket.join(*cmd["rooms"])
        elif op == "leave":
            socket.leave(*cmd["rooms"])
        elif op == "disconnect":
            await socket.disconnect(bool(cmd.get("close")))
        else:
            raise ValueError(f"unknown op {op!r}")
        return {"remote": isinstance(socket, RemoteSocket)}

    async def answer(self, cmd: dict[str, Any]) -> None:
        try:
            result = await self.run(cmd)
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        _write({"ev": "result", "id": cmd.get("id"), **result})


def make_server(redis: str, key: str, name: str, requests_timeout: float) -> trio_sio.Server:
    """The node the script runs."""
    sio = trio_sio.Server(adapter=create_adapter(redis, key=key, requests_timeout=requests_timeout))

    @sio.on("connection")
    def connected(socket: trio_sio.Socket, auth: dict[str, Any]) -> None:
        socket.data["name"] = auth.get("name")
        for room in auth.get("rooms", []):
            socket.join(room)
        _write({"ev": "connection", "sid": socket.id, "auth": auth})

    @sio.on("disconnect")
    def disconnected(socket: trio_sio.Socket, reason: str) -> None:
        _write({"ev": "disconnect", "sid": socket.id, "reason": reason})

    def whoami() -> str:
        _write({"ev": "server-side", "event": "whoami", "args": []})
        return name

    def hello(*args: Any) -> str:
        _write({"ev": "server-side", "event": "hello", "args": list(args)})
        return f"{name}:{args[0] if args else None}"

    def silent(*args: Any, ack: trio_sio.Ack) -> None:
        _write({"ev": "server-side", "event": "silent", "args": list(args)})

    sio.on_server_side("whoami", whoami)
    sio.on_server_side("hello", hello)
    sio.on_server_side("silent", silent)
    return sio


async def _commands(node: _Node, nursery: trio.Nursery) -> None:
    """Run each command line of stdin in its own task, until stdin closes."""
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stdin:
        buffer = b""
        while data := await stdin.receive_some():
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    nursery.start_soon(node.answer, json.loads(line))


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", default="socket.io")
    parser.add_argument("--name", default="trio")
    parser.add_argument("--requests-timeout", type=float, default=5.0)
    options = parser.parse_args(argv)
    sio = make_server(options.redis, options.key, options.name, options.requests_timeout)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sio.serve, "127.0.0.1", options.port)
        sys.stdout.write(f"{listeners[0].socket.getsockname()[1]}\n")
        sys.stdout.flush()
        async with trio.open_nursery() as commands:
            await _commands(_Node(sio, options.name, options.requests_timeout), commands)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
