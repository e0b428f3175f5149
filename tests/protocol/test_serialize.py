"""Python values → wire-ready values (the seed's "Emitting events" rules, in Python)."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import math
import types
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_sio._emitter import event_data
from trio_sio.protocol.serialize import HOOK_NAME, to_wire
from trio_sio.protocol.socketio import Packet, PacketType, encode

UTC = dt.UTC


class Color(enum.IntEnum):
    RED = 1


class Mood(enum.StrEnum):
    HAPPY = "happy"


class Ratio(float):
    pass


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    points: list[Point]
    blob: bytes = b""
    tags: tuple[str, ...] = ()


class Hero:
    """The seed's toJSON() example."""

    def __init__(self) -> None:
        self._hp = 42

    def __sio_json__(self) -> dict[str, Any]:
        return {"hp": self._hp}


class Avatar:
    def __sio_json__(self) -> Any:
        return {"image": bytearray(b"\x89PNG"), "hero": Hero(), "at": dt.date(2024, 1, 2)}


class Loop:
    def __sio_json__(self) -> Any:
        return Loop()


class BadInside:
    def __sio_json__(self) -> Any:
        return {"s": {1}}


@dataclasses.dataclass
class HookedPoint:
    x: int

    def __sio_json__(self) -> Any:
        return [self.x]


