"""The standalone front end's HTTP parsing is as strict as llhttp (Node's parser): request
smuggling variants, oversized or over-long heads and pathological chunking get 400/413/431
and a closed connection, and parsing one request cannot hold the loop.

Driven over in-memory streams with ``handle_stream``, in virtual time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from trio_sio.engineio import EngineServer, EngineSocket
from trio_sio.frontends.standalone import CHUNK_COST, MAX_HEADERS, handle_stream

PATH = "/engine.io/"


@pytest.fixture(autouse=True)
def no_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing a client sends is logged above INFO."""
    caplog.set_level(logging.DEBUG, logger="trio_sio")
    yield
    loud = [r for r in caplog.get_records("call") if r.levelno >= logging.WARNING]
    assert not loud, [f"{r.name}: {r.getMessage()}" for r in loud]


async def echo(socket: EngineSocket) -> None:
    async for message in socket:
        await socket.send(message)


async def start(nursery: trio.Nursery, **options: object) -> EngineServer:
    server = EngineServer(echo, **options)
    await nursery.start(server.run)
    return server


def connect(nursery: trio.Nursery, server: EngineServer) -> trio.abc.Stream:
    client, server_side = trio.testing.memory_stream_pair()
    nursery.start_soon(handle_stream, server, server_side)
    return client


async def responses(stream: trio.abc.Stream) -> list[tuple[int, bytes]]:
    """Every response until the server closes the connection: (status, body)."""
    data = b""
    with trio.fail_after(30):
        while chunk := await stream.receive_some():
            data += chunk
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        out.append((int(head.split(b" ")[1]), rest[:length]))
        data = rest[length:]
    return out


async def handshake(nursery: trio.Nursery, server: EngineServer) -> str:
    stream = connect(nursery, server)
    await stream.send_all(
        b"GET " + PATH.encode() + b"?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    data = b""
    with trio.fail_after(5):
        while b"}" not in data:
            chunk = await stream.receive_some()
            assert chunk, data
            data += chunk
    await stream.aclose()
    sid: str = json.loads(data.partition(b"\r\n\r\n")[2][1:])["sid"]
    return sid


SMUGGLING = {
    "cl-then-te": b"Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n",
    "te-then-cl": b"Transfer-Encoding: chunked\r\nContent-Length: {n}\r\n",
    "te-tab": b"Content-Length: {n}\r\nTransfer-Encoding:\tchunked\r\n",
    "te-Chunked": b"Content-Length: {n}\r\nTransfer-Encoding: Chunked\r\n",
    "te-gzip-chunked": b"Transfer-Encoding: gzip, chunked\r\n",
    "te-twice": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    "te-identity": b"Transfer-Encoding: identity\r\n",
    "obs-fold": b"Content-Length: {n}\r\nTransfer-Encoding: identity\r\n chunked\r\n",
    "obs-fold-tab": b"Transfer-Encoding:\r\n\tchunked\r\n",
    "cl-twice": b"Content-Length: {n}\r\nContent-Length: {n}\r\n",
    "cl-list": b"Content-Length: {n}, {n}\r\n",
    "space-before-colon": b"Content-Length : {n}\r\n",
    "tab-before-colon": b"Transfer-Encoding\t: chunked\r\n",
}


@pytest.mark.parametrize("pipelined", [False, True])
@pytest.mark.parametrize("variant", sorted(SMUGGLING))
async def test_smuggling_variants_get_400_and_close(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, variant: str, pipelined: bool
) -> None:
    server = await start(nursery)
    sid = await handshake(nursery, server)
    target = f"{PATH}?EIO=4&transport=polling&sid={sid}".encode()
    hidden = b"GET " + target + b"&hidden=1 HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"3\r\n1:6\r\n0\r\n\r\n" + hidden
    headers = SMUGGLING[variant].replace(b"{n}", str(len(body)).encode())
    request = b"POST " + target + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + body
    if pipelined:  # behind a good request, in the same write: checked all the same
        request = b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n" + request
    stream = connect(nursery, server)
    await stream.send_all(request)
    got = await responses(stream)
    assert [status for status, _ in got] == ([404, 400] if pipelined else [400])
    # The session is untouched: its next poll gets the next ping
    stream = connect(nursery, server)
    await stream.send_all(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert await responses(stream) == [(200, b"2")]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (b"a:b\r\n" * 10_000, 431),  # one write of 50 KB
        (b"X-Big: " + b"x" * 50_000 + b"\r\n", 431),
        (b"a:b\r\n" * (MAX_HEADERS + 1), 431),
        (b"a:b\r\n" * (MAX_HEADERS - 1), 200),  # with Host: MAX_HEADERS lines
    ],
)
async def test_head_limits_hold_for_heads_that_arrive_at_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, headers: bytes, status: int
) -> None:
    server = await start(nursery)
    stream = connect(nursery, server)
    await stream.send_all(
        b"GET "
        + PATH.encode()
        + b"?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n"
        + headers
        + b"\r\n"
    )
    await stream.send_eof()
    got = await responses(stream)
    assert got[0][0] == status


