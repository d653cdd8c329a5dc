"""Axis values for sweeps: explicit lists, or AUTOMATIC1111-style range strings, expanded without float drift.

| text               | values                      |
| ------------------ | --------------------------- |
| ``"1-5"``          | 1, 2, 3, 4, 5 (inclusive)   |
| ``"10-50 (+10)"``  | 10, 20, 30, 40, 50          |
| ``"10-1 (-3)"``    | 10, 7, 4, 1                 |
| ``"2-8 [4]"``      | 4 evenly spaced: 2, 4, 6, 8 |
| ``"7.5-8.5 (+0.25)"`` | 7.5, 7.75, 8.0, 8.25, 8.5 |
| ``"3,5,7"``        | CSV; each item may itself be a range (``"10-20 (+5), 40"``) |

A1111 expands float ranges with ``numpy.arange`` and so gives ``1.9000000000000001`` and a value past the end; here
every value is computed in :class:`~decimal.Decimal` and converted to ``float`` once, so ``"1-2 (+0.3)"`` is exactly
1.0, 1.3, 1.6, 1.9 and a range never passes its end. Integer axes refuse fractional values instead of truncating them;
``[n]`` counts on integer axes round to the nearest integer and drop repeats.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

from ..errors import SweepError

__all__ = ["AxisKind", "parse_axis_values", "parse_range"]

AxisKind = Literal["int", "float", "text", "choice", "bool"]

_NUMBER = r"[+-]?\d+(?:\.\d+)?"
_RANGE = re.compile(
    rf"^\s*(?P<start>{_NUMBER})\s*-\s*(?P<end>{_NUMBER})\s*"
    rf"(?:\(\s*(?P<step>[+-]\s*\d+(?:\.\d+)?)\s*\)|\[\s*(?P<count>\d+)\s*\])?\s*$"
)
# The most values one axis may have. A range is counted BEFORE it is expanded, so "2-10 [50000000]" or a typo such as
# "1-1000000" is refused at once instead of after minutes and gigabytes.
MAX_VALUES_PER_AXIS = 10_000
# The largest magnitude an axis value may have: 20 digits before the point holds every seed (up to 2**63 - 1) and
# refuses what no field takes ("1e999999999" would otherwise become an integer of a billion digits).
MAX_DIGITS = 20


def _decimal(text: str, axis: str) -> Decimal:
    try:
        value = Decimal(text.replace(" ", ""))
    except InvalidOperation:
        raise SweepError(
            f"axis {axis!r}: {_short(text)} is not a number; give numbers or a range like '10-50 (+10)'"
        ) from None
    if not value.is_finite():
        raise SweepError(f"axis {axis!r}: {_short(text)} is not a finite number; give numbers such as 3 or 7.5")
    if value and value.adjusted() >= MAX_DIGITS:
        raise SweepError(
            f"axis {axis!r}: {_short(text)} has more than {MAX_DIGITS} digits before the point, more than any field "
            "takes; give a value within the field's range (kandinsky-nb info lists them)"
        )
    return value


def _short(text: str, limit: int = 40) -> str:
    """A value quoted for a message, cut short (a hostile value may be megabytes)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"...<{len(text)} characters>"


def _too_many(axis: str, text: str, count: int | str) -> SweepError:
    return SweepError(
        f"axis {axis!r}: {_short(text)} expands to {count} values, more than the {MAX_VALUES_PER_AXIS:,} an axis may "
        "have; use a larger step or fewer values"
    )


def parse_range(text: str, axis: str = "value") -> list[Decimal] | None:
    """Expand one range string into exact decimals, or None when ``text`` is not a range. The number of values is
    known (and refused past :data:`MAX_VALUES_PER_AXIS`) before any is made."""
    match = _RANGE.match(text)
    if match is None:
        return None
    start, end = _decimal(match["start"], axis), _decimal(match["end"], axis)
    if match["count"] is not None:
        digits = match["count"].lstrip("0") or "0"
        if len(digits) > 12:  # never int() thousands of digits
            raise _too_many(axis, text, f"{len(digits)}-digit count of")
        count = int(digits)
        if count < 1:
            raise SweepError(f"axis {axis!r}: {text!r} asks for {count} values; the count in [n] must be at least 1")
        if count > MAX_VALUES_PER_AXIS:
            raise _too_many(axis, text, f"{count:,}")
        if count == 1:
            return [start]
        gap = (end - start) / (count - 1)
        return [start + gap * i for i in range(count - 1)] + [end]
    step = _decimal(match["step"], axis) if match["step"] is not None else Decimal(1 if end >= start else -1)
    if step == 0:
        raise SweepError(f"axis {axis!r}: {text!r} has a step of 0; use a non-zero step such as (+1)")
    if (end - start) * step < 0:
        raise SweepError(
            f"axis {axis!r}: {text!r} steps away from its end; use ({'+' if end > start else '-'}{abs(step)}) instead"
        )
    count = int((end - start) / step) + 1
    if count > MAX_VALUES_PER_AXIS:
        raise _too_many(axis, text, f"{count:,}")
    return [start + step * i for i in range(count)]


