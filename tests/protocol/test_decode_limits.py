"""One depth limit for every parser and ``to_wire``, and a cap on the containers one packet
may decode to: whatever a decoder accepts can be echoed or acked, and what it refuses is a
protocol error, never a traceback."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import cbor2
import msgpack
import pytest

from trio_sio.protocol.cbor_parser import CborParser
from trio_sio.protocol.errors import RemoteProtocolError
from trio_sio.protocol.msgpack_parser import MsgpackParser
from trio_sio.protocol.serialize import to_wire
from trio_sio.protocol.socketio import (
    MAX_CONTAINERS,
    MAX_DEPTH,
    JsonParser,
    Packet,
    PacketType,
    Parser,
)

PARSERS: list[Parser] = [JsonParser(), MsgpackParser(), CborParser()]


def nested(levels: int, leaf: Any = 1) -> Any:
    """Lists and dicts alternating, ``levels`` deep (a scalar is level 0)."""
    value = leaf
    for level in range(levels):
        value = [value] if level % 2 else {"a": value}
    return value


def wire(parser: Parser, data: list[Any]) -> str | bytes:
    """The frame of an EVENT with ``data``, built without our encoder's checks."""
    if isinstance(parser, JsonParser):
        return "2" + json.dumps(data, separators=(",", ":"))
    obj = {"type": 2, "nsp": "/", "data": data}
    if isinstance(parser, MsgpackParser):
        return bytes(msgpack.packb(obj, use_bin_type=True))
    return bytes(cbor2.dumps(obj))


def decode(parser: Parser, frame: str | bytes) -> Packet:
    decoder = parser.decoder()
    decoder.feed(frame)
    packet = decoder.next_packet()
    assert isinstance(packet, Packet)
    return packet


def at_stack_depth(frames: int, fn: Callable[[], Any]) -> Any:
    """Call ``fn`` from ``frames`` stack frames deeper (a handler is not at the top)."""
    if frames:
        return at_stack_depth(frames - 1, fn)
    return fn()


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: type(p).__name__)
def test_the_deepest_accepted_data_is_echoed(parser: Parser) -> None:
    # the data list is level 1: an argument may have MAX_DEPTH - 1 levels
    packet = decode(parser, wire(parser, ["echo", nested(MAX_DEPTH - 1)]))
    args = packet.data[1:]
    # echoed, acked, or wrapped by the application in a few more levels, from a handler
    # called deep in the stack: to_wire and every encoder take it
    wrapped = (nested(MAX_DEPTH, args[0]),)
    for out in (args, wrapped):
        data = at_stack_depth(200, lambda out=out: to_wire(out))  # type: ignore[misc]
        for encoder in PARSERS:
            frames = encoder.encode(Packet(PacketType.ACK, "/", data, 1))
            if out is args:  # (the wrapped data is deeper than a decoder accepts)
                assert decode(encoder, frames[0]).data == data


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: type(p).__name__)
@pytest.mark.parametrize("levels", [MAX_DEPTH, 500, 900, 1000, 3000, 100_000])
def test_deeper_data_is_a_protocol_error(parser: Parser, levels: int) -> None:
    if isinstance(parser, JsonParser):
        frame: str | bytes = '2["echo",' + "[" * levels + "]" * levels + "]"
    elif isinstance(parser, MsgpackParser):
        frame = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa4echo" + b"\x91" * levels + b"\x90"
    else:
        frame = b"\xa3dtype\x02cnspa/ddata\x82decho" + b"\x81" * levels + b"\x80"
    with pytest.raises(RemoteProtocolError):
        decode(parser, frame)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: type(p).__name__)
def test_containers_are_capped(parser: Parser) -> None:
    decode(parser, wire(parser, ["echo", [{} for _ in range(MAX_CONTAINERS - 2)]]))
    with pytest.raises(RemoteProtocolError, match="lists and objects"):
        decode(parser, wire(parser, ["echo", [{} for _ in range(MAX_CONTAINERS)]]))
    # 1 MB of them, the amplification attack: refused
    with pytest.raises(RemoteProtocolError):
        decode(parser, wire(parser, ["echo", [{} for _ in range(330_000)]]))


def test_brackets_in_strings_do_not_count() -> None:
    """The bracket count is only a gate: a payload whose strings hold many brackets is
    walked, and accepted."""
    text = "[{" * (MAX_CONTAINERS * 2)
    packet = decode(JsonParser(), wire(JsonParser(), ["echo", text, [[[1]]]]))
    assert packet.data == ["echo", text, [[[1]]]]


def test_the_limit_is_configurable() -> None:
    frame = wire(JsonParser(), ["echo", [[] for _ in range(500)]])
    with pytest.raises(RemoteProtocolError):
        decode(JsonParser(max_containers=400), frame)
    assert len(decode(JsonParser(max_containers=600), frame).data[1]) == 500
    frame = wire(MsgpackParser(), ["echo", [[] for _ in range(500)]])
    with pytest.raises(RemoteProtocolError):
        decode(MsgpackParser(max_containers=400), frame)
    assert len(decode(MsgpackParser(max_containers=600), frame).data[1]) == 500
    frame = wire(CborParser(), ["echo", [[] for _ in range(500)]])
    with pytest.raises(RemoteProtocolError):
        decode(CborParser(max_containers=400), frame)
    assert len(decode(CborParser(max_containers=600), frame).data[1]) == 500
    for parser in (JsonParser, MsgpackParser, CborParser):
        with pytest.raises(ValueError):
            parser(max_containers=MAX_DEPTH - 1).decoder()


def test_to_wire_refuses_cycles_and_extreme_depth_with_a_type_error() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(TypeError, match="nested too deeply"):
        to_wire((cycle,))
    with pytest.raises(TypeError, match="nested too deeply"):
        to_wire((nested(sys.getrecursionlimit() + 10),))
