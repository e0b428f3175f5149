"""Hostile-input probes against a standalone trio_sio server on loopback, for before/after
figures. Each case runs a fresh server process, takes at most about 30 s, and prints one
JSON line.

    python bench/edge_probe.py CASE [--server-path DIR]

``--server-path`` puts another checkout's ``trio_sio`` first on the server's path (to
measure an older commit); the probe's client side always comes from this checkout.
``--front-end hypercorn`` serves ``trio_sio.ASGIApp`` with Hypercorn's trio worker instead.

Cases:

- ``chunked``: a 500 KB polling POST sent as 1-byte chunks; meanwhile a new client opens a
  polling session every 50 ms. Reports the server's CPU seconds and the new clients' worst
  handshake time.
- ``deflate``: a WebSocket client sends 10 permessage-deflate messages of about 1 KB each
  that inflate to 900 KB of JSON numbers, echoed; the same new-client probe runs.
- ``smuggle``: a polling POST with both Content-Length and Transfer-Encoding (and the other
  variants) hiding a second request; reports each answer and whether the hidden request ran.
- ``headers``: a request of 10,000 ``a:b`` headers, in one write.
- ``parked``: a polling client whose parked GET's connection is closed; reports how long the
  server takes to end the session.
- ``amplify``: 80 messages of about 1 MB of empty objects (``--parser msgpack``: 0.9 MB
  of 900,000 empty maps) to an echoing handler, from a client that never reads; reports
  the server's peak RSS growth.
- ``json-alloc``: what decoding 1 MB of ``[{}, {}, ...]`` allocates (in this process).
- ``msgpack-alloc``: the same for 0.9 MB of msgpack holding 900,000 empty maps.
- ``handshakes``: ``-n`` (2,000) polling handshakes, each on a connection of its own, never
  followed by another request; reports the server's RSS growth per handshake, measured
  after a garbage collection once every connection has closed. ``--peer node`` runs the
  same against the official Node server (bench/node_modules, ``npm ci --prefix bench``),
  ``--peer pysio`` against python-socketio on uvicorn (bench/requirements.txt); both on
  their defaults, trio_sio with the pings of the other cases (25 s, 20 s).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SERVER = r"""
import os, sys, time, logging, trio, trio_sio
logging.basicConfig(level=getattr(logging, os.environ.get("PROBE_LOG", "ERROR")), stream=sys.stderr)
port = int(sys.argv[1])
options = {}
if sys.argv[3] == "msgpack":
    from trio_sio.protocol.msgpack_parser import MsgpackParser
    options["parser"] = MsgpackParser()
sio = trio_sio.Server(per_message_deflate=True, ping_interval=25, ping_timeout=20, **options)

@sio.on("echo")
async def echo(socket, *args):
    await socket.emit("echo", *args)

@sio.on("disconnect")
def gone(socket, reason):
    print("disconnect", reason, time.monotonic(), flush=True)

@sio.on("connection")
def came(socket, auth):
    print("connection", socket.id, time.monotonic(), flush=True)

async def measure():
    # SIGUSR1: collect garbage, then print the resident memory (the handshakes case).
    import gc, signal
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            gc.collect()
            with open("/proc/self/statm") as statm:
                pages = int(statm.read().split()[1])
            print("rss", pages * os.sysconf("SC_PAGE_SIZE"), flush=True)

async def main():
    async with trio.open_nursery() as nursery:
        nursery.start_soon(measure)
        if sys.argv[2] == "hypercorn":
            from hypercorn.config import Config
            from hypercorn.trio import serve
            config = Config()
            config.bind = [f"127.0.0.1:{port}"]
            await nursery.start(serve, trio_sio.ASGIApp(sio), config)
        else:
            await nursery.start(sio.serve, "127.0.0.1", port)
        print("ready", flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(
        self, server_path: str | None, front_end: str = "standalone", parser: str = "json"
    ) -> None:
        self.port = free_port()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (server_path, str(ROOT)) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(self.port), front_end, parser],
            env=env,
            cwd="/",  # not this checkout: its trio_sio would come before --server-path's
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_peak(self) -> int:
        """The server's peak resident memory (VmHWM), in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """(status, body) of one response with a Content-Length (0, b"" on EOF)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, rest[:length]


def handshake(port: int) -> str:
    with connect(port) as sock:
        sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        status, body = read_response(sock)
        assert status == 200, (status, body)
        sid: str = json.loads(body[1:])["sid"]
        return sid