def _split_csv(text: str, axis: str) -> list[str]:
    """The comma-separated items of one axis string; line breaks separate items too (a list pasted one per line)."""
    try:
        rows = list(csv.reader(text.splitlines() or [""], skipinitialspace=True, strict=True))
    except csv.Error as exc:
        raise SweepError(
            f"axis {axis!r}: {text!r} is not a comma-separated list ({exc}); quote an item that holds a comma"
        ) from None
    return [item.strip() for row in rows for item in row if item.strip()]


def _as_int(value: Decimal, axis: str, original: Any, *, rounding: bool) -> int:
    if value == value.to_integral_value():
        return int(value)
    if rounding:
        return int(value.to_integral_value(rounding=ROUND_HALF_UP))
    raise SweepError(f"axis {axis!r} takes whole numbers, but {original!r} gives {value}; use integers")


def _numbers(item: Any, kind: AxisKind, axis: str) -> list[int | float]:
    if isinstance(item, bool):
        raise SweepError(f"axis {axis!r} takes numbers, not {item!r}")
    if isinstance(item, int):
        if abs(item) >= 10**MAX_DIGITS:  # before anything prints it: a 5000-digit int cannot even be repr()'d
            raise SweepError(
                f"axis {axis!r}: a {item.bit_length()}-bit number is larger than any field takes; give a value within "
                "the field's range (kandinsky-nb info lists them)"
            )
        return [item if kind == "int" else float(item)]
    if isinstance(item, float):
        if not math.isfinite(item):
            raise SweepError(f"axis {axis!r} takes finite numbers, not {item!r}; give numbers such as 3 or 7.5")
        if kind == "int":
            if not item.is_integer():
                raise SweepError(f"axis {axis!r} takes whole numbers, not {item!r}; use integers")
            return [int(item)]
        return [item]
    if isinstance(item, Decimal):
        item = _decimal(str(item), axis)
        return [_as_int(item, axis, item, rounding=False) if kind == "int" else float(item)]
    if not isinstance(item, str):
        raise SweepError(f"axis {axis!r} takes numbers or range strings, not {type(item).__name__} {item!r}")
    out: list[int | float] = []
    for piece in _split_csv(item, axis):
        expanded = parse_range(piece, axis)
        counted = expanded is not None and "[" in piece
        decimals = expanded if expanded is not None else [_decimal(piece, axis)]
        for value in decimals:
            out.append(_as_int(value, axis, piece, rounding=counted) if kind == "int" else float(value))
    return out


def _bool(item: Any, axis: str) -> list[bool]:
    if isinstance(item, bool):
        return [item]
    if isinstance(item, str):
        out = []
        for piece in _split_csv(item, axis):
            lowered = piece.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise SweepError(f"axis {axis!r} takes true/false, not {piece!r}")
            out.append(lowered in ("true", "1", "yes", "on"))
        return out
    raise SweepError(f"axis {axis!r} takes true/false, not {item!r}")


def parse_axis_values(axis: str, values: Any, kind: AxisKind) -> list[Any]:
    """Expand an axis' values: a list (items may be range strings on numeric axes) or one string.

    ``text`` axes (prompts) take each string whole, commas included; ``choice`` axes (scheduler, size) split a
    string on commas (quote an item to keep a comma in it). Repeated values are dropped, keeping the first. More than
    :data:`MAX_VALUES_PER_AXIS` values are refused as soon as they are seen, before the rest are read.
    """
    items: Iterable[Any]
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        items = [values]
    else:
        items = itertools.islice(values, MAX_VALUES_PER_AXIS + 1)  # never read past the limit of a huge iterable
    out: list[Any] = []
    for item in items:
        if kind in ("int", "float"):
            out.extend(_numbers(item, kind, axis))
        elif kind == "bool":
            out.extend(_bool(item, axis))
        elif kind == "choice":
            out.extend(_split_csv(item, axis) if isinstance(item, str) else [item])
        else:
            out.append(item)
        if len(out) > MAX_VALUES_PER_AXIS:
            raise SweepError(
                f"axis {axis!r} has more than the {MAX_VALUES_PER_AXIS:,} values an axis may have; split the sweep"
            )
    unique: list[Any] = []
    seen: set[Any] = set()
    for value in out:
        try:
            if value in seen:
                continue
            seen.add(value)
        except TypeError:  # an unhashable value (a [w, h] size): compared by equality instead
            if value in unique:
                continue
        unique.append(value)
    if not unique:
        raise SweepError(f"axis {axis!r} has no values; give at least one")
    return unique
