"""Python values → wire-ready values: what ``emit()`` accepts and how it is sent.

The rules follow what the JavaScript client does with ``JSON.stringify`` plus binary
attachments, so a JS peer receives the same thing a JS sender would have sent:

- ``None``, ``bool``, ``int``, ``str`` go as they are; ``float`` too, except NaN and ±inf,
  which become ``None`` (JSON has no such numbers; ``JSON.stringify`` writes ``null``).
  Subclasses (``IntEnum``, ``StrEnum``, ...) become the plain base value.
- ``list`` and ``tuple`` become lists; ``dict`` and other mappings become dicts. Keys must be
  ``str`` or ``int``; an ``int`` key becomes its decimal string (JS object keys are strings,
  so ``{3: "4"}`` arrives as ``{"3": "4"}``). A ``bool``, ``float`` or other key is refused.
- ``bytes``, ``bytearray`` and ``memoryview``, at any depth, become ``bytes``; the codec sends
  them as binary attachments and the peer receives ``bytes`` (a JS peer: a ``Buffer`` or
  ``ArrayBuffer``).
- a ``datetime`` becomes the string ``Date.prototype.toISOString()`` gives, e.g.
  ``"1970-01-01T00:00:00.000Z"``: converted to UTC, milliseconds (microseconds are truncated),
  ``Z``. A naive datetime is taken to be in UTC already.
- a ``date`` becomes ``"YYYY-MM-DD"``. JavaScript's ``Date`` parses that date-only form as
  UTC midnight (same instant as ``"YYYY-MM-DDT00:00:00.000Z"``), and Python gets the date
  back with ``date.fromisoformat``.
- a dataclass instance becomes a dict of its fields, converted by these same rules.
- an object whose class defines ``__sio_json__(self)`` is replaced by what that method
  returns, converted by these same rules (the ``toJSON()`` of JavaScript). The hook wins over
  every other rule except for the exact built-in types above. It must return something
  without a hook of its own.
- anything else (``set``, ``frozenset``, ``Decimal``, ``time``, arbitrary objects) is refused
  with a ``TypeError`` naming the type and where it sits in the arguments, so nothing is
  half-sent.

Containers that need no change are passed through, not copied: do not mutate them until the
packet is encoded (``emit()`` encodes before it returns).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import Any, Final

__all__ = ["HOOK_NAME", "to_wire"]

#: The name of the method a class defines to choose its own wire form.
HOOK_NAME: Final = "__sio_json__"

_PLAIN: Final = frozenset({str, int, bool, type(None), bytes})
_BINARY: Final = (bytes, bytearray, memoryview)


class _Refused(Exception):
    """Internal: a value cannot be sent. Carries the path, built while unwinding."""

    def __init__(self, before: str, after: str = "", error: type[Exception] = TypeError) -> None:
        super().__init__(before)
        self.before = before
        self.after = after
        self.error = error
        self.path: list[str] = []

    def message(self, root: str) -> str:
        return f"{self.before} at {root}{''.join(reversed(self.path))}{self.after}"


def _a(name: str) -> str:
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def to_wire(args: Sequence[Any], *, event: str | None = None) -> list[Any]:
    """Convert the arguments of an emit (or an ack) into wire-ready data.

    Args:
        args: the arguments, e.g. the ``*args`` tuple of ``emit(event, *args)``.
        event: the event name of an emit, if any: it becomes the first item of the result,
            and an error still counts ``args`` from 0 (the first argument is ``args[0]``).

    Returns:
        A new list of values made only of ``None``, ``bool``, ``int``, ``float`` (finite),
        ``str``, ``bytes``, ``list`` and ``dict`` with ``str`` keys (after ``event``, if
        given). Containers that needed no change are shared with ``args``, not copied.

    Raises:
        TypeError: a value (or a dict key) has a type that cannot be sent, a ``__sio_json__``
            hook returned another hooked object, or the data contains a reference cycle (or
            is nested too deeply: lists and dicts take one stack frame per level, so
            anything up to ``2 * MAX_DEPTH`` levels converts from any handler, and so
            whatever a decoder accepted, see
            :data:`~trio_sio.protocol.socketio.MAX_DEPTH`). The message names the type and
            the path, e.g.
            ``cannot send a set at args[2]['x']; convert it to a list first``.
        ValueError: a ``datetime`` cannot be expressed in UTC (out of range).
    """
    try:
        result = _sequence(args)
    except _Refused as exc:
        raise exc.error(exc.message("args")) from None
    except RecursionError:
        raise TypeError(
            "cannot send args: they contain a reference cycle or are nested too deeply"
        ) from None
    if event is not None:
        return [event, *result]
    return list(args) if result is args else result


#: from this length on, a list is first checked for plain items at C speed.
_SCAN_FROM: Final = 32


def _sequence(seq: Sequence[Any]) -> list[Any]:
    """Convert a list or tuple; return ``seq`` itself if it is a list needing no change."""
    if len(seq) >= _SCAN_FROM and _PLAIN.issuperset(map(type, seq)):
        # A long list of plain items (numbers, strings): the loop below would change nothing
        return seq if type(seq) is list else list(seq)
    out: list[Any] | None = None
    for index, item in enumerate(seq):
        kind = type(item)
        if kind in _PLAIN:
            if out is not None:
                out.append(item)
            continue
        if kind is float:
            new = item if item - item == 0.0 else None
        else:
            try:  # (one stack frame per level of lists and dicts)
                if kind is list or kind is tuple:
                    new = _sequence(item)
                elif kind is dict:
                    new = _dict(item)
                else:
                    new = _value(item)
            except _Refused as exc:
                exc.path.append(f"[{index}]")
                raise
        if out is None:
            if new is item:
                continue
            out = list(seq[:index])
        out.append(new)
    if out is None:
        return seq if type(seq) is list else list(seq)
    return out


def _dict(mapping: Mapping[Any, Any]) -> dict[str, Any]:
    """Convert a mapping; return it itself if it is a dict needing no change."""
    copy = type(mapping) is not dict
    out: dict[str, Any] | None = {} if copy else None
    for index, (key, item) in enumerate(mapping.items()):
        new_key = key if type(key) is str else _key(key, mapping)
        kind = type(item)
        if kind in _PLAIN:
            new = item
        elif kind is float:
            new = item if item - item == 0.0 else None
        else:
            try:
                if kind is list or kind is tuple:
                    new = _sequence(item)
                elif kind is dict:
                    new = _dict(item)
                else:
                    new = _value(item)
            except _Refused as exc:
                exc.path.append(f"[{new_key!r}]")
                raise
        if out is None:
            if new is item and new_key is key:
                continue
            out = dict(islice(mapping.items(), index))
        out[new_key] = new
    return mapping if out is None else out  # type: ignore[return-value]


def _key(key: Any, mapping: Mapping[Any, Any]) -> str:
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, int) and not isinstance(key, bool):
        text = str(int(key))
        if text in mapping:
            raise _Refused(f"cannot send a dict with both {key!r} and {text!r} as keys")
        return text
    raise _Refused(
        f"cannot send a dict key of type {type(key).__name__} ({key!r})",
        "; keys must be str or int",
    )


def _value(value: Any) -> Any:
    """Convert any value that is not a plain str/int/bool/None/bytes/float."""
    kind = type(value)
    if kind is list or kind is tuple:
        return _sequence(value)
    if kind is dict:
        return _dict(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return value if value - value == 0.0 else None
    hook = getattr(kind, HOOK_NAME, None)
    if hook is not None:
        result = hook(value)
        if getattr(type(result), HOOK_NAME, None) is not None:
            raise _Refused(
                f"{kind.__name__}.{HOOK_NAME}() returned {_a(type(result).__name__)}, "
                f"which has its own {HOOK_NAME}()",
                "; return plain data instead",
            )
        try:
            return _value(result)
        except _Refused as exc:
            exc.path.append(f".{HOOK_NAME}()")
            raise
    if isinstance(value, datetime.datetime):
        return _datetime(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, _BINARY):
        return bytes(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        number = float(value)
        return number if number - number == 0.0 else None
    if isinstance(value, (list, tuple)):
        return _sequence(value)
    if isinstance(value, Mapping):
        return _dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass(value)
    if isinstance(value, (set, frozenset)):
        raise _Refused(f"cannot send {_a(kind.__name__)}", "; convert it to a list first")
    raise _Refused(
        f"cannot send {_a(kind.__name__)}",
        f"; convert it to a supported type or give {kind.__name__} a {HOOK_NAME}() method",
    )


def _dataclass(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in dataclasses.fields(value):
        name = field.name
        item = getattr(value, name)
        try:
            out[name] = _value(item)
        except _Refused as exc:
            exc.path.append(f".{name}")
            raise
    return out


def _datetime(value: datetime.datetime) -> str:
    offset = value.utcoffset()
    if offset:
        try:
            value = value - offset
        except OverflowError:
            raise _Refused(
                f"cannot send {value.isoformat()}", ": it is out of range in UTC", ValueError
            ) from None
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}."
        f"{value.microsecond // 1000:03d}Z"
    )
