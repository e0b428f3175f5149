"""A TCP proxy on loopback that can cut its connections, for the recovery tests: what a
dropped network looks like to both peers (a TCP reset, no goodbye of any protocol).

    with TcpProxy(server_port) as proxy:     # clients connect to proxy.port
        proxy.down()   # reset every connection; new ones are reset at once
        proxy.up()     # let connections through again

One thread runs the proxy (``select`` over every socket); ``down`` and ``up`` return once
that thread has done them.
"""

from __future__ import annotations

import queue
import select
import socket
import struct
import threading
from types import TracebackType

__all__ = ["TcpProxy"]


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class TcpProxy:
    """Forwards each connection to ``127.0.0.1:target_port``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._peer: dict[socket.socket, socket.socket] = {}
        self._commands: queue.Queue[tuple[str, threading.Event]] = queue.Queue()
        self._accepting = True
        self.connections = 0  # accepted and forwarded
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._thread.start()

    # -- control --------------------------------------------------------------------------
    def down(self) -> None:
        """Reset every open connection (both sides); reset new ones until :meth:`up`."""
        self._command("down")

    def up(self) -> None:
        """Forward new connections again."""
        self._command("up")

    def close(self) -> None:
        self._command("stop")
        self._thread.join(5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _command(self, name: str) -> None:
        done = threading.Event()
        self._commands.put((name, done))
        self._wake_w.send(b"x")
        if not done.wait(5):
            raise RuntimeError(f"the proxy did not {name} in time")

    # -- the thread -----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                readable, _, _ = select.select(
                    [self._listener, self._wake_r, *self._peer], [], [], 1.0
                )
                for sock in readable:
                    if sock is self._wake_r:
                        if not self._on_commands():
                            return
                    elif sock is self._listener:
                        self._accept()
                    elif sock in self._peer:
                        self._forward(sock)
        finally:
            for sock in list(self._peer):
                _reset(sock)
            self._listener.close()
            self._wake_r.close()
            self._wake_w.close()

    def _on_commands(self) -> bool:
        self._wake_r.recv(1024)
        keep_running = True
        while True:
            try:
                name, done = self._commands.get_nowait()
            except queue.Empty:
                return keep_running
            if name == "down":
                self._accepting = False
                for sock in list(self._peer):
                    _reset(sock)
                self._peer.clear()
            elif name == "up":
                self._accepting = True
            else:
                keep_running = False
            done.set()

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        if not self._accepting:
            _reset(client)
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        self._peer[client] = upstream
        self._peer[upstream] = client
        self.connections += 1

    def _forward(self, sock: socket.socket) -> None:
        other = self._peer[sock]
        try:
            data = sock.recv(65536)
            if data:
                other.sendall(data)
                return
        except OSError:
            pass
        # one side ended (or failed): end the other the same way, as a router would not
        for end in (sock, other):
            self._peer.pop(end, None)
            end.close()
