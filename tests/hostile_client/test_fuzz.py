"""Fuzz (Hypothesis) over sweep axes and CLI arguments: whatever comes in, only the toolkit's own errors come out
(KandinskyNBError from the API; a usage error or a clean ClickException from the CLI), quickly, and a plan that is
accepted stays within its limits."""

from __future__ import annotations

import math
import time

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sweep_testkit import KEY, PricedEngine, served

from kandinsky_nb.cli import main
from kandinsky_nb.errors import KandinskyNBError
from kandinsky_nb.planning import AXES, MAX_CELLS, design_sweep

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

NUMBER = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.from_regex(r"-?\d{1,6}(\.\d{1,4})?", fullmatch=True),
)
RANGE = st.builds(
    lambda start, end, tail: f"{start}-{end}{tail}",
    st.from_regex(r"\d{1,7}(\.\d{1,3})?", fullmatch=True),
    st.from_regex(r"\d{1,7}(\.\d{1,3})?", fullmatch=True),
    st.one_of(
        st.just(""),
        st.from_regex(r" ?\([+-]\d{1,5}(\.\d{1,5})?\)", fullmatch=True),
        st.from_regex(r" ?\[\d{1,12}\]", fullmatch=True),
    ),
)
HOSTILE = st.sampled_from(
    ["nan", "inf", "-inf", "sNaN", "1e999999999", "9" * 5000, "2-10 [50000000]", "", " ", ",", "'", '"', "\x00", "-"]
)
AXIS_TEXT = st.one_of(
    NUMBER, RANGE, HOSTILE, st.text(max_size=40), st.lists(st.one_of(NUMBER, RANGE), max_size=4).map(",".join)
)
AXIS_VALUE = st.one_of(
    AXIS_TEXT,
    st.lists(st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), AXIS_TEXT), max_size=5),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
)
AXIS_NAME = st.one_of(
    st.sampled_from(sorted(AXES)), st.sampled_from(["cfg", "sampler", "prompt"]), st.text(max_size=12)
)


@FUZZ
@given(axes=st.dictionaries(AXIS_NAME, AXIS_VALUE, max_size=4), name=st.one_of(st.none(), st.text(max_size=60)))
def test_sweep_axes_give_a_bounded_plan_or_the_toolkits_error(axes, name):
    started = time.perf_counter()
    try:
        design = design_sweep("a red fox in snow", name=name, axes=axes)
    except KandinskyNBError:
        pass
    else:
        assert 1 <= len(design.cells) <= MAX_CELLS
        for cell in design.cells:
            assert cell.request.positivePrompt.strip()
            assert cell.request.CFGScale is None or math.isfinite(cell.request.CFGScale)
    assert time.perf_counter() - started < 30


@pytest.fixture(scope="module")
def cloud():
    with served(PricedEngine()) as (url, state):
        yield url, state


OPTION_VALUES = {
    "--steps": AXIS_TEXT,
    "--cfg": AXIS_TEXT,
    "--scheduler": st.one_of(st.text(max_size=20), st.just("Euler,UniPC")),
    "--seed": AXIS_TEXT,
    "--size": st.one_of(st.text(max_size=20), st.just("1280x768,1024x1024")),
    "--negative": st.text(max_size=20),
    "--name": st.text(max_size=30),
    "--budget": st.one_of(NUMBER, HOSTILE),
    "--concurrency": st.one_of(NUMBER, HOSTILE),
    "--max-cells": st.one_of(NUMBER, HOSTILE),
}


def _no_nul(text: str) -> bool:
    return "\x00" not in text  # a NUL cannot be passed in a real argv; the OS refuses it before the CLI runs


@FUZZ
@given(
    prompt=st.one_of(st.text(max_size=30), st.just("a red fox")).filter(_no_nul),
    options=st.dictionaries(st.sampled_from(sorted(OPTION_VALUES)), st.text(), max_size=4).flatmap(
        lambda chosen: st.fixed_dictionaries({key: OPTION_VALUES[key].filter(_no_nul) for key in chosen})
    ),
)
def test_sweep_command_arguments_give_only_the_toolkits_errors(cloud, tmp_path, prompt, options):
    url, state = cloud
    before = len(state.generations)
    arguments = ["sweep", prompt, "--estimate", "--home", str(tmp_path / "home")]
    for option, value in options.items():
        arguments += [f"{option}={value}"]
    result = CliRunner(env={"RUNWARE_API_KEY": KEY, "RUNWARE_BASE_URL": url}).invoke(main, arguments)
    assert result.exception is None or isinstance(result.exception, SystemExit), (arguments, result.exc_info)
    assert result.exit_code in (0, 1, 2)
    assert "Traceback" not in result.output
    assert len(state.generations) == before  # --estimate sends nothing, whatever it was given


@FUZZ
@given(
    limit=st.one_of(NUMBER, HOSTILE).filter(_no_nul),
    status=st.one_of(st.none(), st.text(max_size=10).filter(_no_nul)),
)
def test_runs_list_arguments_give_only_the_toolkits_errors(tmp_path, limit, status):
    arguments = ["runs", "list", "--home", str(tmp_path / "home"), f"--limit={limit}"]
    if status is not None:
        arguments.append(f"--status={status}")
    result = CliRunner().invoke(main, arguments)
    assert result.exception is None or isinstance(result.exception, SystemExit), (arguments, result.exc_info)
    assert result.exit_code in (0, 2)