def chunked(body: bytes, size: int) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def post_chunked(
    nursery: trio.Nursery, server: EngineServer, sid: str, body: bytes, size: int
) -> list[tuple[int, bytes]]:
    stream = connect(nursery, server)
    target = f"{PATH}?EIO=4&transport=polling&sid={sid}".encode()
    await stream.send_all(
        b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + chunked(body, size)
    )
    return await responses(stream)


async def test_small_chunks_are_charged_and_parsing_yields(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A body of 1-byte chunks is parsed with checkpoints (the loop keeps running), and
    each chunk counts CHUNK_COST bytes towards max_http_buffer_size."""
    limit = 100_000
    server = await start(nursery, max_http_buffer_size=limit)
    sid = await handshake(nursery, server)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    nursery.start_soon(ticker)
    body = b"4" + b"x" * (limit // (CHUNK_COST + 1) - 10)  # within the limit, charged
    assert await post_chunked(nursery, server, sid, body, 1) == [(200, b"ok")]
    assert ticks > len(body) // 64 // 2  # a checkpoint every few dozen chunks
    body = b"4" + b"x" * (limit // (CHUNK_COST + 1) + 10)  # over it, once charged
    assert [status for status, _ in await post_chunked(nursery, server, sid, body, 1)] == [413]
    # big chunks are charged almost nothing: a body near the limit still goes
    sid = await handshake(nursery, server)
    body = b"4" + b"x" * (limit - 2_000)
    assert await post_chunked(nursery, server, sid, body, 10_000) == [(200, b"ok")]


@pytest.mark.parametrize("variant", ["cl-then-te", "te-then-cl", "te-tab", "te-Chunked"])
async def test_under_hypercorn_smuggling_is_refused_by_the_app(
    nursery: trio.Nursery, variant: str
) -> None:
    """Hypercorn (h11) accepts both Content-Length and Transfer-Encoding; ASGIApp refuses
    the request and closes the connection, so the hidden request never runs."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    import trio_sio

    sio = trio_sio.Server()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 1.0
    binds: list[str] = await nursery.start(serve, trio_sio.ASGIApp(sio), config)
    port = int(binds[0].rsplit(":", 1)[1])

    async def call(request: bytes) -> list[bytes]:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        data = b""
        with trio.move_on_after(3):
            await stream.send_all(request)
            while chunk := await stream.receive_some():
                data += chunk
        await stream.aclose()
        return [line for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]

    target = b"/socket.io/?EIO=4&transport=polling"
    head = await call(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert head == [b"HTTP/1.1 200 "]
    hidden = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"  # a handshake: answers 200
    body = b"3\r\n1:6\r\n0\r\n\r\n" + hidden
    headers = SMUGGLING[variant].replace(b"{n}", str(len(body)).encode())
    statuses = await call(
        b"POST " + target + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + body
    )
    assert not [status for status in statuses if b" 200 " in status], statuses
