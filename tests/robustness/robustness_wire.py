"""Raw HTTP/1.1 and WebSocket client pieces for the robustness tests.

Nothing here trusts the server: requests are written byte by byte (so header values may be
anything, even bytes that are not ASCII), responses are parsed by hand and checked, and the
server's WebSocket frames are decoded strictly. Whatever the server does wrong on the wire
raises :class:`WireViolation`.

The same code runs over the in-memory network of :mod:`trio_sio.testing` (a ``connect``
function returning a stream) and over real loopback TCP.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import trio

from trio_sio.protocol.engineio import decode_open, decode_packet, decode_payload
from trio_sio.protocol.errors import RemoteProtocolError

Connect = Callable[[], Awaitable[trio.abc.Stream]]
HeaderValue = str | bytes

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

#: A valid Sec-WebSocket-Key (16 bytes, base64).
GOOD_KEY = base64.b64encode(bytes(range(16))).decode()
READ_SIZE = 65536
MAX_HEAD = 64 * 1024


class WireViolation(AssertionError):
    """The server sent something the protocol does not allow."""


def _bytes(value: HeaderValue) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


def build_request(
    method: str,
    target: str,
    headers: Sequence[tuple[HeaderValue, HeaderValue]] = (),
    body: bytes | None = None,
    host: str = "testserver",
    chunked: bool = False,
) -> bytes:
    """The bytes of one HTTP/1.1 request: a body is sent with ``Content-Length``, or in two
    chunks with ``chunked``."""
    lines = [f"{method} {target} HTTP/1.1".encode("latin-1"), b"Host: " + host.encode()]
    lines.extend(_bytes(name) + b": " + _bytes(value) for name, value in headers)
    if body is not None and chunked:
        lines.append(b"Transfer-Encoding: chunked")
        half = len(body) // 2
        encoded = b"".join(
            b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]) if part
        )
        return b"\r\n".join(lines) + b"\r\n\r\n" + encoded + b"0\r\n\r\n"
    if body is not None:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


@dataclass
class Response:
    """A parsed HTTP response; ``leftover`` holds bytes read past it (frames after a 101)."""

    status: int
    headers: dict[str, str]
    body: bytes
    leftover: bytes = b""


async def read_response(
    stream: trio.abc.Stream, *, method: str = "GET", buffered: bytes = b""
) -> Response | None:
    """Read one response (to a ``method`` request). None if the server closed the
    connection before its head. Interim (1xx) responses other than 101 are skipped.

    Raises:
        WireViolation: the response is malformed (or cut short after its head).
    """
    buffer = bytearray(buffered)
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD:
            raise WireViolation(f"response head too long: {bytes(buffer[:200])!r}")
        try:
            data = await stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            if buffer:
                raise WireViolation(f"connection closed inside a response head: {buffer!r}")
            return None
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or parts[0] != b"HTTP/1.1" or not parts[1].isdigit():
        raise WireViolation(f"bad status line {lines[0]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise WireViolation(f"bad header line {line!r}")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    if status == 101:
        return Response(status, headers, b"", rest)
    if 100 <= status < 200:
        return await read_response(stream, method=method, buffered=rest)
    if method == "HEAD" or status in (204, 304):
        return Response(status, headers, b"", rest)
    if "content-length" not in headers:
        raise WireViolation(f"a {status} response without Content-Length: {headers}")
    length = int(headers["content-length"])
    body = bytearray(rest)
    while len(body) < length:
        try:
            data = await stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            raise WireViolation(f"response body cut short ({len(body)} of {length} bytes)")
        body += data
    return Response(status, headers, bytes(body[:length]), bytes(body[length:]))


async def request(
    connect: Connect,
    method: str,
    target: str,
    headers: Sequence[tuple[HeaderValue, HeaderValue]] = (),
    body: bytes | None = None,
) -> Response | None:
    """One request on a new connection, closed afterwards."""
    stream = await connect()
    try:
        await stream.send_all(build_request(method, target, headers, body))
        return await read_response(stream)
    finally:
        await trio.aclose_forcefully(stream)


def decoded_body(response: Response) -> bytes:
    """The body without its ``Content-Encoding`` (gzip or deflate); raises WireViolation if
    it does not decompress."""
    coding = response.headers.get("content-encoding", "identity").lower()
    if coding == "identity":
        return response.body
    wbits = {"gzip": 31, "deflate": 15}.get(coding)
    if wbits is None:
        raise WireViolation(f"unexpected Content-Encoding {coding!r}")
    try:
        inflater = zlib.decompressobj(wbits)
        data = inflater.decompress(response.body) + inflater.flush()
    except zlib.error as exc:
        raise WireViolation(f"{coding} body does not decompress: {exc}") from None
    if not inflater.eof:
        raise WireViolation(f"{coding} body is truncated")
    return data


def check_payload_body(body: bytes) -> list[str | bytes]:
    """Decode a polling response body; raises WireViolation if the server sent garbage."""
    try:
        packets = decode_payload(body)
    except RemoteProtocolError as exc:
        raise WireViolation(f"bad polling payload from the server: {exc}: {body[:200]!r}") from None
    return [p.data if p.data is not None else "" for p in packets]


async def polling_handshake(connect: Connect, path: str = "/socket.io/") -> str:
    """Open a polling session; return its sid."""
    response = await request(connect, "GET", f"{path}?EIO=4&transport=polling")
    if response is None or response.status != 200:
        raise AssertionError(f"polling handshake failed: {response}")
    return decode_open(decode_payload(response.body)[0]).sid


# -- WebSocket ---------------------------------------------------------------------------------


def client_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    masked: bool = True,
    rsv: int = 0,
    mask: bytes = b"\x37\xfa\x21\x3d",
) -> bytes:
    """One client frame (masked unless told otherwise)."""
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = bytes((first, mask_bit | size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not masked:
        return head + payload
    key = (mask * (size // 4 + 1))[:size]
    body = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little"
    )
    return head + mask + body


def deflate(data: bytes) -> bytes:
    """``data`` compressed as one permessage-deflate message (RFC 7692: raw deflate, sync
    flush, the ``00 00 ff ff`` tail removed)."""
    compressor = zlib.compressobj(wbits=-15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(b"\x00\x00\xff\xff") else out


def message_frame(message: str | bytes) -> bytes:
    """A client frame for one Engine.IO message (text or binary)."""
    if isinstance(message, str):
        return client_frame(OP_TEXT, message.encode("utf-8", "surrogatepass"))
    return client_frame(OP_BINARY, message)


def close_frame(code: int = 1000) -> bytes:
    return client_frame(OP_CLOSE, struct.pack("!H", code))


class ServerFrames:
    """Strict decoder of server frames (unmasked, no reserved bits, valid lengths)."""

    def __init__(self, data: bytes = b"", *, deflate: bool = False) -> None:
        self._buffer = bytearray(data)
        self._fragments: list[bytes] = []
        self._opcode: int | None = None
        self._deflate = deflate
        self._compressed = False
        # One inflater for all: it also reads messages compressed without context takeover.
        self._inflater = zlib.decompressobj(-15)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next(self) -> tuple[int, bytes] | None:
        """The next whole message or control frame, or None if more bytes are needed."""
        while True:
            buffer = self._buffer
            if len(buffer) < 2:
                return None
            first, second = buffer[0], buffer[1]
            opcode = first & 0x0F
            rsv1 = bool(first & 0x40)
            if first & 0x30 or (rsv1 and not self._deflate):
                raise WireViolation(f"server frame with reserved bits: {first:#x}")
            if rsv1 and opcode not in (OP_TEXT, OP_BINARY):
                raise WireViolation(f"RSV1 on a frame of opcode {opcode}")
            if second & 0x80:
                raise WireViolation("server frames must not be masked")
            size = second & 0x7F
            offset = 2
            if size == 126:
                if len(buffer) < 4:
                    return None
                (size,) = struct.unpack_from("!H", buffer, 2)
                offset = 4
            elif size == 127:
                if len(buffer) < 10:
                    return None
                (size,) = struct.unpack_from("!Q", buffer, 2)
                offset = 10
            if len(buffer) < offset + size:
                return None
            payload = bytes(buffer[offset : offset + size])
            del buffer[: offset + size]
            fin = bool(first & 0x80)
            if opcode >= 0x8:
                if opcode not in (OP_CLOSE, OP_PING, OP_PONG) or not fin or size > 125:
                    raise WireViolation(f"bad server control frame {first:#x} ({size} bytes)")
                return opcode, payload
            if opcode == OP_CONT:
                if self._opcode is None:
                    raise WireViolation("server continuation frame without a message")
            elif opcode in (OP_TEXT, OP_BINARY):
                if self._opcode is not None:
                    raise WireViolation("server started a message inside another")
                self._opcode = opcode
                self._compressed = rsv1
            else:
                raise WireViolation(f"server frame with unknown opcode {opcode}")
            self._fragments.append(payload)
            if fin:
                kind, self._opcode = self._opcode, None
                data, self._fragments = b"".join(self._fragments), []
                assert kind is not None
                if self._compressed:
                    try:
                        data = self._inflater.decompress(data + b"\x00\x00\xff\xff")
                    except zlib.error as exc:
                        raise WireViolation(f"server message does not inflate: {exc}") from None
                return kind, data


@dataclass(eq=False)
class RawWebSocket:
    """The client end of an accepted WebSocket, read by :meth:`reader` (run it in a nursery).

    Every text or binary message the server sends must be a valid Engine.IO packet; it is
    kept in ``messages`` and also put on a channel for :meth:`next_message`.
    """

    stream: trio.abc.Stream
    leftover: bytes = b""
    messages: list[str | bytes] = field(default_factory=list)
    close_code: int | None = None
    closed: trio.Event = field(default_factory=trio.Event)
    auto_pong: bool = False
    deflate: bool = False  # permessage-deflate was agreed

    def __post_init__(self) -> None:
        self._send, self._recv = trio.open_memory_channel[str | bytes](10_000)
        self._lock = trio.Lock()

    async def reader(self) -> None:
        """Read frames until the connection ends. Raises WireViolation on bad frames."""
        frames = ServerFrames(self.leftover, deflate=self.deflate)
        try:
            while True:
                frame = frames.next()
                if frame is None:
                    try:
                        data = await self.stream.receive_some(READ_SIZE)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
                    if not data:
                        return
                    frames.feed(data)
                    continue
                opcode, payload = frame
                if opcode == OP_CLOSE:
                    if len(payload) == 1:
                        raise WireViolation("server close frame with a one-byte body")
                    self.close_code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                    await self.send_raw(close_frame(1000))
                    return
                if opcode == OP_PING:
                    await self.send_raw(client_frame(OP_PONG, payload))
                    continue
                if opcode == OP_PONG:
                    continue
                message: str | bytes
                if opcode == OP_TEXT:
                    try:
                        message = payload.decode("utf-8")
                    except UnicodeDecodeError:
                        raise WireViolation(f"server text frame not UTF-8: {payload!r}") from None
                else:
                    message = payload
                try:
                    decode_packet(message)
                except RemoteProtocolError as exc:
                    raise WireViolation(f"bad packet from the server: {message[:200]!r}") from exc
                if self.auto_pong and message == "2":
                    await self.send_raw(message_frame("3"))
                    continue
                self.messages.append(message)
                self._send.send_nowait(message)
        finally:
            self.closed.set()
            self._send.close()

    async def next_message(self) -> str | bytes | None:
        """The next message, or None once the connection is over."""
        try:
            return await self._recv.receive()
        except trio.EndOfChannel:
            return None

    async def send_raw(self, data: bytes) -> bool:
        """Write bytes; False if the connection is gone."""
        async with self._lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
        return True

    async def send(self, message: str | bytes) -> bool:
        return await self.send_raw(message_frame(message))

    async def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        await trio.aclose_forcefully(self.stream)


def websocket_request(
    target: str,
    *,
    key: HeaderValue | None = GOOD_KEY,
    version: HeaderValue | None = "13",
    extra: Sequence[tuple[HeaderValue, HeaderValue]] = (),
) -> bytes:
    headers: list[tuple[HeaderValue, HeaderValue]] = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
    ]
    if key is not None:
        headers.append(("Sec-WebSocket-Key", key))
    if version is not None:
        headers.append(("Sec-WebSocket-Version", version))
    headers.extend(extra)
    return build_request("GET", target, headers)


async def open_websocket(
    connect: Connect, target: str, **options: object
) -> tuple[Response | None, RawWebSocket | None]:
    """Send a WebSocket upgrade request. On a 101, return the open WebSocket (start its
    ``reader``); otherwise the response, with the connection closed."""
    stream = await connect()
    try:
        await stream.send_all(websocket_request(target, **options))  # type: ignore[arg-type]
        response = await read_response(stream)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    if response is None or response.status != 101:
        await trio.aclose_forcefully(stream)
        return response, None
    extensions = response.headers.get("sec-websocket-extensions", "")
    return response, RawWebSocket(
        stream, response.leftover, deflate="permessage-deflate" in extensions.lower()
    )