def latency_probe(port: int, stop: Any, results: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        handshake(port)
        results.append(time.perf_counter() - started)
        time.sleep(0.05)


def with_probe(server: Server, attack: Any) -> dict[str, Any]:
    stop = threading.Event()
    times: list[float] = []
    prober = threading.Thread(target=latency_probe, args=(server.port, stop, times))
    cpu = server.cpu()
    started = time.perf_counter()
    prober.start()
    try:
        detail = attack()
    finally:
        time.sleep(0.2)
        stop.set()
        prober.join()
    times.sort()
    return {
        "attack_seconds": round(time.perf_counter() - started, 3),
        "server_cpu_seconds": round(server.cpu() - cpu, 3),
        "new_client_handshakes": len(times),
        "new_client_max_ms": round(times[-1] * 1000, 1),
        "new_client_median_ms": round(times[len(times) // 2] * 1000, 1),
        **detail,
    }


def case_chunked(server: Server) -> dict[str, Any]:
    sid = handshake(server.port)
    body = b"4" + b"x" * 499_999

    def attack() -> dict[str, Any]:
        with connect(server.port) as sock:
            sock.sendall(
                f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                "Host: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            )
            wire = b"".join(b"1\r\n" + body[i : i + 1] + b"\r\n" for i in range(len(body)))
            sock.sendall(wire + b"0\r\n\r\n")
            status, answer = read_response(sock)
        return {"status": status, "answer": answer[:40].decode("latin-1")}

    return with_probe(server, attack)


def ws_frame(payload: bytes, rsv1: bool, opcode: int = 0x1) -> bytes:
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 1 << 16:
        head = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload  # a zero mask: the payload as is


def case_deflate(server: Server) -> dict[str, Any]:
    sock = connect(server.port)
    sock.sendall(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw==\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert b" 101 " in head and b"permessage-deflate" in head.lower(), head
    sock.sendall(ws_frame(b"40", False))
    numbers = ",".join(["1"] * 449_990)
    message = f'42["echo",[{numbers}]]'.encode()
    compressor = zlib.compressobj(wbits=-15)
    compressed = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    compressed = compressed[:-4]

    def attack() -> dict[str, Any]:
        received = 0

        def drain() -> None:
            nonlocal received
            sock.settimeout(30)
            try:
                while chunk := sock.recv(1 << 20):
                    received += len(chunk)
            except OSError:
                pass

        reader = threading.Thread(target=drain)
        reader.start()
        for _ in range(10):
            sock.sendall(ws_frame(compressed, True))
        deadline = time.monotonic() + 30
        last, still = -1, 0
        while still < 20 and time.monotonic() < deadline and reader.is_alive():
            time.sleep(0.05)  # until nothing more came for 1 s
            still = still + 1 if received == last else 0
            last = received
        sock.close()
        reader.join()
        return {
            "message_bytes": len(message),
            "compressed_bytes": len(compressed),
            "received_bytes": received,
        }

    return with_probe(server, attack)


def open_ws(port: int, deflate: bool) -> socket.socket:
    sock = connect(port)
    sock.sendall(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw==\r\n"
        + (b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else b"")
        + b"\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert b" 101 " in head, head
    return sock


def case_amplify(server: Server, parser: str) -> dict[str, Any]:
    """80 messages of about 1 MB of empty objects to "echo", from a client that never
    reads; the server's peak RSS growth."""
    sock = open_ws(server.port, False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    before = server.rss_peak()
    cpu = server.cpu()
    if parser == "msgpack":
        import msgpack  # noqa: PLC0415 (an optional dependency)

        sock.sendall(ws_frame(msgpack.packb({"type": 0, "nsp": "/"}), False, 0x2))
        body = msgpack.packb({"type": 2, "nsp": "/", "data": ["echo", [{}] * 900_000]})
        frame = ws_frame(body, False, 0x2)
    else:
        sock.sendall(ws_frame(b"40", False))
        text = "42" + json.dumps(["echo", [{}] * 330_000], separators=(",", ":"))
        frame = ws_frame(text.encode(), False)
    sent = 0
    error: str | None = None
    sock.settimeout(10)
    try:
        for _ in range(80):
            sock.sendall(frame)
            sent += 1
    except OSError as exc:  # the server closed the connection
        error = repr(exc)
    time.sleep(2)
    sock.close()
    return {
        "messages_sent": sent,
        "send_error": error,
        "frame_bytes": len(frame),
        "rss_peak_growth_mb": round((server.rss_peak() - before) / 1e6, 1),
        "server_cpu_seconds": round(server.cpu() - cpu, 2),
    }


SMUGGLED = {
    "cl-then-te": b"Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n",
    "te-then-cl": b"Transfer-Encoding: chunked\r\nContent-Length: {n}\r\n",
    "te-tab": b"Content-Length: {n}\r\nTransfer-Encoding:\tchunked\r\n",
    "te-Chunked": b"Content-Length: {n}\r\nTransfer-Encoding: Chunked\r\n",
    "obs-fold": b"Content-Length: {n}\r\nTransfer-Encoding: identity\r\n chunked\r\n",
    "cl-twice": b"Content-Length: {n}\r\nContent-Length: {n}\r\n",
    "space-before-colon": b"Content-Length : {n}\r\n",
}


def case_smuggle(server: Server) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, headers in SMUGGLED.items():
        sid = handshake(server.port)
        hidden = (
            f"GET /socket.io/?EIO=4&transport=polling&sid={sid}&hidden=1 HTTP/1.1\r\n"
            "Host: x\r\n\r\n"
        ).encode()
        chunked = b"3\r\n1:6\r\n0\r\n\r\n" + hidden
        head = (
            f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n"
        ).encode() + headers.replace(b"{n}", str(len(chunked)).encode())
        with connect(server.port) as sock:
            sock.settimeout(3)
            sock.sendall(head + b"\r\n" + chunked)
            answers: list[Any] = []
            try:
                while True:
                    status, body = read_response(sock)
                    if not status:
                        break
                    answers.append([status, body[:30].decode("latin-1")])
            except OSError as exc:
                answers.append(repr(exc))
        statuses = [answer for answer in answers if isinstance(answer, list)]
        results[name] = {"answers": answers, "hidden_ran": len(statuses) > 1}
    return results


def case_headers(server: Server) -> dict[str, Any]:
    with connect(server.port) as sock:
        request = (
            b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n"
            + b"a:b\r\n" * 10_000
            + b"\r\n"
        )
        sock.sendall(request)
        status, _ = read_response(sock)
    return {"status": status, "request_bytes": len(request)}


def case_parked(server: Server) -> dict[str, Any]:
    sid = handshake(server.port)
    with connect(server.port) as sock:
        target = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        sock.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n40".encode())
        assert read_response(sock)[0] == 200
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert read_response(sock)[0] == 200  # the CONNECT reply
        assert server.line().startswith("connection")
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(0.5)  # parked
        closed = time.monotonic()
    assert server.proc.stdout is not None
    ready, _, _ = select.select([server.proc.stdout], [], [], 30)
    if not ready:
        return {"noticed_after_s": None, "reason": None}
    line = server.line().split()
    return {"noticed_after_s": round(float(line[-1]) - closed, 3), "reason": " ".join(line[1:-1])}


NODE_PEER = r"""
import { createServer } from "node:http";
import { Server } from "socket.io";
import { createInterface } from "node:readline";
const httpServer = createServer();
new Server(httpServer, { serveClient: false });
httpServer.listen({ port: 0, host: "127.0.0.1", backlog: 4096 }, () => {
  process.stdout.write(`ready ${httpServer.address().port}\n`);
});
createInterface({ input: process.stdin }).on("line", () => {
  global.gc();
  const usage = process.memoryUsage();
  process.stdout.write(`rss ${usage.rss} ${usage.heapUsed + usage.external}\n`);
});
"""

PYSIO_PEER = r"""
import asyncio, gc, os, socket, sys
import socketio, uvicorn

async def main():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    server = uvicorn.Server(uvicorn.Config(
        socketio.ASGIApp(socketio.AsyncServer(async_mode="asgi")),
        lifespan="off", log_level="warning", access_log=False,
    ))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    print("ready", sock.getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        gc.collect()
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        print("rss", pages * os.sysconf("SC_PAGE_SIZE"), flush=True)
    await serving

asyncio.run(main())
"""


class Peer:
    """A Node or python-socketio server on its defaults, for the handshakes case: it prints
    ``ready PORT``, then answers each line of its stdin with ``rss BYTES`` after a garbage
    collection."""

    def __init__(self, kind: str) -> None:
        if kind == "node":
            command = ["node", "--expose-gc", "--input-type=module", "-e", NODE_PEER]
        else:
            command = [sys.executable, "-c", PYSIO_PEER]
        self.proc = subprocess.Popen(
            command, cwd=HERE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline().split()
        assert ready and ready[0] == "ready", ready
        self.port = int(ready[1])

    def rss(self) -> tuple[int, int | None]:
        """(resident memory, Node's heap in use plus its external memory, if Node)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("rss\n")
        self.proc.stdin.flush()
        fields = self.proc.stdout.readline().split()
        return int(fields[1]), int(fields[2]) if len(fields) > 2 else None

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def server_rss(server: Server) -> int:
    """The trio_sio server's resident memory after a garbage collection (see ``measure``)."""
    server.proc.send_signal(signal.SIGUSR1)
    while True:
        line = server.line().split()
        if line and line[0] == "rss":
            return int(line[1])


def open_only(port: int) -> None:
    """One handshake, whatever the framing of the answer (uvicorn answers chunked)."""
    with connect(port) as sock:
        sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b'"sid"' not in data or b"}" not in data.partition(b'"sid"')[2]:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk


def case_handshakes(server: Server | Peer, count: int) -> dict[str, Any]:
    """``count`` polling handshakes never followed up; the server's RSS growth per handshake
    (after a garbage collection), and the handshakes' pace."""

    def rss() -> tuple[int, int | None]:
        time.sleep(1.0)  # every connection closed on the server's side too
        return server.rss() if isinstance(server, Peer) else (server_rss(server), None)

    for _ in range(50):  # first-use costs (imports, caches, pools) are not counted
        open_only(server.port)
    before = rss()
    started = time.perf_counter()
    for _ in range(count):
        open_only(server.port)
    seconds = time.perf_counter() - started
    after = rss()
    out: dict[str, Any] = {
        "handshakes": count,
        "handshakes_per_s": round(count / seconds),
        "rss_growth_bytes_each": round((after[0] - before[0]) / count),
    }
    if after[1] is not None and before[1] is not None:
        out["js_heap_growth_bytes_each"] = round((after[1] - before[1]) / count)
    return out


def case_json_alloc(_: Any) -> dict[str, Any]:
    from trio_sio.protocol.socketio import Decoder  # noqa: PLC0415 (from --server-path)

    text = "2" + json.dumps(["echo", [{} for _ in range(333_000)]], separators=(",", ":"))
    out: dict[str, Any] = {"frame_bytes": len(text)}
    tracemalloc.start()
    decoder = Decoder()
    try:
        decoder.feed(text)
        packet = decoder.next_packet()
        out["decoded"] = type(packet).__name__
    except Exception as exc:
        out["decoded"] = f"refused: {exc}"
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out["held_after_decode_bytes"] = current
    out["peak_bytes"] = peak
    started = time.perf_counter()
    try:
        Decoder().feed(text)
    except Exception:
        pass
    out["decode_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return out


def case_msgpack_alloc(_: Any) -> dict[str, Any]:
    import msgpack  # noqa: PLC0415 (an optional dependency)

    from trio_sio.protocol.msgpack_parser import MsgpackParser  # noqa: PLC0415

    frame = msgpack.packb({"type": 2, "nsp": "/", "data": ["echo", [{}] * 900_000]})
    out: dict[str, Any] = {"frame_bytes": len(frame)}
    tracemalloc.start()
    decoder = MsgpackParser().decoder()
    try:
        decoder.feed(frame)
        out["decoded"] = type(decoder.next_packet()).__name__
    except Exception as exc:
        out["decoded"] = f"refused: {exc}"
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out["held_after_decode_bytes"] = current
    out["peak_bytes"] = peak
    started = time.perf_counter()
    try:
        MsgpackParser().decoder().feed(frame)
    except Exception:
        pass
    out["decode_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return out


CASES: dict[str, Any] = {
    "chunked": case_chunked,
    "deflate": case_deflate,
    "smuggle": case_smuggle,
    "headers": case_headers,
    "parked": case_parked,
    "json-alloc": case_json_alloc,
    "msgpack-alloc": case_msgpack_alloc,
    "amplify": case_amplify,
    "handshakes": case_handshakes,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--server-path", default=None)
    parser.add_argument("--front-end", choices=["standalone", "hypercorn"], default="standalone")
    parser.add_argument("--parser", choices=["json", "msgpack"], default="json")
    parser.add_argument("-n", type=int, default=2000, help="handshakes (that case)")
    parser.add_argument("--peer", choices=["trio_sio", "node", "pysio"], default="trio_sio")
    args = parser.parse_args()
    if args.peer != "trio_sio":
        if args.case != "handshakes":
            parser.error("--peer is for the handshakes case")
        peer = Peer(args.peer)
        try:
            result = case_handshakes(peer, args.n)
            print(json.dumps({"case": args.case, "peer": args.peer, **result}))
        finally:
            peer.close()
        return
    if args.case.endswith("-alloc"):
        sys.path.insert(0, args.server_path or str(ROOT))
        print(json.dumps({"case": args.case, **CASES[args.case](None)}))
        return
    server = Server(args.server_path, args.front_end, args.parser)
    try:
        if args.case == "amplify":
            result = case_amplify(server, args.parser)
        elif args.case == "handshakes":
            result = case_handshakes(server, args.n)
        else:
            result = CASES[args.case](server)
        print(json.dumps({"case": args.case, "parser": args.parser, **result}))
    finally:
        server.close()


if __name__ == "__main__":
    main()
