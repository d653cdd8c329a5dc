"""A1111-style axis values: the table users type, exact floats, and refusals that name the axis."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kandinsky_nb.errors import SweepError
from kandinsky_nb.planning.ranges import parse_axis_values


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("1-5", "int", [1, 2, 3, 4, 5]),
        ("10-50 (+10)", "int", [10, 20, 30, 40, 50]),
        ("10-45 (+10)", "int", [10, 20, 30, 40]),  # never past the end
        ("10-1 (-3)", "int", [10, 7, 4, 1]),
        ("2-8 [4]", "int", [2, 4, 6, 8]),
        ("1-10 [4]", "int", [1, 4, 7, 10]),
        ("1-10 [3]", "int", [1, 6, 10]),  # 5.5 rounds half up
        ("1-2 [5]", "int", [1, 2]),  # rounding repeats are dropped
        ("5-5", "int", [5]),
        ("7.5-8.5 (+0.25)", "float", [7.5, 7.75, 8.0, 8.25, 8.5]),
        ("1-2 (+0.3)", "float", [1.0, 1.3, 1.6, 1.9]),  # numpy.arange gives 1.9000000000000001 and 2.2
        ("0-1 (+0.1)", "float", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
        ("0-1 [11]", "float", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
        ("-1-1 (+0.5)", "float", [-1.0, -0.5, 0.0, 0.5, 1.0]),
        ("-4--3 (+0.5)", "float", [-4.0, -3.5, -3.0]),
        ("3,5,7", "float", [3.0, 5.0, 7.0]),
        ("3, 5.5 ,7", "float", [3.0, 5.5, 7.0]),
        ("10-20 (+5), 40", "int", [10, 15, 20, 40]),
        ("1,1,2", "int", [1, 2]),
        ("Euler,UniPC", "choice", ["Euler", "UniPC"]),
        ('"DPM++ 2M Karras", Euler', "choice", ["DPM++ 2M Karras", "Euler"]),
        ("a red fox, in snow", "text", ["a red fox, in snow"]),  # prompts keep their commas
        ("true,false", "bool", [True, False]),
    ],
)
def test_range_table(text, kind, expected):
    values = parse_axis_values("axis", text, kind)
    assert values == expected
    assert [type(v) for v in values] == [type(v) for v in expected]


def test_float_steps_have_no_binary_drift():
    values = parse_axis_values("CFGScale", "2-10 (+0.01)", "float")
    assert len(values) == 801
    assert all(repr(v) == repr(round(v, 2)) for v in values)  # 2.07, never 2.0699999999999998
    assert values[-1] == 10.0


def test_lists_mix_numbers_and_ranges():
    assert parse_axis_values("steps", [10, "20-30 (+5)", 50.0], "int") == [10, 20, 25, 30, 50]
    assert parse_axis_values("CFGScale", [3, 7.5], "float") == [3.0, 7.5]
    assert parse_axis_values("seed", 7, "int") == [7]


@pytest.mark.parametrize(
    ("values", "kind", "fragment"),
    [
        ("10-50 (-10)", "int", "steps away from its end"),
        ("1-5 (+0)", "int", "step of 0"),
        ("1-5 [0]", "int", "at least 1"),
        ("7.5", "int", "whole numbers"),
        ([7.5], "int", "whole numbers"),
        ("ten", "int", "not a number"),
        ("1-1000000", "int", "expands to"),
        ([], "int", "no values"),
        ("maybe", "bool", "true/false"),
    ],
)
def test_bad_values_name_the_axis(values, kind, fragment):
    with pytest.raises(SweepError) as caught:
        parse_axis_values("steps", values, kind)
    assert fragment in str(caught.value)
    assert "'steps'" in str(caught.value)


hundredths = st.integers(min_value=-1000, max_value=1000)


@given(start=hundredths, end=hundredths, step=st.integers(min_value=1, max_value=300))
def test_float_ranges_are_exact_decimal_steps_that_never_pass_the_end(start, end, step):
    """Property: "a-b (+s)" with two-decimal numbers gives exactly a, a+s, ... as written in decimal, up to b."""
    a, b, s = Decimal(start) / 100, Decimal(end) / 100, Decimal(step) / 100
    sign = "+" if end >= start else "-"
    values = parse_axis_values("CFGScale", f"{a}-{b} ({sign}{s})", "float")
    signed = s if end >= start else -s
    expected = [float(a + signed * k) for k in range(int((b - a) / signed) + 1)]
    assert values == expected
    assert all(min(a, b) <= Decimal(repr(v)) <= max(a, b) for v in values)


def test_line_breaks_separate_values_and_a_broken_quote_is_the_toolkits_error():
    # Found by the fuzz: a newline reached the csv module, whose own error escaped.
    assert parse_axis_values("steps", "10\n20, 30", "int") == [10, 20, 30]
    assert parse_axis_values("CFGScale", "\n5", "float") == [5.0]
    with pytest.raises(SweepError, match=r"'scheduler'.*not a comma-separated list"):
        parse_axis_values("scheduler", '"Euler', "choice")