CONVERSIONS: list[tuple[Any, Any]] = [
    (None, None),
    (True, True),
    (False, False),
    (0, 0),
    (-(2**70), -(2**70)),
    (1.5, 1.5),
    (-0.0, -0.0),
    ("é€😀", "é€😀"),
    (float("nan"), None),
    (float("inf"), None),
    (float("-inf"), None),
    (Color.RED, 1),
    (Mood.HAPPY, "happy"),
    (Ratio(0.5), 0.5),
    (Ratio("inf"), None),
    ((1, (2, 3)), [1, [2, 3]]),
    ([1, [2, (3,)]], [1, [2, [3]]]),
    ({"a": {"b": [1]}}, {"a": {"b": [1]}}),
    ({3: "4", 5: b"\x06"}, {"3": "4", "5": b"\x06"}),
    ({-1: 0, Color.RED: 1}, {"-1": 0, "1": 1}),
    ({Mood.HAPPY: 1}, {"happy": 1}),
    (collections.OrderedDict(a=1), {"a": 1}),
    (types.MappingProxyType({"a": (1,)}), {"a": [1]}),
    (collections.defaultdict(list, a=[b"x"]), {"a": [b"x"]}),
    (b"\x00\xff", b"\x00\xff"),
    (bytearray(b"ab"), b"ab"),
    (memoryview(b"cd"), b"cd"),
    ([[[bytearray(b"deep")]]], [[[b"deep"]]]),
    (dt.datetime(1970, 1, 1), "1970-01-01T00:00:00.000Z"),
    (dt.datetime(1970, 1, 1, tzinfo=UTC), "1970-01-01T00:00:00.000Z"),
    (dt.datetime(2024, 5, 6, 7, 8, 9, 123_987), "2024-05-06T07:08:09.123Z"),
    (dt.datetime(2024, 5, 6, 7, 8, 9, 999_999), "2024-05-06T07:08:09.999Z"),
    (
        dt.datetime(2024, 1, 1, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "2023-12-31T23:30:00.000Z",
    ),
    (
        dt.datetime(2024, 12, 31, 22, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        "2025-01-01T03:00:00.000Z",
    ),
    (dt.datetime(1, 1, 1), "0001-01-01T00:00:00.000Z"),
    (dt.date(2024, 1, 2), "2024-01-02"),
    (Point(1, 2), {"x": 1, "y": 2}),
    (
        Shape("tri", [Point(0, 0), Point(1, 1)], bytearray(b"z"), ("a",)),  # type: ignore[arg-type]
        {
            "name": "tri",
            "points": [{"x": 0, "y": 0}, {"x": 1, "y": 1}],
            "blob": b"z",
            "tags": ["a"],
        },
    ),
    (Hero(), {"hp": 42}),
    (Avatar(), {"image": b"\x89PNG", "hero": {"hp": 42}, "at": "2024-01-02"}),
    (HookedPoint(3), [3]),
    ({"when": [dt.date(2000, 2, 29)]}, {"when": ["2000-02-29"]}),
]


@pytest.mark.parametrize(("value", "expected"), CONVERSIONS)
def test_conversion(value: Any, expected: Any) -> None:
    [result] = to_wire((value,))
    assert result == expected
    assert _types_of(result) <= {type(None), bool, int, float, str, bytes, list, dict}
    if isinstance(expected, float):
        assert math.copysign(1, result) == math.copysign(1, expected)


def _types_of(value: Any) -> set[type]:
    found = {type(value)}
    if isinstance(value, list):
        for item in value:
            found |= _types_of(item)
    elif isinstance(value, dict):
        assert all(type(k) is str for k in value)
        for item in value.values():
            found |= _types_of(item)
    return found


def test_hook_name() -> None:
    assert HOOK_NAME == "__sio_json__"


def test_seed_example_encodes_like_js() -> None:
    # socket.emit("hello", 1, "2", { 3: '4', 5: Buffer.from([6]) })
    args = to_wire(("hello", 1, "2", {3: "4", 5: bytes([6])}))
    assert args == ["hello", 1, "2", {"3": "4", "5": b"\x06"}]
    assert encode(Packet(PacketType.EVENT, data=args)) == [
        '51-["hello",1,"2",{"3":"4","5":{"_placeholder":true,"num":0}}]',
        b"\x06",
    ]


def test_seed_hero_and_date_encode_like_js() -> None:
    args = to_wire(("here's a hero", Hero(), dt.datetime(1970, 1, 1, tzinfo=UTC)))
    assert encode(Packet(PacketType.EVENT, data=args)) == [
        '2["here\'s a hero",{"hp":42},"1970-01-01T00:00:00.000Z"]'
    ]


def test_dates_parse_back_in_python() -> None:
    [text, day] = to_wire(
        (dt.datetime(2024, 5, 6, 7, 8, 9, 123_000, tzinfo=UTC), dt.date(2024, 5, 6))
    )
    assert dt.datetime.fromisoformat(text) == dt.datetime(2024, 5, 6, 7, 8, 9, 123_000, tzinfo=UTC)
    assert dt.date.fromisoformat(day) == dt.date(2024, 5, 6)


# --- refusals --------------------------------------------------------------------------------

REFUSALS: list[tuple[tuple[Any, ...], str]] = [
    ((1, "x", {"x": {1, 2}}), r"cannot send a set at args\[2\]\['x'\]; convert it to a list first"),
    (
        ([0, [frozenset()]],),
        r"cannot send a frozenset at args\[0\]\[1\]\[0\]; convert it to a list",
    ),
    (
        ({1.5: 2},),
        r"cannot send a dict key of type float \(1.5\) at args\[0\]; keys must be str or int",
    ),
    (({True: 2},), r"dict key of type bool \(True\) at args\[0\]"),
    (({None: 2},), r"dict key of type NoneType"),
    (({(1, 2): 2},), r"dict key of type tuple"),
    (({b"k": 2},), r"dict key of type bytes"),
    (
        ({"a": {1: "x", "1": "y"}},),
        r"cannot send a dict with both 1 and '1' as keys at args\[0\]\['a'\]",
    ),
    (
        (object(),),
        r"cannot send an object at args\[0\]; convert it to a supported type"
        r" or give object a __sio_json__\(\) method",
    ),
    ((decimal.Decimal("1.5"),), r"cannot send a Decimal at args\[0\]"),
    ((dt.time(12, 0),), r"cannot send a time at args\[0\]"),
    ((dt.timedelta(1),), r"cannot send a timedelta"),
    ((1j,), r"cannot send a complex"),
    ((Point,), r"cannot send a type at args\[0\]"),
    ((print,), r"cannot send a builtin_function_or_method"),
    ((iter([1]),), r"cannot send a list_iterator"),
    ((Shape("s", [Point(0, {1})]),), r"cannot send a set at args\[0\]\.points\[0\]\.y"),  # type: ignore[arg-type]
    (
        (Loop(),),
        r"Loop\.__sio_json__\(\) returned a Loop, which has its own __sio_json__\(\)"
        r" at args\[0\]; return plain data instead",
    ),
    (([BadInside()],), r"cannot send a set at args\[0\]\[0\]\.__sio_json__\(\)\['s'\]"),
]


@pytest.mark.parametrize(("args", "message"), REFUSALS)
def test_refusal(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        to_wire(args)


def test_refusal_names_top_level_index() -> None:
    with pytest.raises(TypeError, match=r"at args\[3\];"):
        to_wire((1, 2, 3, {4}))


def test_cycles_are_refused() -> None:
    items: list[Any] = [1]
    items.append(items)
    with pytest.raises(TypeError, match="reference cycle"):
        to_wire((items,))
    mapping: dict[str, Any] = {}
    mapping["self"] = mapping
    with pytest.raises(TypeError, match="reference cycle"):
        to_wire(("x", mapping))


def test_datetime_out_of_range_in_utc() -> None:
    early = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    with pytest.raises(ValueError, match=r"out of range in UTC"):
        to_wire((early,))


# --- no needless copies --------------------------------------------------------------------


def test_plain_containers_are_shared_not_copied() -> None:
    inner = {"a": [1, 2.5, "x", None, True, b"b"]}
    args = ("e", inner)
    out = to_wire(args)
    assert out == ["e", inner]
    assert out[1] is inner
    assert out[1]["a"] is inner["a"]


def test_top_level_is_always_a_new_list() -> None:
    args = ["e", 1]
    out = to_wire(args)
    assert out == args
    assert out is not args


def test_changed_containers_are_copied_and_input_untouched() -> None:
    keep = [1, 2]
    inner = {"a": keep, "b": bytearray(b"x"), "c": 3}
    outer = [inner, (4,)]
    out = to_wire((outer,))
    assert out == [[{"a": [1, 2], "b": b"x", "c": 3}, [4]]]
    assert out[0] is not outer
    assert out[0][0] is not inner
    assert out[0][0]["a"] is keep
    assert inner["b"] == bytearray(b"x")
    assert type(inner["b"]) is bytearray
    assert outer[1] == (4,)


def test_key_order_is_kept_when_copying() -> None:
    value = {"z": 1, 2: "int key", "a": float("nan"), "m": 0}
    [out] = to_wire((value,))
    assert list(out) == ["z", "2", "a", "m"]
    assert out == {"z": 1, "2": "int key", "a": None, "m": 0}


# --- properties ----------------------------------------------------------------------------

plain_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
    | st.binary(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=25,
)

python_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=5).flatmap(lambda b: st.sampled_from([b, bytearray(b), memoryview(b)]))
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.builds(Point, st.integers(), st.integers())
    | st.sampled_from([Color.RED, Mood.HAPPY, Hero()]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
        | st.dictionaries(st.integers(), children, max_size=4)
    ),
    max_leaves=25,
)


@given(st.lists(plain_json, max_size=5))
def test_plain_json_is_unchanged(args: list[Any]) -> None:
    out = to_wire(tuple(args))
    assert out == args
    for original, converted in zip(args, out, strict=True):
        if isinstance(original, (list, dict)):
            assert converted is original


@given(st.lists(python_values, max_size=5))
@settings(max_examples=200)
def test_output_is_wire_ready_and_stable(args: list[Any]) -> None:
    try:
        out = to_wire(tuple(args))
    except ValueError:  # an aware datetime out of range in UTC
        return
    assert _types_of(out) <= {type(None), bool, int, float, str, bytes, list, dict}
    assert to_wire(out) == out
    encode(Packet(PacketType.ACK, data=out, id=1))


def test_an_emit_counts_its_arguments_from_zero() -> None:
    # emit("move", {1, 2}): the set is the first argument, args[0], not the event name's
    # neighbour at index 1 of the packet's data.
    with pytest.raises(TypeError, match=r"cannot send a set at args\[0\];"):
        event_data("move", ({1, 2},))
    with pytest.raises(TypeError, match=r"cannot send a set at args\[1\]\['x'\];"):
        to_wire((0, {"x": {1}}), event="move")
    assert to_wire([1, [2]], event="move") == ["move", 1, [2]]
    assert event_data("move", ()) == ["move"]
