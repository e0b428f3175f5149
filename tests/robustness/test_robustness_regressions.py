"""Hostile traffic the server must survive, one scenario per test, each a minimal
reproduction: exact requests and frames, through the real HTTP front end over memory.

Every test checks the same things as the fuzzer: the server is still running, nothing at
ERROR was logged, every request was answered, and a well-behaved client still works.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator

import pytest
import trio
import trio.testing
from robustness_support import PATH, ErrorRecords, Served, capture_errors, serving
from robustness_wire import (
    Response,
    check_payload_body,
    client_frame,
    message_frame,
    open_websocket,
    polling_handshake,
    request,
)

from trio_sio.protocol.engineio import decode_open, decode_packet

Q = f"{PATH}?EIO=4&transport=polling"
WS = f"{PATH}?EIO=4&transport=websocket"
OPTIONS = {"ping_interval": 5, "ping_timeout": 5, "connect_timeout": 20}


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serving(**OPTIONS) as served:
        yield served


@pytest.fixture
def errors() -> Iterator[ErrorRecords]:
    with capture_errors() as records:
        yield records


async def post(served: Served, sid: str, body: bytes) -> Response | None:
    with trio.fail_after(30):
        return await request(served.connect, "POST", f"{Q}&sid={sid}", body=body)


async def get(served: Served, sid: str) -> Response | None:
    with trio.fail_after(30):
        return await request(served.connect, "GET", f"{Q}&sid={sid}")


async def still_fine(served: Served, errors: ErrorRecords) -> None:
    """The server runs, logged no ERROR, has no session left but the ones still open, and a
    new client gets an ack back."""
    await trio.testing.wait_all_tasks_blocked()
    assert not served.crashes, f"the server crashed: {served.crashes[0]!r}"
    with trio.fail_after(20):
        async with served.client() as client:
            assert await client.emit_with_ack("echo", 42, timeout=5) == 42
    assert not served.crashes, f"the server crashed: {served.crashes[0]!r}"
    assert not errors.records, errors.describe()


# -- server-only packets and what follows a fatal one -------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'44{"message":"x"}\x1e40',  # CONNECT_ERROR (server-only), then CONNECT
        b'44{"message":"x"}\x1e40/custom,',
        b"40\x1e44/custom,\x1e40/custom,",
    ],
    ids=["main", "custom", "after-connect"],
)
async def test_connect_after_connect_error_in_one_post(
    autojump_clock: trio.testing.MockClock, served: Served, errors: ErrorRecords, body: bytes
) -> None:
    sid = await polling_handshake(served.connect)
    response = await post(served, sid, body)
    assert response is not None and response.status in (200, 400), response
    await still_fine(served, errors)


async def test_connect_after_connect_error_over_websocket(
    autojump_clock: trio.testing.MockClock, served: Served, errors: ErrorRecords
) -> None:
    response, ws = await open_websocket(served.connect, WS)
    assert ws is not None, response
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.reader)
        await ws.next_message()  # OPEN
        await ws.send('44{"message":"x"}')
        await ws.send("40")
        with trio.fail_after(30):
            await ws.closed.wait()  # the parse error closes the connection
    await still_fine(served, errors)


async def test_connect_after_server_side_close(
    autojump_clock: trio.testing.MockClock, served: Served, errors: ErrorRecords
) -> None:
    # The application closes the connection (an event handler calls disconnect(close=True));
    # while the CLOSE packet waits for a GET, the client POSTs a CONNECT.
    sid = await polling_handshake(served.connect)
    assert (await post(served, sid, b"40")).status == 200  # type: ignore[union-attr]
    assert (await post(served, sid, b'42["close-me"]')).status == 200  # type: ignore[union-attr]
    response = await post(served, sid, b"40/custom,")
    assert response is not None and response.status in (200, 400), response
    await still_fine(served, errors)


async def test_connect_after_connect_timeout(
    autojump_clock: trio.testing.MockClock, served: Served, errors: ErrorRecords
) -> None:
    # No namespace within connect_timeout: the server closes the session gracefully (its CLOSE
    # waits for a GET); a CONNECT arriving meanwhile must not hurt.
    sid = await polling_handshake(served.connect)
    await trio.sleep(OPTIONS["connect_timeout"] + 0.1)
    response = await post(served, sid, b"40")
    assert response is not None and response.status in (200, 400), response
    await still_fine(served, errors)


# -- requests on a closing session --------------------------------------------------------------


@pytest.mark.parametrize("second", [b'42["echo"]', b"40", b"1"])
async def test_post_after_close_packet_is_answered(
    autojump_clock: trio.testing.MockClock, served: Served, errors: ErrorRecords, second: bytes
) -> None:
    # A CLOSE packet over polling closes gracefully (the server answers a GET with a NOOP
    # first); a POST in that window must still get an answer.
    sid = await polling_handshake(served.connect)
    assert (await post(served, sid, b"40")).status == 200  # type: ignore[union-attr]
    assert (await post(served, sid, b"1")).status == 200  # type: ignore[union-attr]
    response = await post(served, sid, second)
    assert response is not None and response.status in (200, 400), response
    await still_fine(served, errors)


async def test_get_after_close_packet_is_answered(
    autojump_clock: trio.testing.MockClock, served: Served, errors: ErrorRecords
) -> None:
    sid = await polling_handshake(served.connect)
    assert (await post(served, sid, b"1")).status == 200  # type: ignore[union-attr]
    response = await get(served, sid)
    assert response is not None and response.status in (200, 400), response
    if response.status == 200:
        check_payload_body(response.body)
    await still_fine(served, errors)


async def test_duplicate_gets(
    autojump_clock: trio.testing.MockClock, served: Served, errors: ErrorRecords
) -> None:
    sid = await polling_handshake(served.connect)
    answers: list[Response | None] = []

    async def poll() -> None:
        answers.append(await get(served, sid))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(poll)
    assert sorted(a.status for a in answers if a is not None) == [200, 400], answers
    assert sid not in served.sio.engine.sessions
    await still_fine(served, errors)


# -- malformed handshakes -----------------------------------------------------------------------


async def test_non_ascii_websocket_key(
    autojump_clock: trio.testing.MockClock, served: Served, errors: ErrorRecords
) -> None:
    response, ws = await open_websocket(served.connect, WS, key=b"\xe9t\xe9 key==")
    assert ws is None
    assert response is not None and response.status == 400, response
    await still_fine(served, errors)


@pytest.mark.parametrize("method", ["GET", "OPTIONS", "websocket"])
@pytest.mark.parametrize("origin", [b"http://[", b"http://[::1"])
async def test_malformed_origin(
    autojump_clock: trio.testing.MockClock,
    served: Served,
    errors: ErrorRecords,
    method: str,
    origin: bytes,
) -> None:
    response: Response | None
    if method == "websocket":
        response, ws = await open_websocket(served.connect, WS, extra=[("Origin", origin)])
        assert ws is None
    else:
        with trio.fail_after(10):
            response = await request(served.connect, method, Q, [("Origin", origin)])
    assert response is not None, response
    if method == "OPTIONS":  # as the npm cors package answers: 204, no origin allowed
        assert response.status == 204, response
        assert "access-control-allow-origin" not in {k.lower() for k in response.headers}
    else:
        assert response.status in (400, 403), response
    assert not served.sio.engine.sessions
    await still_fine(served, errors)


# -- lying packets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frames",
    [
        ['451-["echo",{"_placeholder":true,"num":5}]'],  # placeholder past the count
        ['451-["echo",{"_placeholder":true,"num":0}]', b"a", b"b"],  # one attachment too many
        ['452-["echo",{"_placeholder":true,"num":0}]', b"a", "40"],  # text before the last
        ['4599999999999-["echo"]'],
        ['42["echo",' + "[" * 10_000 + "]" * 10_000 + "]"],  # deep nesting
        ['42["echo",' + '{"a":' * 10_000 + "1" + "}" * 10_000 + "]"],
        ["42" + "1" * 40 + '["echo"]'],  # a 40-digit ack id
        ["43" + "9" * 40 + "[]"],
        ['42["echo","\ud800"]'],  # invalid UTF-8 in a text frame
    ],
    ids=[
        "placeholder-past-count",
        "extra-attachment",
        "text-before-last-attachment",
        "huge-attachment-count",
        "deep-lists",
        "deep-objects",
        "40-digit-ack-id",
        "40-digit-ack-reply",
        "lone-surrogate",
    ],
)
@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_lying_and_oversized_packets(
    autojump_clock: trio.testing.MockClock,
    served: Served,
    errors: ErrorRecords,
    frames: list[str | bytes],
    transport: str,
) -> None:
    if transport == "polling":
        sid = await polling_handshake(served.connect)
        assert (await post(served, sid, b"40")).status == 200  # type: ignore[union-attr]
        records = [f if isinstance(f, str) else "b" + base64.b64encode(f).decode() for f in frames]
        body = "\x1e".join(records).encode("utf-8", "surrogatepass")
        response = await post(served, sid, body)
        assert response is not None and response.status in (200, 400), response
        with trio.fail_after(30):
            while sid in served.sio.engine.sessions:
                await get(served, sid)
                await trio.sleep(0.5)
    else:
        response, ws = await open_websocket(served.connect, WS)
        assert ws is not None, response
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.reader)
            opening = await ws.next_message()
            sid = decode_open(decode_packet(opening)).sid  # type: ignore[arg-type]
            await ws.send("40")
            for frame in frames:
                await ws.send_raw(message_frame(frame))
            with trio.fail_after(30):
                await ws.closed.wait()
        assert all(not isinstance(m, str) or not m.startswith("43") for m in ws.messages)
        with trio.fail_after(2):  # the session ends with its WebSocket
            while sid in served.sio.engine.sessions:
                await trio.sleep(0.1)
    assert sid not in served.sio.engine.sessions
    assert not any(ns.sockets for ns in served.sio.namespaces.values())
    await still_fine(served, errors)


# -- WebSocket protocol errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        client_frame(0x1, b"40", masked=False),
        client_frame(0x1, b"4\xc3\x28"),
        client_frame(0x0, b"40"),
        client_frame(0x3, b"x"),
        client_frame(0x9, b"x" * 126),
        client_frame(0x8, b"\x03"),
        b"\x81\xff" + b"\x7f" * 8 + b"\x00" * 4,
        client_frame(0x1, b"4" * 1_000_001),
    ],
    ids=[
        "unmasked",
        "bad-utf8",
        "continuation-first",
        "reserved-opcode",
        "long-ping",
        "one-byte-close",
        "2**63-length",
        "over-max-payload",
    ],
)
async def test_websocket_protocol_errors(
    autojump_clock: trio.testing.MockClock, served: Served, errors: ErrorRecords, data: bytes
) -> None:
    response, ws = await open_websocket(served.connect, WS)
    assert ws is not None, response
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.reader)
        await ws.next_message()
        await ws.send("40")
        await ws.send_raw(data)
        with trio.fail_after(30):
            await ws.closed.wait()
    assert ws.close_code in (1002, 1007, 1009, None), ws.close_code
    with trio.fail_after(30):
        while served.sio.engine.sessions:
            await trio.sleep(0.5)
    await still_fine(served, errors)


# -- upgrades that go wrong ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "steps",
    [
        [],  # the WebSocket opens, then nothing
        ["2probe"],  # probe, then silence
        ["5"],  # UPGRADE without a probe
        ["2probe", "2probe"],
        ["2probe", '42["echo"]'],
        ["2probe", "1"],
        ["2", "5"],
    ],
)
@pytest.mark.parametrize("end", ["drop", "close frame", "wait"])
async def test_upgrade_gone_wrong(
    autojump_clock: trio.testing.MockClock,
    served: Served,
    errors: ErrorRecords,
    steps: list[str],
    end: str,
) -> None:
    sid = await polling_handshake(served.connect)
    assert (await post(served, sid, b"40")).status == 200  # type: ignore[union-attr]
    response, ws = await open_websocket(served.connect, f"{WS}&sid={sid}")
    assert ws is not None, response
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.reader)
        for step in steps:
            await ws.send(step)
            await trio.testing.wait_all_tasks_blocked()
        if end == "drop":
            await ws.abort()
        elif end == "close frame":
            await ws.send_raw(client_frame(0x8, b"\x03\xe8"))
        # The session goes on over polling (or over the WebSocket, if the upgrade finished)
        # until its heartbeat fails, since this client answers no ping.
        with trio.fail_after(60):
            while sid in served.sio.engine.sessions:
                response = await get(served, sid)
                assert response is not None, "a GET went unanswered"
                if response.status == 200:
                    check_payload_body(response.body)
                # Mid-upgrade, a GET is answered at once (a NOOP): no busy loop.
                await trio.sleep(0.5)
        await ws.abort()
    assert not any(ns.sockets for ns in served.sio.namespaces.values())
    await still_fine(served, errors)


async def test_polling_requests_on_websocket_session(
    autojump_clock: trio.testing.MockClock, served: Served, errors: ErrorRecords
) -> None:
    response, ws = await open_websocket(served.connect, WS)
    assert ws is not None, response
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.reader)
        sid = decode_open(decode_packet(await ws.next_message())).sid  # type: ignore[arg-type]
        for method, body in (("GET", None), ("POST", b"40")):
            with trio.fail_after(10):
                answer = await request(served.connect, method, f"{Q}&sid={sid}", body=body)
            assert answer is not None and answer.status == 400, answer
            assert json.loads(answer.body)["code"] in (1, 3), answer
        await ws.abort()
    await still_fine(served, errors)


# -- decoded size and depth ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "echoed"),
    [
        ("[" * 127 + "1" + "]" * 127, True),  # with the data list: MAX_DEPTH levels
        ("[" * 128 + "1" + "]" * 128, False),
        ("[" * 500 + "1" + "]" * 500, False),  # to_wire used to refuse it, with a traceback
        ("[" * 900 + "1" + "]" * 900, False),
        ("[" + ",".join(["{}"] * 330_000) + "]", False),  # 1 MB of empty objects
    ],
    ids=["127", "128", "500", "900", "amplification"],
)
async def test_deep_or_amplifying_payloads_are_echoed_or_refused_quietly(
    served: Served, errors: ErrorRecords, payload: str, echoed: bool
) -> None:
    """Echoed through an ack (to_wire and the encoder) up to the depth every parser agrees
    on; beyond it, or past the container cap, the packet is a parse error that closes the
    session, with nothing logged at ERROR."""
    sid = await polling_handshake(served.connect, PATH)
    assert (await post(served, sid, b"40")) is not None
    assert (await get(served, sid)) is not None  # the CONNECT reply
    response = await post(served, sid, f'421["echo",{payload}]'.encode())
    assert response is not None and response.status == 200
    answer = await get(served, sid)
    assert answer is not None
    packets = check_payload_body(answer.body)
    if echoed:
        assert packets == [f"31[{payload}]"]
    else:  # no ack; the session was closed
        assert not [p for p in packets if str(p).startswith("31")]
        gone = await get(served, sid)
        assert gone is not None and gone.status == 400
    await still_fine(served, errors)
